//! What the bench's process tests share: the `lcbft` binary they start.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub const BENCH: &str = env!("CARGO_BIN_EXE_lcbft-bench");

/// The `lcbft` binary beside `lcbft-bench`; built here when `cargo test -p lcbft-bench` did
/// not build it (as the testnet's tests do).
pub fn ensure_lcbft() -> PathBuf {
    let dir = Path::new(BENCH).parent().expect("binary dir");
    let bin = dir.join("lcbft");
    if !bin.is_file() {
        let target = dir.parent().expect("target dir");
        let release = dir.file_name().is_some_and(|n| n == "release");
        eprintln!("building lcbft into {}", dir.display());
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

/// Run `cmd` (an `lcbft-bench` command) with its stdout captured, terminating it after `limit`
/// so a hung network fails the test instead of the CI job.
pub fn run_bench(mut cmd: Command, limit: Duration) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn lcbft-bench");
    let pid = child.id();
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < limit {
                if done.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            eprintln!("lcbft-bench ran over {limit:?}: terminating it");
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        })
    };
    let o = child.wait_with_output().expect("wait for lcbft-bench");
    done.store(true, Ordering::Relaxed);
    let _ = watchdog.join();
    o
}
