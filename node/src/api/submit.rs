//! Submission: `POST /v1/traces` (one signed trace, a JSON array of them, or a CBOR array) and
//! `POST /v1/payloads` (raw networks: opaque byte strings).
//!
//! Every item, whatever the format, goes through [`admit`] and so through the node's one
//! admission rule (`crate::admission`), which gossip and the replicas' vote check use too. A batch answers 200 with one entry per item, in
//! order, so one bad item does not sink the others.

use super::{ApiRequest, ApiState, SubmitError, error, unavailable};
use crate::admission::Refusal as Refused;
use crate::genesis::PayloadKind;
use crate::metrics::Metrics;
use crate::trace::{SignedTrace, SignedTraceJson, Trace, TraceError};
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use lcbft_protocol::codec;
use lcbft_protocol::types::{DomainId, Tx};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tokio::sync::oneshot;

/// Most items one batch request may carry.
pub const MAX_BATCH_ITEMS: usize = 4096;
/// Largest batch body (JSON, CBOR or framed raw payloads). A single JSON trace keeps its own,
/// smaller limit (twice `api.max_trace_bytes` for the hex, plus 8 KiB).
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

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

    /// A refusal by the admission rule, which counted it already.
    fn from_rule(r: Refused) -> Refusal {
        let status = match r {
            Refused::Oversized => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Refusal::new(r.label(), status, r)
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

/// Admit items: the node's one admission rule judges them all at once (one batch
/// verification, one read of the committed index, off the async threads), then the main loop
/// takes what passed into the pool with one request per domain. The single place that decides
/// admission from the API.
pub async fn admit(s: &ApiState, items: Vec<Submission>) -> Vec<Admission> {
    let prepared: Vec<(DomainId, Tx)> = items
        .into_iter()
        .map(|item| match item {
            Submission::Trace(t) => (t.trace.domain, t.to_tx()),
            Submission::Raw { domain, bytes } => (domain, Tx::new(bytes)),
        })
        .collect();
    let rule = s.admission.clone();
    let judged = tokio::task::spawn_blocking(move || {
        let mut verdicts = vec![Ok(()); prepared.len()];
        let mut by_domain: BTreeMap<DomainId, Vec<usize>> = BTreeMap::new();
        for (i, (d, _)) in prepared.iter().enumerate() {
            by_domain.entry(*d).or_default().push(i);
        }
        for (d, idx) in by_domain {
            let txs: Vec<Tx> = idx.iter().map(|&i| prepared[i].1.clone()).collect();
            for (i, v) in idx.into_iter().zip(rule.check(d, &txs)) {
                verdicts[i] = v;
            }
        }
        (prepared, verdicts)
    })
    .await;
    let Ok((prepared, verdicts)) = judged else {
        return vec![Admission::Unavailable];
    };
    let mut out: Vec<Option<Admission>> = Vec::with_capacity(prepared.len());
    let mut admitted: BTreeMap<DomainId, Vec<(usize, Tx)>> = BTreeMap::new();
    for (i, ((domain, tx), verdict)) in prepared.into_iter().zip(verdicts).enumerate() {
        let id = tx.id().to_hex();
        out.push(match verdict {
            Ok(()) => {
                admitted.entry(domain).or_default().push((i, tx));
                None
            }
            Err(Refused::Committed) => Some(Admission::Committed { id }),
            Err(r) => Some(Admission::Refused(Refusal::from_rule(r))),
        });
    }
    for (domain, items) in admitted {
        let (idx, txs): (Vec<usize>, Vec<Tx>) = items.into_iter().unzip();
        let ids: Vec<String> = txs.iter().map(|tx| tx.id().to_hex()).collect();
        let (reply, rx) = oneshot::channel();
        let answers = match s
            .requests
            .send(ApiRequest::Submit { domain, txs, reply })
            .await
        {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        for (k, (i, id)) in idx.into_iter().zip(ids).enumerate() {
            out[i] = Some(match answers.as_ref().and_then(|a| a.get(k)) {
                None => Admission::Unavailable,
                Some(Ok(new)) => {
                    if *new {
                        s.metrics.traces_admitted.inc();
                    }
                    Admission::Pending { id, new: *new }
                }
                Some(Err(e @ SubmitError::NotMember(_))) => {
                    let r = Refusal::new("not_member", StatusCode::UNPROCESSABLE_ENTITY, e);
                    refused(&s.metrics, r.reason);
                    Admission::Refused(r)
                }
                Some(Err(e @ SubmitError::Full(_))) => {
                    let r = Refusal::new("full", StatusCode::SERVICE_UNAVAILABLE, e);
                    refused(&s.metrics, r.reason);
                    Admission::Refused(r)
                }
            });
        }
    }
    out.into_iter()
        .map(|a| a.unwrap_or(Admission::Unavailable))
        .collect()
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

/// Admit a batch; the answer has one entry per item, in order.
async fn admit_batch(s: &ApiState, items: Vec<Result<Submission, Refusal>>) -> Response {
    let mut entries: Vec<Option<Value>> = Vec::with_capacity(items.len());
    let mut good = Vec::new();
    for item in items {
        match item {
            Ok(sub) => {
                good.push(sub);
                entries.push(None);
            }
            Err(r) => {
                refused(&s.metrics, r.reason);
                entries.push(Some(Admission::Refused(r).entry()));
            }
        }
    }
    let mut admitted = admit(s, good).await.into_iter();
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|e| e.unwrap_or_else(|| admitted.next().unwrap_or(Admission::Unavailable).entry()))
        .collect();
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
    let items = match decode_traces(&body, is_cbor(&headers), s.max_trace_bytes) {
        Ok(items) => items,
        Err(r) => return refuse(&s, r.reason, r.status, r.message),
    };
    match items {
        TraceBody::Batch(items) => {
            let items = items
                .into_iter()
                .map(|item| item.map(Submission::Trace))
                .collect();
            admit_batch(&s, items).await
        }
        TraceBody::Single(item) => {
            let admission = match item {
                Ok(t) => admit(&s, vec![Submission::Trace(t)])
                    .await
                    .pop()
                    .unwrap_or(Admission::Unavailable),
                Err(r) => {
                    refused(&s.metrics, r.reason);
                    Admission::Refused(r)
                }
            };
            admission.response()
        }
    }
}

/// A `POST /v1/traces` body, decoded but not verified.
pub enum TraceBody {
    /// A JSON or CBOR array: one entry per item, in order.
    Batch(Vec<Result<SignedTrace, Refusal>>),
    /// One JSON trace, answered as before batches existed.
    Single(Result<SignedTrace, Refusal>),
}

/// Decode a `POST /v1/traces` body: a CBOR array of signed traces when `cbor`, else a JSON
/// array or one JSON trace. `Err` refuses the whole request. Kept apart from the handler so the
/// fuzzer reaches exactly what a client's bytes reach.
pub fn decode_traces(
    body: &[u8],
    cbor: bool,
    max_trace_bytes: usize,
) -> Result<TraceBody, Refusal> {
    let too_many = |n: usize| {
        Refusal::new(
            "too_many",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{n} items in one request: at most {MAX_BATCH_ITEMS}"),
        )
    };
    let bad_json = |e: serde_json::Error| {
        Refusal::new(
            "bad_json",
            StatusCode::BAD_REQUEST,
            format!("bad JSON: {e}"),
        )
    };
    if cbor {
        let traces: Vec<SignedTrace> = codec::decode(body, body.len()).map_err(|e| {
            Refusal::new(
                "bad_cbor",
                StatusCode::BAD_REQUEST,
                format!("not a CBOR array of signed traces: {e}"),
            )
        })?;
        if traces.len() > MAX_BATCH_ITEMS {
            return Err(too_many(traces.len()));
        }
        return Ok(TraceBody::Batch(traces.into_iter().map(Ok).collect()));
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'[') {
        let values: Vec<Value> = serde_json::from_slice(body).map_err(bad_json)?;
        if values.len() > MAX_BATCH_ITEMS {
            return Err(too_many(values.len()));
        }
        return Ok(TraceBody::Batch(
            values
                .into_iter()
                .map(|v| from_json_item(v, max_trace_bytes))
                .collect(),
        ));
    }
    if body.len() > single_limit(max_trace_bytes) {
        return Err(Refusal::new(
            "too_large",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a single trace body exceeds the {}-byte limit",
                single_limit(max_trace_bytes)
            ),
        ));
    }
    let value: Value = serde_json::from_slice(body).map_err(bad_json)?;
    Ok(TraceBody::Single(from_json_item(value, max_trace_bytes)))
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
    let domain = match q.domain.as_deref().unwrap_or_default().parse::<DomainId>() {
        Ok(d) => d,
        Err(e) => {
            let why = format!("query parameter `domain`: {e}");
            return refuse(&s, "bad_field", StatusCode::BAD_REQUEST, why);
        }
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
