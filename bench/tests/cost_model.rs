//! `crypto`, `cost-model` and `scale` in their CI sizes: each must end with one JSON line whose
//! figures say what the cost model says (three phases per global block, two per local one when
//! no leader fails, more when one does; normal-case messages linear in n).

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
    let g = f(global, "phases_per_block");
    assert!(
        (2.7..=3.3).contains(&g),
        "global sparse phases per block {g}"
    );
    let local = sparse("local", 0.0);
    let l = f(local, "phases_per_block");
    assert!(
        (1.8..=2.2).contains(&l),
        "local sparse phases per block {l}"
    );
    // Leader failures cost the local layer view changes: more phases than without.
    let failing = sparse("local", 0.25);
    assert!(f(failing, "phases_per_block") >= l, "{failing}");
    // CPU follows the phases: a local block costs its replicas less than a global one.
    assert!(f(local, "cpu_ms_per_replica_per_block") < f(global, "cpu_ms_per_replica_per_block"));
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
