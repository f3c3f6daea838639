//! `lcbft-testnet` as a library: what the binary runs, for other harnesses (`lcbft-bench
//! throughput` starts, loads and observes networks with it).

pub mod assets;
pub mod bundle;
pub mod chaos;
pub mod check;
pub mod commands;
pub mod emulate;
pub mod http;
pub mod init;
pub mod load;
pub mod net;
pub mod netns;
pub mod observe;
pub mod procs;
pub mod progress;
pub mod session;
pub mod status;
pub mod summary;
pub mod topology;
pub mod up;
