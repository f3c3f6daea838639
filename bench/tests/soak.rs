//! `lcbft-bench soak` in a short form on real node processes: it must sample every node,
//! commit the load, write its CSV and plot, and print one JSON line with the figures per role.

use std::process::Command;
use std::time::Duration;

mod common;

use common::{BENCH, ensure_lcbft, run_bench};

#[test]
fn soak_samples_every_node_and_prints_the_slopes_per_role() {
    ensure_lcbft();
    let dir = tempfile::tempdir().expect("tempdir");
    let results = dir.path().join("results");
    let mut cmd = Command::new(BENCH);
    cmd.args([
        "soak",
        "--duration",
        "16s",
        "--every",
        "2",
        "--warmup",
        "4",
        "--rate",
        "50",
        "--out",
    ])
    .arg(dir.path().join("net"))
    .arg("--results")
    .arg(&results);
    let o = run_bench(cmd, Duration::from_secs(300));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "lcbft-bench failed: {text}");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one JSON line: {text}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).expect("JSON");
    assert!(
        v["traces_committed"].as_u64().is_some_and(|t| t > 0),
        "{v:#}"
    );
    for role in ["device", "edge", "cloud"] {
        let r = &v["roles"][role];
        for field in [
            "rss_mb_start",
            "rss_mb_end",
            "rss_mb_per_hour",
            "rss_mb_per_hour_last_third",
        ] {
            assert!(r[field].as_f64().is_some(), "{role} {field}: {v:#}");
        }
        assert!(r["rss_mb_start"].as_f64().is_some_and(|m| m > 1.0), "{v:#}");
        assert!(
            r["open_files_end"].as_f64().is_some_and(|f| f > 0.0),
            "{v:#}"
        );
    }
    let csv = std::fs::read_to_string(results.join("soak.csv")).expect("soak.csv");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    // 10 nodes, sampled every 2 s over 16 s.
    assert!(rows.len() >= 10 * 6, "{} rows:\n{csv}", rows.len());
    for node in ["cloud1", "edge1", "dev1-1", "dev2-3"] {
        assert!(
            rows.iter().any(|r| r.split(',').nth(1) == Some(node)),
            "{node}:\n{csv}"
        );
    }
    assert!(std::fs::metadata(results.join("soak.png")).is_ok_and(|m| m.len() > 1000));
}
