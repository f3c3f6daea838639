//! Command-line interface of the `lcbft` binary.

use clap::{Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;

/// lcbft: layered chained BFT for trustworthy IoT data traces.
///
/// A network is set up in three steps: every node runs `lcbft keygen`; one operator runs
/// `lcbft genesis` with all PeerIds and hands each node the genesis file and its key shares;
/// every node runs `lcbft run --config FILE`.
#[derive(Parser, Debug)]
#[command(name = "lcbft", version = crate::net::wire::VERSION, about, long_about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create this node's libp2p ed25519 identity and print its PeerId.
    ///
    /// The file is protobuf-encoded and written with mode 0600; an existing file is never
    /// overwritten.
    Keygen {
        /// Where to write the identity.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Deal the domains' threshold keys and write genesis.toml plus one key share per member.
    ///
    /// Writes DIR/genesis.toml (domains, members' PeerIds, indices and roles, the scheme and
    /// each domain's public key set) and DIR/keys/<peer-id>/<domain>.share (mode 0600), which
    /// must be copied to that node only. The first PeerId of a --domain is its edge, which must
    /// also be listed in --global.
    Genesis {
        /// PeerIds of the global validators (cloud and edge nodes), in index order.
        #[arg(long, value_name = "PEERID", num_args = 1..)]
        global: Vec<String>,
        /// A local domain: `<id>=<edge-peerid>,<device-peerid>,...`. Repeatable.
        #[arg(long, value_name = "ID=EDGE,PEER,...")]
        domain: Vec<String>,
        /// Output directory (created if missing; existing files are never overwritten).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Threshold signature scheme of the network.
        #[arg(long, value_enum, default_value_t = Scheme::ThresholdCrypto)]
        scheme: Scheme,
        /// What blocks carry: producer-signed traces, or opaque raw payloads (benchmarks).
        #[arg(long, value_enum, default_value_t = Payload::Traces)]
        payload: Payload,
    },
    /// Configuration file helpers.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Run the node: networking, consensus, storage and the HTTP API.
    ///
    /// Logs go to stderr; set RUST_LOG (e.g. `RUST_LOG=lcbft=debug,info`) to choose what.
    /// Stops cleanly on SIGINT or SIGTERM.
    Run {
        /// The node's TOML config file (see `lcbft config example`).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// The database was restored from a backup (or may otherwise be older than what this
        /// node signed): before signing anything, ask the members how far they got and sign
        /// only above that. A node whose database holds no state for a domain (new, or lost)
        /// does this on its own.
        #[arg(long)]
        rejoin: bool,
    },
    /// Show a running node's status (domains, views, heights, peers).
    Status {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:7700")]
        api: SocketAddr,
    },
    /// Submit and look up data traces through a running node's API.
    Trace {
        #[command(subcommand)]
        command: TraceCommand,
    },
    /// Fetch the standalone proof of a committed trace from a global or edge node.
    ///
    /// The proof (CBOR) holds the Merkle path from the trace to its block, the block's commit
    /// certificates and, for a local block, its anchor in a committed global block with the
    /// global commit certificates. Check it with `lcbft verify-proof`.
    Proof {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:7700")]
        api: SocketAddr,
        /// The trace id (hex).
        id: String,
        /// Where to write the proof.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Check a trace proof offline, with nothing but the network's genesis file.
    ///
    /// Exits 0 and prints what the proof establishes, or exits 1 saying what failed.
    VerifyProof {
        /// The proof file (`lcbft proof` or `GET /v1/traces/{id}/proof`).
        file: PathBuf,
        /// The network's genesis.toml.
        #[arg(long, value_name = "FILE")]
        genesis: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Print a commented example config with every field at its default.
    Example,
    /// Load and validate a config file (with LCBFT_* overrides) and print the result.
    Check {
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum TraceCommand {
    /// Sign a trace with a producer key and submit it; prints the trace id.
    Submit {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:7700")]
        api: SocketAddr,
        /// The producer's ed25519 key (an `lcbft keygen` file).
        #[arg(long, value_name = "FILE")]
        key: PathBuf,
        /// Domain the trace belongs to: `global` or `local/<id>`.
        #[arg(long, default_value = "global")]
        domain: String,
        /// What happened: generated, processed, derived or consumed.
        #[arg(long, default_value = "generated")]
        action: String,
        /// The application that produced the data.
        #[arg(long, default_value = "cli")]
        application: String,
        /// The data itself; its blake3 digest is recorded and the bytes kept as the body.
        #[arg(long)]
        data: String,
        /// Ids (hex) of traces this one was derived from.
        #[arg(long, value_name = "ID")]
        parent: Vec<String>,
    },
    /// Show a trace and its status.
    Get {
        /// The node's HTTP API address.
        #[arg(long, default_value = "127.0.0.1:7700")]
        api: SocketAddr,
        /// The trace id (hex).
        id: String,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Scheme {
    /// BLS12-381 threshold signatures as `threshold_crypto` defines them (the default),
    /// computed with `blst`.
    ThresholdCrypto,
    /// BLS12-381 threshold signatures from `blsttc` over `blst`: the same shapes, the standard
    /// hash to the curve, about the same speed (in the default build; a node built without the
    /// `blsttc` feature refuses such a genesis).
    Blsttc,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Payload {
    /// Signed data traces, `POST /v1/traces` (the default).
    Traces,
    /// Opaque payloads without a producer signature, `POST /v1/payloads`.
    Raw,
}

impl From<Payload> for crate::genesis::PayloadKind {
    fn from(p: Payload) -> Self {
        match p {
            Payload::Traces => crate::genesis::PayloadKind::Traces,
            Payload::Raw => crate::genesis::PayloadKind::Raw,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn genesis_parses_repeated_domains() {
        let cli = Cli::try_parse_from([
            "lcbft", "genesis", "--global", "a", "b", "--domain", "1=a,c", "--domain", "2=b,d",
            "--out", "x",
        ])
        .expect("parse");
        match cli.command {
            Command::Genesis { global, domain, .. } => {
                assert_eq!(global, ["a", "b"]);
                assert_eq!(domain, ["1=a,c", "2=b,d"]);
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
