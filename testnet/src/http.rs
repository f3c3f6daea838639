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

/// A keep-alive HTTP/1.1 connection to one API, for the load generator: one request at a
/// time, reconnecting when the server closed it. Open it on the thread (and so in the network
/// namespace) that uses it.
pub struct KeepAlive {
    addr: SocketAddr,
    stream: Option<std::io::BufReader<TcpStream>>,
}

impl KeepAlive {
    pub fn new(addr: SocketAddr) -> KeepAlive {
        KeepAlive { addr, stream: None }
    }

    /// POST `body`; on a connection the server had already closed, retry once on a new one (a
    /// resubmitted item is answered as a duplicate, so a retry is harmless).
    pub fn post(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let reused = self.stream.is_some();
        match self.try_post(path, content_type, body) {
            Ok(r) => Ok(r),
            Err(_) if reused => {
                self.stream = None;
                self.try_post(path, content_type, body)
            }
            Err(e) => Err(e),
        }
    }

    fn try_post(
        &mut self,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> anyhow::Result<Response> {
        let addr = self.addr;
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .with_context(|| format!("cannot reach the node API at {addr}"))?;
            s.set_read_timeout(Some(Duration::from_secs(30)))?;
            s.set_write_timeout(Some(Duration::from_secs(10)))?;
            s.set_nodelay(true)?;
            self.stream = Some(std::io::BufReader::with_capacity(64 * 1024, s));
        }
        let Some(reader) = self.stream.as_mut() else {
            anyhow::bail!("no connection to {addr}");
        };
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n",
            body.len()
        );
        let mut req = Vec::with_capacity(head.len() + body.len());
        req.extend_from_slice(head.as_bytes());
        req.extend_from_slice(body);
        let result = write_read(reader, &req);
        match result {
            Ok((r, keep)) => {
                if !keep {
                    self.stream = None;
                }
                Ok(r)
            }
            Err(e) => {
                self.stream = None;
                Err(e.context(format!("no complete answer from {addr}{path}")))
            }
        }
    }
}

/// Send a request and read one response: (response, whether the connection stays open).
fn write_read(
    reader: &mut std::io::BufReader<TcpStream>,
    req: &[u8],
) -> anyhow::Result<(Response, bool)> {
    use std::io::BufRead;
    reader.get_mut().write_all(req)?;
    let mut status = None;
    let mut length = None;
    let mut chunked = false;
    let mut keep = true;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            anyhow::bail!("the connection closed before the answer");
        }
        let line = line.trim_end();
        if line.is_empty() {
            if status.is_some() {
                break;
            }
            continue;
        }
        if status.is_none() {
            status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok());
            anyhow::ensure!(status.is_some(), "bad status line `{line}`");
            continue;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse::<usize>().ok();
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        } else if lower.starts_with("connection:") && lower.contains("close") {
            keep = false;
        }
    }
    let body = if chunked {
        let mut out = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size)?;
            let size = size.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size, 16).context("bad chunk size")?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            out.extend_from_slice(&chunk[..size]);
        }
        out
    } else if let Some(n) = length {
        let mut b = vec![0; n];
        reader.read_exact(&mut b)?;
        b
    } else {
        keep = false;
        let mut b = Vec::new();
        reader.read_to_end(&mut b)?;
        b
    };
    let status = status.unwrap_or_default();
    Ok((Response { status, body }, keep))
}
