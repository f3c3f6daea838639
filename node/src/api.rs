//! The HTTP API (localhost by default): submit (one at a time or in batches, see `submit`) and
//! look up traces, node status, blocks, and Prometheus metrics. Bad input gets a 4xx with a JSON `{"error": ..}` and stores nothing.

use crate::genesis::PayloadKind;
use crate::metrics::Metrics;
use crate::net::{NetHandle, NetStatus};
use crate::store::{Store, TxLocation};
use crate::trace::{SignedTrace, SignedTraceJson};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lcbft_protocol::types::{DomainId, Hash, Tx};
use prometheus_client::registry::Registry;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Requests the API makes of the main loop.
#[derive(Debug)]
pub enum ApiRequest {
    /// Items the admission rule passed, for the pool; per item `Ok(true)` when new,
    /// `Ok(false)` when already pending.
    Submit {
        domain: DomainId,
        txs: Vec<Tx>,
        reply: oneshot::Sender<Vec<Result<bool, SubmitError>>>,
    },
    /// What the main loop knows of an item the committed index does not hold.
    Pending {
        id: Hash,
        reply: oneshot::Sender<Lookup>,
    },
    Status {
        reply: oneshot::Sender<Vec<DomainStatus>>,
    },
    /// An anchor for the global replica; `Err` names why it was refused.
    SubmitAnchor {
        tx: Tx,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// An item that is not in a committed block, as the main loop sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Waiting for a block. `durable`: acknowledged here, so on this node's disk and offered
    /// again until it commits; `tx` is `None` only if the disk could not be read.
    Pending {
        domain: DomainId,
        tx: Option<Tx>,
        durable: bool,
    },
    /// Acknowledged here, then refused for good (a restart with a smaller size limit, say).
    Refused {
        domain: DomainId,
        reason: &'static str,
    },
    /// Never acknowledged here and not in the pool: never seen, refused when submitted, or
    /// forgotten since (a refusal is remembered until a restart).
    Unknown,
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("this node is not a member of domain {0}: submit to one of its members")]
    NotMember(String),
    #[error("the payload pool refused the trace ({}): retry later", .0.label())]
    Full(lcbft_protocol::PoolRefusal),
}

/// One domain as this node's replica sees it (`GET /v1/status`).
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DomainStatus {
    pub domain: String,
    pub index: u16,
    /// This node's role in the domain: cloud, edge or device.
    pub role: String,
    /// Global view, or the local view (term and round packed).
    pub view: u64,
    /// Local term (0 in the global domain).
    pub term: u64,
    /// Leader of the current view or term: its index and PeerId.
    pub leader: u16,
    pub leader_peer: String,
    pub committed_height: u64,
    pub committed_hash: String,
    pub high_qc_view: u64,
    pub last_voted: u64,
    /// Members of this domain this node is connected to.
    pub peers: Vec<String>,
    /// The other members of the domain; `peers` is the connected part of it, filled in by the
    /// API from the network's view (the main loop does not know connections).
    #[serde(skip)]
    pub members: Vec<String>,
    /// Local domains: the last height anchored in the committed global chain, as this node
    /// knows it (its own global chain, or its edge's proofs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchored_height: Option<u64>,
    /// Local domains: the lowest height still stored here (older ones were pruned).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_from: Option<u64>,
    /// Edges: local commit to global commit of its anchor, over recent blocks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_lag_p50_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub anchor_lag_p99_ms: Option<u64>,
    /// Local domains: the members who lead next if the running term fails, in the order the
    /// view change walks them (PeerIds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ranking: Vec<String>,
    /// Global domain: each local domain's last anchored height in the committed chain.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub anchored: std::collections::BTreeMap<String, u64>,
    /// A block this node's highest certificate or lock names and that it does not hold
    /// (hex): it is being fetched from peers, and until one sends it this node can neither
    /// propose nor vote on that branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing_block: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub struct StatusJson {
    /// The node's role: `edge` if it is the edge of a local domain, else its role in its
    /// domains (`cloud` or `device`).
    pub role: String,
    pub domains: Vec<DomainStatus>,
    pub peer_id: String,
    pub listen: Vec<String>,
    pub connected: Vec<String>,
}

impl StatusJson {
    /// The status of one of the node's domains, by name (`global`, `local/1`).
    pub fn domain(&self, name: &str) -> Option<&DomainStatus> {
        self.domains.iter().find(|d| d.domain == name)
    }
}

/// `edge` beats `cloud` beats `device`: an edge is also a global validator.
fn node_role(domains: &[DomainStatus]) -> String {
    ["edge", "cloud", "device"]
        .into_iter()
        .find(|r| domains.iter().any(|d| d.role == *r))
        .unwrap_or_default()
        .to_owned()
}

#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub requests: mpsc::Sender<ApiRequest>,
    pub net: NetHandle,
    pub registry: Arc<Registry>,
    pub metrics: Metrics,
    pub max_trace_bytes: usize,
    /// The genesis's network-wide payload kind: which submission endpoint is open.
    pub payload: PayloadKind,
    /// The one admission rule (shared with gossip and the replicas' vote check).
    pub admission: crate::admission::Admission,
}

pub fn router(state: ApiState) -> Router {
    // JSON hex doubles the body; leave room for the other fields.
    let limit = state.max_trace_bytes * 2 + 8 * 1024;
    let batch_limit = DefaultBodyLimit::max(submit::body_limit(state.max_trace_bytes));
    Router::new()
        .route("/v1/traces", post(submit::submit_traces).layer(batch_limit))
        .route(
            "/v1/payloads",
            post(submit::submit_payloads).layer(batch_limit),
        )
        .route("/v1/traces/{id}", get(get_trace))
        .route("/v1/status", get(status))
        .route("/v1/domains/{domain}/blocks/{height}", get(block))
        .route("/v1/traces/{id}/proof", get(anchoring::proof))
        .route("/v1/traces/{id}/lineage", get(anchoring::lineage))
        .route("/v1/domains/{domain}/anchors", get(anchoring::anchors))
        .route("/v1/anchors", post(anchoring::submit_anchor))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) {
    if let Err(e) = axum::serve(listener, router(state)).await {
        tracing::error!("HTTP API stopped: {e}");
    }
}

pub(crate) fn error(status: StatusCode, msg: impl std::fmt::Display) -> Response {
    (status, axum::Json(json!({ "error": msg.to_string() }))).into_response()
}

pub(crate) fn unavailable() -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "the node is shutting down")
}

pub(crate) async fn read<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, Response> {
    let store = store.clone();
    match tokio::task::spawn_blocking(move || f(&store)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
        Err(e) => Err(error(StatusCode::INTERNAL_SERVER_ERROR, e)),
    }
}

pub(crate) fn parse_id(s: &str) -> Option<Hash> {
    let bytes: [u8; 32] = hex::decode(s).ok()?.try_into().ok()?;
    Some(Hash(bytes))
}

async fn get_trace(State(s): State<ApiState>, Path(id): Path<String>) -> Response {
    let Some(id) = parse_id(&id) else {
        return error(StatusCode::BAD_REQUEST, "a trace id is 32 bytes of hex");
    };
    match read_committed(&s.store, id).await {
        Ok(Some((loc, tx))) => committed_trace(id, loc, tx),
        Ok(None) => uncommitted_trace(&s, id).await,
        Err(r) => r,
    }
}

/// Where the committed index puts `id`, with the item from its block.
async fn read_committed(
    store: &Store,
    id: Hash,
) -> Result<Option<(TxLocation, Option<Tx>)>, Response> {
    read(store, move |st| {
        let Some(loc) = st.tx_location(&id)? else {
            return Ok(None);
        };
        let block = st.committed_block(loc.domain, loc.height)?;
        let tx = block.and_then(|b| b.payload.into_iter().find(|t| t.id() == id));
        Ok(Some((loc, tx)))
    })
    .await
}

fn trace_json(tx: &Tx) -> Option<SignedTraceJson> {
    SignedTrace::from_tx(tx).ok().map(|t| t.to_json())
}

fn committed_trace(id: Hash, loc: TxLocation, tx: Option<Tx>) -> Response {
    axum::Json(json!({
        "id": id.to_hex(),
        "status": "committed",
        "domain": loc.domain.to_string(),
        "height": loc.height,
        "trace": tx.as_ref().and_then(trace_json),
    }))
    .into_response()
}

/// Not in the committed index: what the main loop knows of it.
async fn uncommitted_trace(s: &ApiState, id: Hash) -> Response {
    let (reply, rx) = oneshot::channel();
    if s.requests
        .send(ApiRequest::Pending { id, reply })
        .await
        .is_err()
    {
        return unavailable();
    }
    match rx.await {
        Ok(Lookup::Pending {
            domain,
            tx,
            durable,
        }) => axum::Json(json!({
            "id": id.to_hex(),
            "status": "pending",
            "domain": domain.to_string(),
            "trace": tx.as_ref().and_then(trace_json),
            "durable": durable,
        }))
        .into_response(),
        Ok(Lookup::Refused { domain, reason }) => refused_trace(id, domain, reason),
        Ok(Lookup::Unknown) => {
            // It may have committed between the two looks.
            match read(&s.store, move |st| st.tx_location(&id)).await {
                Ok(Some(loc)) => committed_trace(id, loc, None),
                Ok(None) => unknown_trace(id),
                Err(r) => r,
            }
        }
        Err(_) => unavailable(),
    }
}

fn refused_trace(id: Hash, domain: DomainId, reason: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "error": format!("acknowledged here, then refused ({reason}): submit it again"),
            "id": id.to_hex(),
            "status": "refused",
            "domain": domain.to_string(),
            "reason": reason,
        })),
    )
        .into_response()
}

fn unknown_trace(id: Hash) -> Response {
    (
        StatusCode::NOT_FOUND,
        axum::Json(json!({
            "error": "no such trace",
            "id": id.to_hex(),
            "status": "unknown",
        })),
    )
        .into_response()
}

async fn status(State(s): State<ApiState>) -> Response {
    let (reply, rx) = oneshot::channel();
    if s.requests.send(ApiRequest::Status { reply }).await.is_err() {
        return unavailable();
    }
    let Ok(mut domains) = rx.await else {
        return unavailable();
    };
    let NetStatus {
        peer_id,
        listen,
        connected,
    } = s.net.status().await;
    for d in &mut domains {
        d.peers = d
            .members
            .iter()
            .filter(|m| connected.contains(m))
            .cloned()
            .collect();
    }
    axum::Json(StatusJson {
        role: node_role(&domains),
        domains,
        peer_id,
        listen,
        connected,
    })
    .into_response()
}

/// `global` or `local-<id>` (also `local:<id>`).
pub(crate) fn parse_domain_segment(s: &str) -> Option<DomainId> {
    s.parse().ok().or_else(|| {
        s.strip_prefix("local-")
            .or_else(|| s.strip_prefix("local:"))
            .and_then(|n| n.parse().ok())
            .map(DomainId::Local)
    })
}

async fn block(State(s): State<ApiState>, Path((domain, height)): Path<(String, u64)>) -> Response {
    let Some(domain) = parse_domain_segment(&domain) else {
        return error(
            StatusCode::BAD_REQUEST,
            "domain is `global` or `local-<id>`",
        );
    };
    let found = match read(&s.store, move |st| st.committed_block(domain, height)).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    match found {
        Some(b) => axum::Json(json!({
            "domain": b.domain.to_string(),
            "height": b.height,
            "hash": b.hash().to_hex(),
            "parent": b.parent.to_hex(),
            "view": b.view,
            "proposer": b.proposer,
            "txs": b.payload.iter().map(|t| t.id().to_hex()).collect::<Vec<_>>(),
            "anchors": anchoring::anchors_in(&b),
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, "no committed block at that height"),
    }
}

/// OpenMetrics for Prometheus (which asks for it), the classic text format for anyone else.
async fn metrics(State(s): State<ApiState>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match crate::metrics::encode_text(&s.registry, accept) {
        Ok((content_type, text)) => ([(header::CONTENT_TYPE, content_type)], text).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

mod anchoring;
pub mod submit;
#[cfg(test)]
mod tests;
