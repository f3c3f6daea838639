//! A small blocking HTTP/1.1 client for the nodes' APIs, able to reach an API inside a network
//! namespace: the socket is opened by a thread that has joined that namespace (`setns`), and
//! a socket stays in the namespace it was created in.

use crate::netns;
use anyhow::{Context, bail};
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
    parse(&raw).with_context(|| format!("bad HTTP answer from {addr}{path}"))
}

fn parse(raw: &[u8]) -> anyhow::Result<Response> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let rest = &raw[end + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status code")?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_vec()
    };
    Ok(Response { status, body })
}

fn dechunk(mut s: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = s
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("bad chunk")?;
        let size = std::str::from_utf8(&s[..line_end])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        let data = s
            .get(line_end + 2..line_end + 2 + size)
            .context("short chunk")?;
        out.extend_from_slice(data);
        s = s.get(line_end + 4 + size..).unwrap_or_default();
        if s.is_empty() {
            bail!("chunked body ended early");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let r = parse(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (202, b"{}".as_slice()));
        let r = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
        assert!(parse(b"garbage").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }
}
