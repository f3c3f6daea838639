//! The nodes' APIs as the launcher reaches them, inside a network namespace or not, through
//! the node's HTTP client ([`lcbft_node::http_client`]): a socket stays in the namespace it was
//! created in, so a call for a node in a namespace runs on a thread that joined it (`setns`).

use crate::netns;
use anyhow::Context;
use lcbft_node::http_client::Client;
use std::net::SocketAddr;
use std::time::Duration;

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).context("the node's answer is not JSON")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Where a node's API is: an address, inside a namespace or not.
#[derive(Clone, Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub netns: Option<String>,
}

impl Endpoint {
    pub fn get(&self, path: &str) -> anyhow::Result<Response> {
        self.call("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &[u8]) -> anyhow::Result<Response> {
        self.call("POST", path, Some(body))
    }

    /// GET and parse JSON; `None` when the node does not answer or answers an error.
    pub fn get_json(&self, path: &str) -> Option<serde_json::Value> {
        let r = self.get(path).ok()?;
        (r.status < 400).then(|| r.json().ok()).flatten()
    }

    pub fn call(&self, method: &str, path: &str, body: Option<&[u8]>) -> anyhow::Result<Response> {
        match &self.netns {
            Some(ns) if !netns::is_current(ns) => std::thread::scope(|s| {
                s.spawn(|| {
                    netns::enter(ns)?;
                    request(self.addr, method, path, body)
                })
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the request thread panicked")))
            }),
            _ => request(self.addr, method, path, body),
        }
    }
}

/// One request, in the calling thread's network namespace. The launcher polls nodes that may
/// be down, so it gives up on a connection sooner than the CLI does.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<Response> {
    let client = Client::with_timeouts(addr, Duration::from_secs(2), Duration::from_secs(10));
    let r = client
        .call(method, path, "application/json", body)
        .with_context(|| format!("no answer from {addr}{path}"))?;
    Ok(Response {
        status: r.status,
        body: r.bytes,
    })
}

/// Keep-alive connections to one API, for the load generator. Make it on the thread (and so in
/// the network namespace) that uses it.
pub struct KeepAlive {
    client: Client,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive {
            client: Client::with_timeouts(addr, Duration::from_secs(2), Duration::from_secs(30)),
        }
    }

    /// POST `body`; when the call fails (for instance on a connection the server had just
    /// closed), retry once: a resubmitted item is answered as a duplicate, so a retry is
    /// harmless.
    pub fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let r = match self.client.call("POST", path, content_type, Some(body)) {
            Ok(r) => r,
            Err(_) => self.client.call("POST", path, content_type, Some(body))?,
        };
        Ok(Response {
            status: r.status,
            body: r.bytes,
        })
    }
}
