//! A small blocking HTTP/1.1 client for the nodes' APIs, able to reach an API inside a network
//! namespace: the socket is opened by a thread that has joined that namespace (`setns`), and
//! a socket stays in the namespace it was created in.

use crate::netns;
use anyhow::Context;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

/// One request with `Connection: close`, in the calling thread's network namespace.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> anyhow::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .with_context(|| format!("cannot reach the node API at {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .with_context(|| format!("no complete answer from {addr}{path}"))?;
    let r = lcbft_node::http_client::parse(addr, &raw)
        .with_context(|| format!("bad HTTP answer from {addr}{path}"))?;
    Ok(Response {
        status: r.status,
        body: r.bytes,
    })
}
