//! The lcbft node: a thin shell around `lcbft_protocol` (DESIGN §6). It turns network
//! messages, timers and disk results into protocol inputs and carries out the outputs.

pub mod admission;
pub mod api;
pub mod cli;
pub mod config;
pub mod files;
pub mod genesis;
pub mod http_client;
pub mod identity;
pub mod metrics;
pub mod net;
pub mod node;
pub mod proofs;
pub mod store;
#[cfg(test)]
mod testkit;
pub mod trace;
