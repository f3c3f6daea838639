//! The one HTTP client for talks with a node's API: the CLI's commands, the testnet launcher
//! and the benchmarks all use it. It is ureq, plain HTTP only (the API listens on localhost or
//! a LAN; put a proxy in front for anything else), with response bodies bounded. A call opens
//! its socket in the calling thread, so a thread that joined a network namespace reaches the
//! APIs inside it, and a [`Client`]'s kept-alive connections stay in the namespace they were
//! opened in.

use std::net::SocketAddr;
use std::time::Duration;

/// Largest response body read: a full global block as JSON is a few MiB.
pub const MAX_RESPONSE_BYTES: u64 = 64 << 20;

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

/// Connections to one node's API, kept alive between calls (the load generator sends many).
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    addr: SocketAddr,
}

impl Client {
    /// Connect within 5 s, a whole call within 30 s.
    pub fn new(addr: SocketAddr) -> Client {
        Client::with_timeouts(addr, Duration::from_secs(5), Duration::from_secs(30))
    }

    pub fn with_timeouts(addr: SocketAddr, connect: Duration, call: Duration) -> Client {
        let config = ureq::Agent::config_builder()
            // Error statuses carry the API's explanation in the body: callers read both.
            .http_status_as_error(false)
            .timeout_connect(Some(connect))
            .timeout_global(Some(call))
            .max_idle_connections_per_host(1)
            .build();
        Client {
            agent: ureq::Agent::new_with_config(config),
            addr,
        }
    }

    /// One request; `body`, if any, is sent as `content_type`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
    ) -> Result<HttpResponse, HttpError> {
        let addr = self.addr;
        let bad = |reason: String| HttpError::Response { addr, reason };
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        let sent = match body {
            Some(body) => request
                .header("content-type", content_type)
                .body(body)
                .map(|r| self.agent.run(r)),
            None => request.body(()).map(|r| self.agent.run(r)),
        };
        let mut response = sent
            .map_err(|e| bad(e.to_string()))?
            .map_err(|e| error(addr, e))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| error(addr, e))?;
        Ok(HttpResponse {
            status,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            bytes,
        })
    }
}

fn error(addr: SocketAddr, e: ureq::Error) -> HttpError {
    let reason = e.to_string();
    match e {
        ureq::Error::Io(_)
        | ureq::Error::Timeout(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::HostNotFound => HttpError::Connect { addr, reason },
        _ => HttpError::Response { addr, reason },
    }
}

/// One JSON request from async code (the CLI), on a blocking thread.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<HttpResponse, HttpError> {
    let body = body.unwrap_or("");
    request_bytes(addr, method, path, "application/json", body.as_bytes()).await
}

/// A request with a body of any type, from async code.
pub async fn request_bytes(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> Result<HttpResponse, HttpError> {
    let (method, path, content_type) =
        (method.to_owned(), path.to_owned(), content_type.to_owned());
    let body = (!body.is_empty()).then(|| body.to_vec());
    tokio::task::spawn_blocking(move || {
        Client::new(addr).call(&method, &path, &content_type, body.as_deref())
    })
    .await
    .map_err(|e| HttpError::Connect {
        addr,
        reason: format!("the request task failed: {e}"),
    })?
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server that answers each connection with `answer` after reading the request head.
    fn serve(answer: &'static [u8]) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                let mut buf = [0; 4096];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer);
            }
        });
        addr
    }

    #[test]
    fn reads_plain_chunked_and_error_answers() {
        let plain = serve(b"HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{}");
        let r = Client::new(plain)
            .call("GET", "/", "", None)
            .expect("plain");
        assert_eq!((r.status, r.body.as_str()), (202, "{}"));
        let chunked = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        );
        let r = Client::new(chunked).call("POST", "/x", "application/cbor", Some(b"\x80"));
        assert_eq!(r.expect("chunked").body, "abcde");
        let refused = serve(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 3\r\n\r\nbad");
        let r = Client::new(refused)
            .call("GET", "/", "", None)
            .expect("an answer");
        assert_eq!((r.status, r.body.as_str()), (400, "bad"));
        assert!(matches!(
            Client::new(serve(b"garbage\r\n\r\n")).call("GET", "/", "", None),
            Err(HttpError::Response { .. })
        ));
    }

    #[test]
    fn an_answer_over_the_limit_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            if let Some(mut s) = listener.incoming().flatten().next() {
                let mut buf = [0; 4096];
                let _ = s.read(&mut buf);
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                    MAX_RESPONSE_BYTES + 1
                );
                let _ = s.write_all(head.as_bytes());
                let chunk = vec![b'x'; 1 << 20];
                while s.write_all(&chunk).is_ok() {}
            }
        });
        assert!(Client::new(addr).call("GET", "/", "", None).is_err());
    }

    #[test]
    fn nothing_listening_is_a_connect_error() {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let e = Client::new(addr).call("GET", "/", "", None).err();
        assert!(matches!(e, Some(HttpError::Connect { .. })), "{e:?}");
    }
}
