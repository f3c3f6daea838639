//! `crypto`, `cost-model` and `scale` in their CI sizes: each must end with one JSON line whose
//! figures say what the cost model says (three phases to commit a global block, two a local one
//! when no leader fails, more when one does; normal-case messages linear in n).

use serde_json::Value;
use std::process::{Command, Stdio};

const BENCH: &str = env!("CARGO_BIN_EXE_lcbft-bench");

/// Run `lcbft-bench args` and parse the last line of its output as JSON.
fn last_json(args: &[&str]) -> Value {
    let started = std::time::Instant::now();
    let o = Command::new(BENCH)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run lcbft-bench");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "lcbft-bench {args:?} failed: {text}");
    let last = text
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .expect("a line");
    eprintln!(
        "lcbft-bench {args:?}: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    serde_json::from_str(last).expect("the last line is JSON")
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn row<'a>(rows: &'a [Value], want: &[(&str, Value)]) -> &'a Value {
    rows.iter()
        .find(|r| want.iter().all(|(k, v)| r[*k] == *v))
        .unwrap_or_else(|| panic!("no row {want:?}"))
}

#[test]
fn crypto_prices_both_backends() {
    let v = last_json(&["crypto", "--n", "4", "--budget-ms", "30"]);
    assert_eq!(v["command"], "crypto");
    for scheme in ["tc", "blsttc"] {
        let c = &v["schemes"][scheme][0];
        assert_eq!(c["n"], 4);
        for key in [
            "hash_to_curve_us",
            "sign_share_us",
            "verify_share_us",
            "combine_us",
            "verify_us",
        ] {
            assert!(f(c, key) > 0.0, "{scheme} {key}: {c}");
        }
        assert!(f(c, "phase_collector_us") > f(c, "phase_replica_us"), "{c}");
    }
}

#[test]
fn cost_model_reproduces_the_phase_counts() {
    let v = last_json(&["cost-model", "--p", "0,0.25", "--quick"]);
    assert_eq!(v["command"], "cost-model");
    assert!(f(&v, "cm_s_ms") > 0.0);
    let rows = v["rows"].as_array().expect("rows");
    let sparse = |layer: &str, p: f64| {
        row(
            rows,
            &[
                ("regime", "sparse".into()),
                ("layer", layer.into()),
                ("p", p.into()),
            ],
        )
    };
    let global = sparse("global", 0.0);
    assert!(f(global, "blocks") >= 4.0, "{global}");
    // The paper's count is the phases from a block's proposal to its commit; an isolated block
    // also certifies the empty block that carried its last certificate: one phase more.
    let near = |x: f64, want: f64| (x - want).abs() <= 0.05 * want;
    let (g, g_commit) = (f(global, "phases_per_block"), f(global, "phases_to_commit"));
    assert!(near(g_commit, 3.0), "global phases to commit {g_commit}");
    assert!(near(g, 4.0), "global sparse phases per block {g}");
    let local = sparse("local", 0.0);
    let (l, l_commit) = (f(local, "phases_per_block"), f(local, "phases_to_commit"));
    assert!(near(l_commit, 2.0), "local phases to commit {l_commit}");
    assert!(near(l, 3.0), "local sparse phases per block {l}");
    // Leader failures cost the local layer view changes: more phases than without.
    let failing = sparse("local", 0.25);
    assert!(f(failing, "phases_per_block") >= l, "{failing}");
    // Crypto follows the phases (counts, not times: no timed assertions in tests): one share
    // per replica per phase, one combination per phase.
    for r in [global, local] {
        let phases = f(r, "phases_per_block");
        assert!(near(f(r, "sign_shares_per_block"), 4.0 * phases), "{r}");
        assert!(near(f(r, "combines_per_block"), phases), "{r}");
        assert_eq!(f(r, "share_verifications_per_block"), 0.0, "{r}");
        assert!(f(r, "cpu_ms_per_replica_per_block") > 0.0, "{r}");
    }
    // Pipelining: saturated blocks share certificates.
    let saturated = row(
        rows,
        &[
            ("regime", "saturated".into()),
            ("layer", "global".into()),
            ("p", 0.0.into()),
        ],
    );
    assert!(f(saturated, "phases_per_block") < 2.0, "{saturated}");
}

#[test]
fn scale_shows_linear_normal_case_messages() {
    let v = last_json(&["scale", "--n", "4,16", "--quick"]);
    assert_eq!(v["command"], "scale");
    let rows = v["rows"].as_array().expect("rows");
    for layer in ["global", "local"] {
        let at = |n: u64, vc: bool| {
            row(
                rows,
                &[
                    ("n", n.into()),
                    ("layer", layer.into()),
                    ("view_change", vc.into()),
                ],
            )
        };
        let (small, large) = (at(4, false), at(16, false));
        let per_n = |r: &Value| f(r, "messages_per_block_per_n");
        assert!(
            per_n(large) < 2.0 * per_n(small),
            "{layer}: messages per block per replica should not grow with n: {small} {large}"
        );
        assert!(
            f(at(16, true), "messages_per_block") > f(large, "messages_per_block"),
            "{layer}: a view change costs messages"
        );
    }
}
