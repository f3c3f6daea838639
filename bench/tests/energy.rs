//! `lcbft-bench energy` in its short form on real node processes: one pacing setting, idle and
//! a light load, a few seconds each. It must print one JSON line with every figure per point,
//! commit the load, and write its tables and plot.

use std::process::Command;
use std::time::Duration;

mod common;

use common::{BENCH, ensure_lcbft, run_bench};

#[test]
fn energy_prints_one_json_line_with_every_figure() {
    ensure_lcbft();
    let dir = tempfile::tempdir().expect("tempdir");
    let results = dir.path().join("results");
    let mut cmd = Command::new(BENCH);
    cmd.args([
        "energy",
        "--pacing",
        "200:500",
        "--rates",
        "0,20",
        "--duration",
        "6",
        "--settle",
        "3",
        "--out",
    ])
    .arg(dir.path().join("nets"))
    .arg("--results")
    .arg(&results);
    let o = run_bench(cmd, Duration::from_secs(300));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "lcbft-bench failed: {text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line: {text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    let points = v["points"].as_array().expect("points");
    assert_eq!(points.len(), 2, "{v:#}");
    for p in points {
        assert_eq!(p["propose_delay_ms"], 200, "{p:#}");
        assert_eq!(p["min_block_interval_ms"], 500, "{p:#}");
        for role in ["device", "edge", "cloud"] {
            let pct = p["cpu_pct_per_node"][role].as_f64();
            // A node uses at most the machine's cores; a negative figure would be a bad delta.
            assert!(
                pct.is_some_and(|c| (0.0..=800.0).contains(&c)),
                "{role}: {p:#}"
            );
            assert!(p["cpu_ms_per_trace_per_node"].get(role).is_some(), "{p:#}");
        }
        for layer in ["local_per_domain", "global"] {
            assert!(p["blocks_per_s"][layer].as_f64().is_some(), "{p:#}");
        }
    }
    let idle = &points[0];
    assert_eq!(idle["rate"], 0.0);
    assert!(idle["local_commit_ms"].is_null(), "{idle:#}");
    let loaded = &points[1];
    assert!(
        loaded["committed_per_s"].as_f64().unwrap_or(0.0) > 0.0,
        "{loaded:#}"
    );
    assert!(
        loaded["blocks_per_s"]["local_per_domain"]
            .as_f64()
            .unwrap_or(0.0)
            > 0.0
    );
    let lat = &loaded["local_commit_ms"];
    let (p50, p99) = (lat["p50"].as_f64(), lat["p99"].as_f64());
    assert!(p50.is_some_and(|x| x > 0.0) && p99 >= p50, "{loaded:#}");
    assert!(
        loaded["cpu_ms_per_trace_per_node"]["device"]
            .as_f64()
            .is_some()
    );
    for file in ["energy.csv", "energy.md", "energy.png"] {
        let len = std::fs::metadata(results.join(file)).map_or(0, |m| m.len());
        assert!(len > 0, "{file} missing or empty");
    }
}
