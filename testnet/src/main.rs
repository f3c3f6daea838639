//! `lcbft-testnet`: a layered lcbft network of node processes on one machine, on loopback or
//! with one network namespace per node.

use clap::{Parser, Subcommand};
use lcbft_node::cli::{Payload, Scheme};
use lcbft_testnet::{chaos, commands, init, net, status, up};
use std::path::PathBuf;
use std::process::ExitCode;

/// Start, watch, load, break and check a layered lcbft network on this machine.
///
/// Quick start: `lcbft-testnet up` creates a default network (2 cloud validators and 2 edges
/// in the global domain; 2 local domains, each its edge and 3 devices), starts one `lcbft`
/// process per node and shows both layers committing. The `lcbft` binary must sit next to
/// this one (build both: `cargo build --release -p lcbft-node -p lcbft-testnet`).
#[derive(Parser)]
#[command(name = "lcbft-testnet", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a testnet directory: identities, genesis, node configs, Prometheus and Grafana.
    ///
    /// Writes topology.json (the manifest the other commands read), genesis/ (genesis.toml and
    /// the key shares), nodes/<name>/ (node.key, node.toml for loopback, node-netns.toml for
    /// --netns), producer.key (signs load traces), prometheus.yml (one scrape target per node,
    /// labelled node, role, node_domain) and the Grafana dashboard and compose files.
    Init {
        /// Global validators, the local domains' edges included.
        #[arg(long, default_value_t = 4)]
        global: usize,
        /// Local domains; domain d's edge is `edge<d>`.
        #[arg(long, default_value_t = 2)]
        domains: usize,
        /// Devices per local domain (a domain has n = devices + 1 members).
        #[arg(long, default_value_t = 3)]
        devices: usize,
        /// Directory to write (must not hold a testnet yet).
        #[arg(long, default_value = "testnet")]
        out: PathBuf,
        /// First of the loopback ports (2 per node); default: a free block chosen at random.
        #[arg(long)]
        base_port: Option<u16>,
        /// Threshold signature scheme (blsttc needs an `lcbft` built with it).
        #[arg(long, value_enum, default_value_t = Scheme::ThresholdCrypto)]
        scheme: Scheme,
        /// What blocks carry: signed traces, or raw 512-byte payloads (`load` and `up --load`
        /// follow the genesis).
        #[arg(long, value_enum, default_value_t = Payload::Traces)]
        payload: Payload,
    },
    /// Write one deployment bundle per host of a real LAN (Raspberry Pis, edges, clouds).
    ///
    /// HOSTS is a TOML file with one [[host]] table per machine: name, role (cloud, edge,
    /// device), domain (the local domain of an edge or a device) and address (its LAN IPv4
    /// address); optional p2p_port and api_port (default 7600 and 7700, also settable at the
    /// top of the file). Writes OUT/nodes/<name>/ per host: node.toml with the real addresses
    /// (every domain member as a known peer, mDNS on in local domains), node.key and
    /// keys/*.share (mode 0600), genesis.toml and lcbft.service (systemd). OUT also gets
    /// genesis/ with every share (keep it offline), prometheus.yml, the dashboards and the
    /// manifest, so `status OUT` and `check OUT` work from a machine on the LAN. See
    /// deploy/RASPBERRY-PI.md.
    Bundle {
        /// The hosts file.
        #[arg(long)]
        hosts: PathBuf,
        /// Directory to write (must not hold a network yet).
        #[arg(long)]
        out: PathBuf,
        /// Threshold signature scheme (blsttc needs an `lcbft` built with it).
        #[arg(long, value_enum, default_value_t = Scheme::ThresholdCrypto)]
        scheme: Scheme,
        /// What blocks carry.
        #[arg(long, value_enum, default_value_t = Payload::Traces)]
        payload: Payload,
    },
    /// Start every node, show live progress, stop on Ctrl-C or after --duration, then check.
    ///
    /// Without DIR a default testnet is created in a fresh temporary directory. Each node logs
    /// to nodes/<name>/node.log (RUST_LOG is passed on). Progress goes to stderr; with --json
    /// stdout gets one summary object: per layer (`global`, `local`) committed height min and
    /// max, commits during the run and view changes; `anchors` (null while the nodes do not
    /// report anchoring); `traces` submitted, accepted and committed; `safety` ("ok" or what
    /// failed) and the `check` details. Exits non-zero when the check fails.
    Up {
        /// Testnet directory (from `init`; initialised with defaults when it has none).
        dir: Option<PathBuf>,
        /// Stop after this many seconds (default: run until Ctrl-C).
        #[arg(long, value_name = "SECONDS")]
        duration: Option<u64>,
        /// One network namespace per node, LANs as bridges, mDNS and Kademlia discovery
        /// (needs root and iproute2).
        #[arg(long)]
        netns: bool,
        /// Submit signed traces at this rate (per second) once the nodes are connected: 90%
        /// to devices over the local domains, 10% to clouds for the global chain. An idle
        /// network makes no blocks, so there is light traffic by default; 0 turns it off.
        #[arg(long, value_name = "RATE", default_value_t = 20.0)]
        load: f64,
        /// Print the final summary as JSON on stdout.
        #[arg(long)]
        json: bool,
        /// Run these nodes as a Raspberry Pi build under qemu user emulation:
        /// ARCH:NODE[,NODE..] with ARCH aarch64 or armv7, e.g. `aarch64:dev1-1`. Needs
        /// qemu-user and the cross build (`deploy/cross.sh aarch64`). Repeatable.
        #[arg(long, value_name = "ARCH:NODES")]
        emulate: Vec<String>,
        /// The binary to emulate for ARCH (default: target/<triple>/device/lcbft, then
        /// .../release/lcbft, beside the native build). Repeatable.
        #[arg(long, value_name = "ARCH=PATH")]
        emulate_bin: Vec<String>,
    },
    /// Stop the testnet running in DIR (also what a crashed launcher left behind).
    Down {
        #[arg(default_value = "testnet")]
        dir: PathBuf,
    },
    /// Table of the running nodes: role, domain, view, term, height, leader, peers, RSS, CPU.
    Status {
        #[arg(default_value = "testnet")]
        dir: PathBuf,
    },
    /// Submit signed traces to a running testnet's devices and report committed rates.
    Load {
        /// Traces per second.
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Seconds to submit for.
        #[arg(long, default_value_t = 10)]
        duration: u64,
        #[arg(default_value = "testnet")]
        dir: PathBuf,
    },
    /// Run a fault scenario, then `check`. Prints a JSON verdict; exits non-zero on failure.
    ///
    /// Acts on the testnet `up` runs in DIR; when none runs there, starts one (defaults; in a
    /// temporary directory without DIR), runs the scenario under a light load and stops it.
    Chaos {
        #[arg(long, value_enum)]
        scenario: chaos::Scenario,
        dir: Option<PathBuf>,
        /// When this command starts the testnet itself: in network namespaces.
        #[arg(long)]
        netns: bool,
        /// Seed of the random choices (kill-restart, kill9).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Kill-and-restart rounds (kill-restart, kill9).
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Background load during the scenario, traces per second.
        #[arg(long, default_value_t = 30.0)]
        load: f64,
        /// How restart-all stops the nodes (power-loss always kills).
        #[arg(long, value_enum, default_value = "term")]
        signal: chaos::StopSignal,
    },
    /// Verify the running testnet: no conflicting blocks at any height in any domain, chains
    /// that link up, anchored local chains complete, sample proofs that verify offline.
    ///
    /// Exits 0 only if all holds. Checks the node cannot answer yet (anchors, proofs) are
    /// listed as notes, not failures.
    Check {
        #[arg(default_value = "testnet")]
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn genesis_options(scheme: Scheme, payload: Payload) -> init::GenesisOptions {
    init::GenesisOptions {
        scheme: match scheme {
            Scheme::ThresholdCrypto => lcbft_protocol::crypto::SchemeId::ThresholdCrypto,
            Scheme::Blsttc => lcbft_protocol::crypto::SchemeId::Blsttc,
        },
        payload: payload.into(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init {
            global,
            domains,
            devices,
            out,
            base_port,
            scheme,
            payload,
        } => commands::init(
            out,
            global,
            domains,
            devices,
            base_port,
            genesis_options(scheme, payload),
        ),
        Command::Bundle {
            hosts,
            out,
            scheme,
            payload,
        } => commands::bundle(&hosts, &out, genesis_options(scheme, payload)),
        Command::Up {
            dir,
            duration,
            netns,
            load,
            json,
            emulate,
            emulate_bin,
        } => up::run(up::Args {
            dir,
            duration,
            netns,
            load: (load != 0.0).then_some(load),
            json,
            emulate,
            emulate_bin,
        }),
        Command::Down { dir } => commands::down(&dir),
        Command::Status { dir } => net::Net::open(&dir, false)
            .and_then(|n| status::run(&n))
            .map(|_| true),
        Command::Load {
            rate,
            duration,
            dir,
        } => commands::load(&dir, rate, duration),
        Command::Chaos {
            scenario,
            dir,
            netns,
            seed,
            rounds,
            load,
            signal,
        } => chaos::run(chaos::Args {
            scenario,
            dir,
            netns,
            seed,
            rounds,
            load,
            signal,
        }),
        Command::Check { dir, json } => commands::check(&dir, json),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
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
}
