//! Proofs, provenance and anchors over HTTP (DESIGN §5).

use super::{ApiRequest, ApiState, error, parse_domain_segment, parse_id, read, unavailable};
use crate::proofs::{ProofUnavailable, trace_proof};
use crate::trace::SignedTrace;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use lcbft_protocol::anchor::Anchor;
use lcbft_protocol::types::{Block, Hash, Tx};
use serde_json::{Value, json};
use std::collections::{BTreeSet, VecDeque};
use tokio::sync::oneshot;

/// Most traces a lineage answer walks in each direction.
const MAX_LINEAGE: usize = 1000;

/// `GET /v1/traces/{id}/proof`: the standalone proof, CBOR (`lcbft verify-proof` reads it).
pub async fn proof(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return error(StatusCode::BAD_REQUEST, "a trace id is 32 bytes of hex");
    };
    let store = s.store.clone();
    let built = tokio::task::spawn_blocking(move || trace_proof(&store, &id)).await;
    match built {
        Ok(Ok(p)) => ([(header::CONTENT_TYPE, "application/cbor")], p.encode()).into_response(),
        Ok(Err(e @ ProofUnavailable::NotCommitted(_))) => error(StatusCode::NOT_FOUND, e),
        Ok(Err(e @ (ProofUnavailable::NotAnchored { .. } | ProofUnavailable::Pruned(_)))) => {
            error(StatusCode::CONFLICT, e)
        }
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

/// `GET /v1/traces/{id}/lineage`: committed ancestors (through `parents`) and descendants.
pub async fn lineage(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return error(StatusCode::BAD_REQUEST, "a trace id is 32 bytes of hex");
    };
    let walked = read(&s.store, move |st| {
        let Some(here) = located(st, &id)? else {
            return Ok(None);
        };
        let parents = |st: &crate::store::Store, id: &Hash| -> Result<Vec<Hash>, _> {
            Ok(trace_at(st, id)?
                .map(|(_, t)| t.trace.parents.iter().map(|p| Hash(*p)).collect())
                .unwrap_or_default())
        };
        let ancestors = walk(st, &id, parents)?;
        let descendants = walk(st, &id, |st, id| st.children(id))?;
        Ok(Some((here, ancestors, descendants)))
    })
    .await;
    match walked {
        Ok(Some((here, ancestors, descendants))) => axum::Json(json!({
            "id": id.to_hex(),
            "domain": here["domain"],
            "height": here["height"],
            "ancestors": ancestors,
            "descendants": descendants,
        }))
        .into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "no committed trace with that id here",
        ),
        Err(r) => r,
    }
}

/// A committed trace's place and content.
fn trace_at(
    st: &crate::store::Store,
    id: &Hash,
) -> Result<Option<(Value, SignedTrace)>, crate::store::StoreError> {
    let Some(loc) = st.tx_location(id)? else {
        return Ok(None);
    };
    let Some(block) = st.committed_block(loc.domain, loc.height)? else {
        return Ok(None);
    };
    let trace = block
        .payload
        .iter()
        .find(|t| t.id() == *id)
        .and_then(|t| SignedTrace::from_tx(t).ok());
    Ok(trace.map(|t| {
        let place = json!({ "domain": loc.domain.to_string(), "height": loc.height });
        (place, t)
    }))
}

fn located(st: &crate::store::Store, id: &Hash) -> Result<Option<Value>, crate::store::StoreError> {
    Ok(trace_at(st, id)?.map(|(place, _)| place))
}

/// Breadth-first over `next`, committed traces only, each with its distance from the start.
fn walk(
    st: &crate::store::Store,
    start: &Hash,
    next: impl Fn(&crate::store::Store, &Hash) -> Result<Vec<Hash>, crate::store::StoreError>,
) -> Result<Vec<Value>, crate::store::StoreError> {
    let mut seen = BTreeSet::from([*start]);
    let mut queue = VecDeque::from([(*start, 0u32)]);
    let mut out = Vec::new();
    while let Some((id, depth)) = queue.pop_front() {
        for n in next(st, &id)? {
            if out.len() >= MAX_LINEAGE || !seen.insert(n) {
                continue;
            }
            if let Some((place, t)) = trace_at(st, &n)? {
                out.push(json!({
                    "id": n.to_hex(),
                    "depth": depth + 1,
                    "domain": place["domain"],
                    "height": place["height"],
                    "action": format!("{:?}", t.trace.action).to_lowercase(),
                    "application": t.trace.application,
                }));
                queue.push_back((n, depth + 1));
            }
        }
    }
    Ok(out)
}

#[derive(serde::Deserialize)]
pub struct Range {
    #[serde(default)]
    from: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

/// `GET /v1/domains/{local-N}/anchors?from=H&limit=L`: the anchored chain as this node's
/// committed global chain holds it.
pub async fn anchors(
    State(s): State<ApiState>,
    Path(domain): Path<String>,
    Query(range): Query<Range>,
) -> Response {
    let Some(domain) = parse_domain_segment(&domain) else {
        return error(StatusCode::BAD_REQUEST, "domain is `local-<id>`");
    };
    let from = range.from.unwrap_or(1);
    let limit = range.limit.unwrap_or(1000).min(10_000);
    let found = read(&s.store, move |st| {
        Ok((
            st.anchored_height(domain)?,
            st.anchors(domain, from, limit)?,
        ))
    })
    .await;
    match found {
        Ok((anchored, entries)) => axum::Json(json!({
            "domain": domain.to_string(),
            "anchored_height": anchored,
            "anchors": entries.iter().map(|e| json!({
                "height": e.height,
                "hash": e.hash.to_hex(),
                "global_height": e.global_height,
            })).collect::<Vec<_>>(),
        }))
        .into_response(),
        Err(r) => r,
    }
}

/// `POST /v1/anchors` (body: an anchor payload item, as edges gossip it): judged by this
/// node's global replica and, if taken, gossiped.
pub async fn submit_anchor(State(s): State<ApiState>, body: Bytes) -> Response {
    let tx = Tx::new(body.to_vec());
    if !matches!(Anchor::from_tx(&tx), Some(Ok(_))) {
        s.metrics.on_anchor_rejected("undecodable");
        return error(StatusCode::BAD_REQUEST, "the body is not an encoded anchor");
    }
    let (reply, rx) = oneshot::channel();
    if s.requests
        .send(ApiRequest::SubmitAnchor { tx, reply })
        .await
        .is_err()
    {
        return unavailable();
    }
    match rx.await {
        Ok(Ok(())) => (
            StatusCode::ACCEPTED,
            axum::Json(json!({ "status": "pending" })),
        )
            .into_response(),
        Ok(Err(reason)) => error(StatusCode::UNPROCESSABLE_ENTITY, reason),
        Err(_) => unavailable(),
    }
}

/// The anchors a block carries, for the block endpoint.
pub fn anchors_in(block: &Block) -> Vec<Value> {
    block
        .payload
        .iter()
        .filter_map(|tx| Anchor::from_tx(tx)?.ok())
        .map(|a| {
            json!({
                "domain": a.block.domain.to_string(),
                "height": a.block.height,
                "hash": a.block.hash().to_hex(),
                "parent": a.block.parent.to_hex(),
            })
        })
        .collect()
}
