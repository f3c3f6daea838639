//! Runs every cargo-fuzz target under `fuzz/` for a short time (`FUZZ_SECONDS`, default 25)
//! from its committed seed corpus, and fails on any crash, panic, failed assertion or hang.
//!
//! cargo-fuzz drives libFuzzer with unstable rustc flags; on a stable toolchain it runs with
//! `RUSTC_BOOTSTRAP=1`. Without the sanitizer: the code under test forbids `unsafe`, so what
//! the fuzzer hunts is panics, overflows and broken round-trips, and ASan would only slow it.
//! The fuzz crate builds in its own target dir, so this does not wait on the workspace's.
//!
//! Without cargo-fuzz the test says loudly that it skips; with `REQUIRE_FUZZ=1` (CI) it fails.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

/// Every target in `fuzz/fuzz_targets/`; the test fails if one is added and not listed.
const TARGETS: [&str; 8] = [
    "gossip",
    "direct",
    "message",
    "genesis",
    "config",
    "trace_json",
    "submit",
    "proof",
];

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("fuzz")
}

fn cargo_fuzz(dir: &Path) -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.arg("fuzz")
        .current_dir(dir.parent().unwrap())
        .env("RUSTC_BOOTSTRAP", "1");
    c
}

fn installed() -> bool {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn tail(o: &Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr);
    let lines: Vec<&str> = err.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// libFuzzer's final count: `stat::number_of_executed_units: N`.
fn executions(o: &Output) -> Option<u64> {
    String::from_utf8_lossy(&o.stderr)
        .lines()
        .find_map(|l| l.strip_prefix("stat::number_of_executed_units:"))
        .and_then(|n| n.trim().parse().ok())
}

#[test]
fn every_fuzz_target_runs_clean_from_its_seeds() {
    let dir = fuzz_dir();
    let mut found: Vec<String> = std::fs::read_dir(dir.join("fuzz_targets"))
        .unwrap()
        .map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.trim_end_matches(".rs").to_owned()
        })
        .collect();
    found.sort();
    let mut listed: Vec<String> = TARGETS.iter().map(|t| t.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed, "TARGETS must name every fuzz target");
    for t in TARGETS {
        let seeds = dir.join("corpus").join(t);
        assert!(
            std::fs::read_dir(&seeds).is_ok_and(|mut d| d.next().is_some()),
            "{} has no seeds",
            seeds.display()
        );
    }

    if !installed() {
        let why = "cargo-fuzz not installed (cargo install cargo-fuzz --locked)";
        assert!(
            std::env::var_os("REQUIRE_FUZZ").is_none(),
            "REQUIRE_FUZZ is set but {why}"
        );
        eprintln!("\n=====\nSKIPPED: {why}: no fuzz target ran\n=====\n");
        println!("SKIPPED: {why}");
        return;
    }
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(25);
    let target_dir = dir.join("target");

    let started = Instant::now();
    let build = cargo_fuzz(&dir)
        .args(["build", "--sanitizer", "none", "--target-dir"])
        .arg(&target_dir)
        .output()
        .unwrap();
    assert!(
        build.status.success(),
        "cargo fuzz build:\n{}",
        tail(&build)
    );
    eprintln!("fuzz build: {:.0?}", started.elapsed());

    let scratch = tempfile::tempdir().unwrap();
    for t in TARGETS {
        // New inputs go to a scratch corpus; the committed seeds are only read.
        let corpus = scratch.path().join(t);
        std::fs::create_dir_all(&corpus).unwrap();
        let run = cargo_fuzz(&dir)
            .args(["run", "--sanitizer", "none", "--target-dir"])
            .arg(&target_dir)
            .arg(t)
            .arg(&corpus)
            .arg(dir.join("corpus").join(t))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            // A single input taking this long is a hang: reported as a crash.
            .arg("-timeout=20")
            .arg("-rss_limit_mb=2048")
            .arg("-print_final_stats=1")
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "fuzz target {t} failed (the input is under fuzz/artifacts/{t}/; rerun with \
             `cargo fuzz run --sanitizer none {t} fuzz/artifacts/{t}/<file>`):\n{}",
            tail(&run)
        );
        eprintln!(
            "fuzz {t}: {} executions in {seconds} s, no crash",
            executions(&run).map_or("?".into(), |n| n.to_string())
        );
    }
    eprintln!("fuzzing took {:.0?} in all", started.elapsed());
}
