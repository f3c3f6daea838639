//! Node processes: finding the `lcbft` binary, starting a node (on loopback or inside its
//! namespace), pid files, signals, and what /proc says about a node.
//!
//! Pid files (`run/<node>.pid`) rather than only child handles, because `chaos`, `status` and
//! `down` act on a network that another `lcbft-testnet` process started.

use crate::emulate::Emulated;
use crate::init::{LOOPBACK_CONFIG, NETNS_CONFIG};
use crate::topology::NodeSpec;
use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN_ENV: &str = "LCBFT_BIN";

/// The `lcbft` binary of the same build: next to this executable (or `LCBFT_BIN`).
pub fn lcbft_bin() -> anyhow::Result<PathBuf> {
    if let Some(p) = std::env::var_os(BIN_ENV) {
        let p = PathBuf::from(p);
        if p.is_file() {
            return Ok(p);
        }
        bail!("{BIN_ENV}={} is not a file", p.display());
    }
    let me = std::env::current_exe().context("cannot tell where lcbft-testnet is")?;
    let dir = me.parent().context("lcbft-testnet has no directory")?;
    let bin = dir.join("lcbft");
    if bin.is_file() {
        return Ok(bin);
    }
    bail!(
        "the node binary `lcbft` is not next to lcbft-testnet (looked for {}): build both with \
         `cargo build --release -p lcbft-node -p lcbft-testnet` and run target/release/lcbft-testnet, \
         or set {BIN_ENV} to an lcbft binary",
        bin.display()
    )
}

/// Who runs the network in a directory (`run/state.json`), written by `up`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunState {
    pub launcher_pid: i32,
    pub netns: bool,
    /// Nodes that run a cross-built binary under qemu (`up --emulate`).
    #[serde(default)]
    pub emulated: BTreeMap<String, Emulated>,
}

pub fn run_dir(root: &Path) -> PathBuf {
    root.join("run")
}

pub fn read_state(root: &Path) -> Option<RunState> {
    let text = std::fs::read_to_string(run_dir(root).join("state.json")).ok()?;
    serde_json::from_str(&text).ok()
}

pub fn write_state(root: &Path, s: &RunState) -> anyhow::Result<()> {
    let dir = run_dir(root);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::write(dir.join("state.json"), serde_json::to_string(s)?)
        .with_context(|| format!("cannot write {}", dir.display()))
}

pub fn clear_state(root: &Path) {
    let _ = std::fs::remove_dir_all(run_dir(root));
}

/// The network in `root` has a live node or a live launcher.
pub fn running(root: &Path, nodes: &[NodeSpec]) -> Option<RunState> {
    let s = read_state(root)?;
    let live = alive(s.launcher_pid) || nodes.iter().any(|n| node_pid(root, n).is_some());
    live.then_some(s)
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().to_owned())
        })
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

pub fn signal(pid: i32, sig: Signal) {
    let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
}

pub(crate) fn config_path(root: &Path, n: &NodeSpec, netns: bool) -> PathBuf {
    n.dir(root)
        .join(if netns { NETNS_CONFIG } else { LOOPBACK_CONFIG })
}

fn pid_file(root: &Path, n: &NodeSpec) -> PathBuf {
    run_dir(root).join(format!("{}.pid", n.name))
}

/// The node's live pid, checked against its command line so a reused pid is never taken
/// for the node.
pub fn node_pid(root: &Path, n: &NodeSpec) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file(root, n))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    let marker = n.dir(root).display().to_string();
    (alive(pid) && cmdline.contains(&marker)).then_some(pid)
}

/// Start a node (`bin`, or under qemu with `emu`); its stderr is appended to
/// `nodes/<name>/node.log`.
pub fn spawn_node(
    root: &Path,
    bin: &Path,
    n: &NodeSpec,
    netns: bool,
    emu: Option<&Emulated>,
) -> anyhow::Result<Child> {
    let dir = n.dir(root);
    let log_path = dir.join("node.log");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {}", log_path.display()))?;
    let _ = match emu {
        Some(e) => writeln!(
            log,
            "=== lcbft-testnet: starting {} ({} under {}: {}) ===",
            n.name,
            e.arch.as_str(),
            e.arch.qemu().0,
            e.bin.display()
        ),
        None => writeln!(log, "=== lcbft-testnet: starting {} ===", n.name),
    };
    let config = config_path(root, n, netns);
    let direct = match emu {
        Some(e) => e.command(),
        None => Command::new(bin),
    };
    let mut cmd = if netns {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &n.netns()])
            .arg(direct.get_program())
            .args(direct.get_args());
        c
    } else {
        direct
    };
    cmd.arg("run")
        .arg("--config")
        .arg(&config)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        )
        // The node reads every LCBFT_* variable as a config field and refuses unknown ones.
        .env_remove(BIN_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        // Its own process group: Ctrl-C reaches the launcher only, which then stops the
        // nodes in order.
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {} ({})", n.name, bin.display()))?;
    std::fs::create_dir_all(run_dir(root))?;
    std::fs::write(pid_file(root, n), child.id().to_string())?;
    Ok(child)
}

/// SIGTERM, and SIGKILL for whoever is still alive after `grace`.
pub fn stop_all(pids: &[i32], grace: Duration) {
    for &p in pids {
        signal(p, Signal::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < grace && pids.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for &p in pids {
        if alive(p) {
            signal(p, Signal::SIGKILL);
        }
    }
}

/// Resident memory (bytes) and CPU time used so far (seconds).
pub fn usage(pid: i32) -> Option<(u64, f64)> {
    let s = lcbft_node::metrics::read_stats(Some(pid))?;
    Some((s.resident_bytes, s.cpu_seconds))
}
