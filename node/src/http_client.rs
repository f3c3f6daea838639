//! A minimal HTTP/1.1 client for the CLI's talks with a local node's API (no TLS: the API is
//! on localhost).

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(
        "cannot reach the node API at {addr}: {reason} (is `lcbft run` up, with this api.listen?)"
    )]
    Connect { addr: SocketAddr, reason: String },
    #[error("bad HTTP response from {addr}: {reason}")]
    Response { addr: SocketAddr, reason: String },
}

pub struct HttpResponse {
    pub status: u16,
    /// The body as text (lossy for binary bodies: use `bytes` for those).
    pub body: String,
    pub bytes: Vec<u8>,
}

/// One request with `Connection: close`; the whole response is read.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<HttpResponse, HttpError> {
    let body = body.unwrap_or("");
    request_bytes(addr, method, path, "application/json", body.as_bytes()).await
}

/// A request with a body of any type.
pub async fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<HttpResponse, HttpError> {
    let connect = |reason: String| HttpError::Connect { addr, reason };
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| connect("timed out".into()))?
        .map_err(|e| connect(e.to_string()))?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .await
        .map_err(|e| connect(e.to_string()))?;
    stream
        .write_all(body)
        .await
        .map_err(|e| connect(e.to_string()))?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| connect("no response within 30s".into()))?
        .map_err(|e| connect(e.to_string()))?;
    parse(addr, &raw)
}

/// Parse a whole `Connection: close` response (plain or chunked body).
pub fn parse(addr: SocketAddr, raw: &[u8]) -> Result<HttpResponse, HttpError> {
    let bad = |reason: &str| HttpError::Response {
        addr,
        reason: reason.to_owned(),
    };
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let bytes = if chunked {
        dechunk(body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        body.to_vec()
    };
    Ok(HttpResponse {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        bytes,
    })
}

fn dechunk(mut s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line = s.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&s[..line]).ok()?;
        // A chunk size may carry `;extension`s.
        let size = size.split(';').next().unwrap_or_default();
        let size = usize::from_str_radix(size.trim(), 16).ok()?;
        let rest = &s[line + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        s = rest.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_bodies() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let r = parse(
            addr,
            b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}",
        )
        .expect("plain");
        assert_eq!((r.status, r.body.as_str()), (202, "{}"));
        let r = parse(
            addr,
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!(r.body, "abcde");
        assert!(parse(addr, b"garbage").is_err());
    }
}
