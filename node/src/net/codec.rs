//! The point-to-point codec: libp2p's bounded CBOR codec, counting the requests it refuses.
//!
//! libp2p reports nothing when reading a request fails (it is neither an event nor an
//! inbound failure), so a request larger than the wire bound or not CBOR would vanish
//! uncounted. This wrapper counts those in `lcbft_direct_rejected_total{reason="unreadable"}`.

use super::wire::{Ack, DIRECT_PROTOCOL, Direct, MAX_WIRE_BYTES};
use futures::{AsyncRead, AsyncWrite};
use libp2p::StreamProtocol;
use libp2p::request_response::{self, cbor};
use prometheus_client::metrics::counter::Counter;
use std::io;

#[derive(Clone)]
pub struct DirectCodec {
    inner: cbor::codec::Codec<Direct, Ack>,
    /// Requests that could not be read (over the bound, not CBOR, or cut off mid-stream).
    unreadable: Counter,
}

impl DirectCodec {
    pub fn new(unreadable: Counter) -> DirectCodec {
        DirectCodec {
            inner: cbor::codec::Codec::default()
                .set_request_size_maximum(MAX_WIRE_BYTES as u64)
                .set_response_size_maximum(1024),
            unreadable,
        }
    }
}

impl request_response::Codec for DirectCodec {
    type Protocol = StreamProtocol;
    type Request = Direct;
    type Response = Ack;

    async fn read_request<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Direct>
    where
        T: AsyncRead + Unpin + Send,
    {
        debug_assert_eq!(*p, DIRECT_PROTOCOL);
        let r = self.inner.read_request(p, io).await;
        if r.is_err() {
            self.unreadable.inc();
        }
        r
    }

    async fn read_response<T>(&mut self, p: &StreamProtocol, io: &mut T) -> io::Result<Ack>
    where
        T: AsyncRead + Unpin + Send,
    {
        self.inner.read_response(p, io).await
    }

    async fn write_request<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        req: Direct,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.inner.write_request(p, io, req).await
    }

    async fn write_response<T>(
        &mut self,
        p: &StreamProtocol,
        io: &mut T,
        res: Ack,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        self.inner.write_response(p, io, res).await
    }
}
