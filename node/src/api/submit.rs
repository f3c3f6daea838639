//! Submission: `POST /v1/traces` (one signed trace, a JSON array of them, or a CBOR array) and
//! `POST /v1/payloads` (raw networks: opaque byte strings).
//!
//! Every item, whatever the format, goes through [`admit_one`]: that one function decides
//! whether an item enters the pending pool. A batch answers 200 with one entry per item, in
//! order, so one bad item does not sink the others.

use super::{ApiRequest, ApiState, SubmitError, error, read, unavailable};
use crate::genesis::{PayloadKind, parse_domain};
use crate::metrics::Metrics;
use crate::trace::{SignedTrace, SignedTraceJson, Trace, TraceError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lcbft_protocol::anchor::Anchor;
use lcbft_protocol::codec;
use lcbft_protocol::types::{DomainId, Tx};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// Most items one batch request may carry.
pub const MAX_BATCH_ITEMS: usize = 4096;
/// Largest batch body (JSON, CBOR or framed raw payloads). A single JSON trace keeps its own,
/// smaller limit (twice `api.max_trace_bytes` for the hex, plus 8 KiB).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// Items of one batch admitted concurrently (each may wait on the store and the main loop).
const BATCH_CONCURRENCY: usize = 32;

/// The body limit of the submission routes.
pub fn body_limit(max_trace_bytes: usize) -> usize {
    single_limit(max_trace_bytes).max(MAX_BATCH_BYTES)
}

fn single_limit(max_trace_bytes: usize) -> usize {
    // JSON hex doubles the body; leave room for the other fields.
    max_trace_bytes * 2 + 8 * 1024
}

/// One item to admit, decoded but not yet checked.
pub enum Submission {
    /// A trace with its producer signature, not verified yet.
    Trace(SignedTrace),
    /// An opaque payload for `domain` (raw networks).
    Raw { domain: DomainId, bytes: Vec<u8> },
}

/// What became of one item.
pub enum Admission {
    /// In the pending pool; `new` is false when it already was.
    Pending {
        id: String,
        new: bool,
    },
    /// Already in a committed block.
    Committed {
        id: String,
    },
    Refused(Refusal),
    /// The main loop is gone (shutting down).
    Unavailable,
}

pub struct Refusal {
    /// Short, stable: also the `reason` label of `lcbft_traces_refused_total`.
    pub reason: &'static str,
    pub status: StatusCode,
    pub message: String,
}

impl Refusal {
    fn new(reason: &'static str, status: StatusCode, message: impl std::fmt::Display) -> Refusal {
        Refusal {
            reason,
            status,
            message: message.to_string(),
        }
    }

    fn from_trace(e: TraceError) -> Refusal {
        match e {
            TraceError::TooLarge { .. } => {
                Refusal::new("too_large", StatusCode::PAYLOAD_TOO_LARGE, e)
            }
            TraceError::BadSignature => Refusal::new("bad_signature", StatusCode::BAD_REQUEST, e),
            _ => Refusal::new("bad_field", StatusCode::BAD_REQUEST, e),
        }
    }
}

impl Admission {
    /// The item's entry in a batch answer.
    fn entry(&self) -> Value {
        match self {
            Admission::Pending { id, new } => {
                json!({ "id": id, "status": "pending", "duplicate": !new })
            }
            Admission::Committed { id } => {
                json!({ "id": id, "status": "committed", "duplicate": true })
            }
            Admission::Refused(r) => {
                json!({ "status": "rejected", "reason": r.reason, "error": r.message })
            }
            Admission::Unavailable => json!({
                "status": "rejected",
                "reason": "unavailable",
                "error": "the node is shutting down",
            }),
        }
    }

    /// The answer to a single-item request (as before batches existed).
    fn response(&self) -> Response {
        match self {
            Admission::Pending { new: true, .. } => {
                (StatusCode::ACCEPTED, axum::Json(self.entry())).into_response()
            }
            Admission::Pending { .. } | Admission::Committed { .. } => {
                (StatusCode::OK, axum::Json(self.entry())).into_response()
            }
            Admission::Refused(r) => error(r.status, &r.message),
            Admission::Unavailable => unavailable(),
        }
    }
}

/// Admit one item: check it, look for it among committed traces, hand it to the main loop
/// (one `ApiRequest::Submit` per item). The single place that decides admission.
pub async fn admit_one(s: &ApiState, item: Submission) -> Admission {
    let admission = admit_inner(s, item).await;
    match &admission {
        Admission::Pending { new: true, .. } => {
            s.metrics.traces_admitted.inc();
        }
        Admission::Refused(r) => refused(&s.metrics, r.reason),
        _ => {}
    }
    admission
}

async fn admit_inner(s: &ApiState, item: Submission) -> Admission {
    let max = s.max_trace_bytes;
    let checked = tokio::task::spawn_blocking(move || check(item, max)).await;
    let (domain, tx) = match checked {
        Ok(Ok(v)) => v,
        Ok(Err(r)) => return Admission::Refused(r),
        Err(e) => {
            return Admission::Refused(Refusal::new(
                "internal",
                StatusCode::INTERNAL_SERVER_ERROR,
                e,
            ));
        }
    };
    let id = tx.id();
    match read(&s.store, move |st| st.tx_location(&id)).await {
        Ok(Some(_)) => return Admission::Committed { id: id.to_hex() },
        Ok(None) => {}
        Err(_) => {
            return Admission::Refused(Refusal::new(
                "internal",
                StatusCode::INTERNAL_SERVER_ERROR,
                "the store cannot be read",
            ));
        }
    }
    let (reply, rx) = oneshot::channel();
    if s.requests
        .send(ApiRequest::Submit { domain, tx, reply })
        .await
        .is_err()
    {
        return Admission::Unavailable;
    }
    match rx.await {
        Ok(Ok(new)) => Admission::Pending {
            id: id.to_hex(),
            new,
        },
        Ok(Err(e @ SubmitError::NotMember(_))) => Admission::Refused(Refusal::new(
            "not_member",
            StatusCode::UNPROCESSABLE_ENTITY,
            e,
        )),
        Ok(Err(e @ SubmitError::Full)) => {
            Admission::Refused(Refusal::new("full", StatusCode::SERVICE_UNAVAILABLE, e))
        }
        Err(_) => Admission::Unavailable,
    }
}

/// The CPU part of admission (blocking pool): size, signature, encoding.
fn check(item: Submission, max: usize) -> Result<(DomainId, Tx), Refusal> {
    match item {
        Submission::Trace(signed) => {
            if let Some(b) = &signed.trace.body
                && b.len() > max
            {
                return Err(Refusal::from_trace(TraceError::TooLarge {
                    len: b.len(),
                    max,
                }));
            }
            signed.verify().map_err(Refusal::from_trace)?;
            Ok((signed.trace.domain, signed.to_tx()))
        }
        Submission::Raw { domain, bytes } => {
            if bytes.is_empty() {
                return Err(Refusal::new(
                    "empty",
                    StatusCode::BAD_REQUEST,
                    "an empty payload",
                ));
            }
            if bytes.len() > max {
                return Err(Refusal::new(
                    "too_large",
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "payload of {} bytes exceeds the {max}-byte limit",
                        bytes.len()
                    ),
                ));
            }
            let tx = Tx(bytes);
            if Anchor::is_anchor(&tx) {
                return Err(Refusal::new(
                    "anchor_tag",
                    StatusCode::BAD_REQUEST,
                    "a raw payload must not begin with byte 0 (the anchor tag)",
                ));
            }
            Ok((domain, tx))
        }
    }
}

fn refused(metrics: &Metrics, reason: &str) {
    metrics
        .traces_refused
        .get_or_create(&Metrics::reason(reason))
        .inc();
}

/// A whole-request refusal (nothing admitted), counted like an item's.
fn refuse(s: &ApiState, reason: &str, status: StatusCode, msg: impl std::fmt::Display) -> Response {
    refused(&s.metrics, reason);
    error(status, msg)
}

/// The body, or a JSON 413 / 400 naming the limit.
fn body_or_refusal(
    s: &ApiState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, Box<Response>> {
    body.map_err(|e| {
        let r = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let msg = format!(
                "the body exceeds the {}-byte limit: send at most {MAX_BATCH_ITEMS} items and {MAX_BATCH_BYTES} bytes per request",
                body_limit(s.max_trace_bytes)
            );
            refuse(s, "too_large", StatusCode::PAYLOAD_TOO_LARGE, msg)
        } else {
            refuse(s, "bad_body", e.status(), e.body_text())
        };
        Box::new(r)
    })
}

fn too_many(s: &ApiState, n: usize) -> Response {
    refuse(
        s,
        "too_many",
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("{n} items in one request: at most {MAX_BATCH_ITEMS}"),
    )
}

/// Admit a batch in order; at most [`BATCH_CONCURRENCY`] items in flight.
async fn admit_batch(s: &ApiState, items: Vec<Result<Submission, Refusal>>) -> Response {
    use futures::StreamExt;
    let entries: Vec<Value> = futures::stream::iter(items)
        .map(|item| async move {
            match item {
                Ok(sub) => admit_one(s, sub).await.entry(),
                Err(r) => {
                    refused(&s.metrics, r.reason);
                    Admission::Refused(r).entry()
                }
            }
        })
        .buffered(BATCH_CONCURRENCY)
        .collect()
        .await;
    (StatusCode::OK, axum::Json(Value::Array(entries))).into_response()
}

fn is_cbor(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().starts_with("application/cbor"))
}

/// A JSON item as submitted, decoded but not verified.
fn from_json_item(v: Value, max: usize) -> Result<SignedTrace, Refusal> {
    let j: SignedTraceJson = serde_json::from_value(v).map_err(|e| {
        Refusal::new(
            "bad_json",
            StatusCode::BAD_REQUEST,
            format!("bad JSON: {e}"),
        )
    })?;
    let trace = Trace::from_json(&j.trace, max).map_err(Refusal::from_trace)?;
    let signature = hex::decode(&j.signature).map_err(|_| {
        Refusal::from_trace(TraceError::Field {
            field: "signature",
            reason: "not hex".into(),
        })
    })?;
    Ok(SignedTrace { trace, signature })
}

/// `POST /v1/traces`.
pub async fn submit_traces(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_refusal(&s, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if s.payload != PayloadKind::Traces {
        return refuse(
            &s,
            "wrong_payload",
            StatusCode::UNPROCESSABLE_ENTITY,
            "this network carries raw payloads (genesis `payload = \"raw\"`): submit with POST /v1/payloads",
        );
    }
    if is_cbor(&headers) {
        let traces: Vec<SignedTrace> = match codec::decode(&body, body.len()) {
            Ok(t) => t,
            Err(e) => {
                return refuse(
                    &s,
                    "bad_cbor",
                    StatusCode::BAD_REQUEST,
                    format!("not a CBOR array of signed traces: {e}"),
                );
            }
        };
        if traces.len() > MAX_BATCH_ITEMS {
            return too_many(&s, traces.len());
        }
        let items = traces
            .into_iter()
            .map(|t| Ok(Submission::Trace(t)))
            .collect();
        return admit_batch(&s, items).await;
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let values: Vec<Value> = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return refuse(
                    &s,
                    "bad_json",
                    StatusCode::BAD_REQUEST,
                    format!("bad JSON: {e}"),
                );
            }
        };
        if values.len() > MAX_BATCH_ITEMS {
            return too_many(&s, values.len());
        }
        let items = values
            .into_iter()
            .map(|v| from_json_item(v, s.max_trace_bytes).map(Submission::Trace))
            .collect();
        return admit_batch(&s, items).await;
    }
    if body.len() > single_limit(s.max_trace_bytes) {
        return refuse(
            &s,
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a single trace body exceeds the {}-byte limit",
                single_limit(s.max_trace_bytes)
            ),
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return refuse(
                &s,
                "bad_json",
                StatusCode::BAD_REQUEST,
                format!("bad JSON: {e}"),
            );
        }
    };
    let admission = match from_json_item(value, s.max_trace_bytes) {
        Ok(t) => admit_one(&s, Submission::Trace(t)).await,
        Err(r) => {
            refused(&s.metrics, r.reason);
            Admission::Refused(r)
        }
    };
    admission.response()
}

#[derive(serde::Deserialize)]
pub struct PayloadQuery {
    domain: Option<String>,
}

/// Split a body of `u32` big-endian length-prefixed payloads.
pub fn split_frames(mut body: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    while !body.is_empty() {
        let Some((len, rest)) = body.split_first_chunk::<4>() else {
            return Err(format!(
                "{} trailing bytes: each payload needs a 4-byte length first",
                body.len()
            ));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if rest.len() < len {
            return Err(format!(
                "payload {} announces {len} bytes, {} remain",
                out.len(),
                rest.len()
            ));
        }
        out.push(rest[..len].to_vec());
        body = &rest[len..];
    }
    Ok(out)
}

/// `POST /v1/payloads?domain=local/1`: raw networks only.
pub async fn submit_payloads(
    State(s): State<ApiState>,
    Query(q): Query<PayloadQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_refusal(&s, body) {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if s.payload != PayloadKind::Raw {
        return refuse(
            &s,
            "wrong_payload",
            StatusCode::UNPROCESSABLE_ENTITY,
            "this network carries signed traces: submit with POST /v1/traces (raw payloads need a genesis with `payload = \"raw\"`)",
        );
    }
    let Some(domain) = q.domain.as_deref().and_then(parse_domain) else {
        return refuse(
            &s,
            "bad_field",
            StatusCode::BAD_REQUEST,
            "query parameter `domain` must be `global` or `local/<id>`",
        );
    };
    let frames = match split_frames(&body) {
        Ok(f) => f,
        Err(e) => return refuse(&s, "bad_body", StatusCode::BAD_REQUEST, e),
    };
    if frames.len() > MAX_BATCH_ITEMS {
        return too_many(&s, frames.len());
    }
    let items = frames
        .into_iter()
        .map(|bytes| Ok(Submission::Raw { domain, bytes }))
        .collect();
    admit_batch(&s, items).await
}
