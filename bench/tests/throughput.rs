//! `lcbft-bench throughput` on real node processes: a short run at a modest rate must print a
//! parseable JSON line with every key and a network that committed something.

use std::process::Command;
use std::time::Duration;

mod common;

use common::{BENCH, ensure_lcbft, run_bench};

#[test]
fn throughput_prints_one_json_line_with_every_key() {
    ensure_lcbft();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("bench");
    let mut cmd = Command::new(BENCH);
    cmd.args(["throughput", "--duration", "15", "--rate", "1000", "--out"])
        .arg(&out);
    let o = run_bench(cmd, Duration::from_secs(300));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "lcbft-bench failed: {text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line: {text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    for key in [
        "topology",
        "scheme",
        "payload",
        "offered_per_s",
        "committed_per_s",
        "latency_ms",
        "blocks_per_s",
        "bytes_per_trace",
        "cpu_s_per_1000",
        "peak_rss_mb",
    ] {
        assert!(v.get(key).is_some(), "no `{key}` in {v:#}");
    }
    assert_eq!(v["topology"], "default");
    // 1,000/s overloads the layered network on a small machine (the local domains may then
    // commit little within 15 s), so only "something committed" is required, not both layers.
    let local = v["committed_per_s"]["local"].as_f64().unwrap_or(0.0);
    let global = v["committed_per_s"]["global"].as_f64().unwrap_or(0.0);
    assert!(local + global > 0.0, "nothing committed: {v:#}");
    assert!(v["offered_per_s"].as_f64().unwrap_or(0.0) > 250.0, "{v:#}");
    let lat = &v["latency_ms"];
    assert!(
        lat["local_commit"]["p50"].as_f64().is_some()
            || lat["global_commit"]["p50"].as_f64().is_some(),
        "no latency measured: {v:#}"
    );
    for role in ["device", "edge", "cloud"] {
        assert!(
            v["cpu_s_per_1000"][role].as_f64().is_some(),
            "{role}: {v:#}"
        );
        assert!(
            v["peak_rss_mb"][role].as_u64().is_some_and(|m| m > 0),
            "{role}: {v:#}"
        );
    }
}
