//! lcbft's consensus core: pure state machines for the global three-chain HotStuff domain and
//! the local two-chain domains, the one `Collector` both use, the wire types and codec, the
//! threshold-signature backends, and a deterministic simulator that exercises all of it.
//!
//! No I/O lives here: a replica consumes [`io::Input`]s and returns [`io::Output`]s.

pub mod anchor;
pub mod codec;
pub mod collector;
mod core;
pub mod crypto;
pub mod global;
pub mod io;
pub mod local;
pub mod merkle;
pub mod message;
pub mod proof;
pub mod replica;
pub mod sim;
pub mod tree;
pub mod types;

pub use crate::core::{
    AcceptAll, Config, PayloadRule, PoolLimits, PoolRefusal, SYNC_BATCH_BLOCKS, SYNC_BATCH_BYTES,
    memory_window,
};
