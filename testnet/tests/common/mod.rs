//! Running `lcbft-testnet` from tests: the binaries, a time limit, one network at a time.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub const TESTNET: &str = env!("CARGO_BIN_EXE_lcbft-testnet");

/// One testnet at a time: the machine has few cores, and netns mode owns the `lcbft-*`
/// namespaces.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `lcbft` binary beside `lcbft-testnet`. `cargo test --workspace` builds it (the node's
/// own tests need it); `cargo test -p lcbft-testnet` does not, so build it here if missing.
pub fn ensure_lcbft() -> PathBuf {
    let dir = Path::new(TESTNET).parent().expect("binary dir");
    let bin = dir.join("lcbft");
    if !bin.is_file() {
        let target = dir.parent().expect("target dir");
        let release = dir.file_name().is_some_and(|n| n == "release");
        eprintln!(
            "building lcbft into {} (it is not built yet)",
            dir.display()
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-p", "lcbft-node", "--bin", "lcbft"])
            .env("CARGO_TARGET_DIR", target);
        if release {
            cmd.arg("--release");
        }
        let ok = cmd.status().expect("run cargo").success();
        assert!(
            ok && bin.is_file(),
            "cannot build lcbft into {}",
            dir.display()
        );
    }
    bin
}

/// Run lcbft-testnet with a time limit (killed after it); stderr streams through.
pub fn testnet(args: &[&str], limit: Duration) -> Output {
    ensure_lcbft();
    let child = Command::new(TESTNET)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn lcbft-testnet");
    let pid = child.id();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let what = format!("{args:?}");
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < limit {
                if done.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!("lcbft-testnet {what} ran over {limit:?}: terminating it");
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        })
    };
    let out = child.wait_with_output().expect("wait for lcbft-testnet");
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watchdog.join();
    out
}

pub fn json(out: &Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `Err(why)` when netns tests cannot run here.
pub fn netns_unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("not root (netns mode creates network namespaces)".into());
    }
    let ip = Command::new("ip").arg("-V").output();
    if !ip.is_ok_and(|o| o.status.success()) {
        return Some("the `ip` command (iproute2) is missing".into());
    }
    None
}

/// Say loudly that a test is skipped, and why.
pub fn skip(test: &str, why: &str) {
    eprintln!("\n*** SKIPPED {test}: {why} ***\n");
    println!("SKIPPED {test}: {why}");
}

/// Both layers committed, the check passed, and the load made it into blocks. Anchors are
/// asserted once the node reports them (`anchors` is null before).
pub fn assert_healthy_run(v: &serde_json::Value) {
    assert_eq!(v["safety"], "ok", "{v:#}");
    for layer in ["global", "local"] {
        assert!(
            v[layer]["commits"].as_u64().unwrap_or(0) > 0,
            "{layer} did not commit: {v:#}"
        );
        assert!(
            v[layer]["height_min"].as_u64().unwrap_or(0) > 0,
            "{layer} has a node at 0: {v:#}"
        );
    }
    assert!(v["traces"]["committed"].as_u64().unwrap_or(0) > 0, "{v:#}");
    if v["anchors"].is_null() {
        eprintln!(
            "NOTE: the node reports no anchors yet: the anchors > 0 assertion is not enforced"
        );
    } else {
        assert!(v["anchors"].as_u64().unwrap_or(0) > 0, "no anchors: {v:#}");
    }
}

/// Run `chaos --scenario NAME ARGS..` on a fresh testnet directory and require a clean exit,
/// the scenario's own verdict and a passing safety check; returns the JSON verdict.
pub fn chaos(scenario: &str, args: &[&str], limit: Duration) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    chaos_in(&dir.path().join("net"), scenario, args, limit)
}

/// [`chaos`] on the testnet directory `net` (made by `init`, or a fresh one if absent).
pub fn chaos_in(net: &Path, scenario: &str, args: &[&str], limit: Duration) -> serde_json::Value {
    let mut all = vec!["chaos", "--scenario", scenario];
    all.extend_from_slice(args);
    all.push(net.to_str().expect("utf-8 path"));
    let o = testnet(&all, limit);
    let v = json(&o);
    assert!(o.status.success(), "{v:#}");
    assert_eq!(v["scenario_result"], "ok", "{v:#}");
    assert_eq!(v["safety"], "ok", "{v:#}");
    v
}
