//! The CLI as an operator meets it: keygen, genesis, config, and one-line errors.

mod common;

use common::{lcbft, path_str};

#[test]
fn keygen_genesis_and_config_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut peers = Vec::new();
    for i in 0..4 {
        let key = dir.path().join(format!("n{i}.key"));
        let (ok, peer, err) = lcbft(&["keygen", "--out", path_str(&key)]);
        assert!(ok, "{err}");
        assert!(peer.starts_with("12D3KooW"), "{peer}");
        peers.push(peer);
    }
    // keygen never overwrites.
    let (ok, _, err) = lcbft(&["keygen", "--out", path_str(&dir.path().join("n0.key"))]);
    assert!(!ok);
    assert!(
        err.contains("already exists") && err.lines().count() == 1,
        "{err}"
    );

    let out = dir.path().join("net");
    let domain = format!("1={},{},{},{}", peers[0], peers[1], peers[2], peers[3]);
    let (ok, _, err) = lcbft(&[
        "genesis",
        "--global",
        &peers[0],
        &peers[1],
        &peers[2],
        &peers[3],
        "--domain",
        &domain,
        "--out",
        path_str(&out),
    ]);
    assert!(ok, "{err}");
    let genesis = std::fs::read_to_string(out.join("genesis.toml")).expect("genesis");
    assert!(genesis.contains("id = \"global\"") && genesis.contains("id = \"local/1\""));
    assert!(genesis.contains("role = \"edge\"") && genesis.contains("role = \"device\""));
    assert!(
        out.join("keys")
            .join(&peers[2])
            .join("local-1.share")
            .exists()
    );

    // A config pointing at them passes `config check`.
    let cfg = dir.path().join("n0.toml");
    std::fs::write(
        &cfg,
        "identity = \"n0.key\"\ngenesis = \"net/genesis.toml\"\n[network]\nmdns = false\n",
    )
    .expect("write");
    let (ok, printed, err) = lcbft(&["config", "check", "--config", path_str(&cfg)]);
    assert!(ok, "{err}");
    assert!(printed.contains("liveness_timeout = \"6s\""), "{printed}");
    let (ok, example, _) = lcbft(&["config", "example"]);
    assert!(ok && example.contains("[consensus]"));
}

#[test]
fn bad_inputs_fail_with_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "genesis".into(),
                "--global".into(),
                "not-a-peer".into(),
                "--out".into(),
                path_str(dir.path()).into(),
            ],
            "not-a-peer",
        ),
        (
            vec![
                "run".into(),
                "--config".into(),
                path_str(&dir.path().join("missing.toml")).into(),
            ],
            "missing.toml",
        ),
        (
            vec![
                "trace".into(),
                "submit".into(),
                "--key".into(),
                path_str(&dir.path().join("nokey")).into(),
                "--data".into(),
                "x".into(),
            ],
            "nokey",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (ok, _, err) = lcbft(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    }
    // A run whose identity is not in the genesis.
    let key = dir.path().join("a.key");
    let other = dir.path().join("b.key");
    lcbft(&["keygen", "--out", path_str(&key)]);
    let (_, peer_b, _) = lcbft(&["keygen", "--out", path_str(&other)]);
    let (_, peer_c, _) = lcbft(&["keygen", "--out", path_str(&dir.path().join("c.key"))]);
    let (_, peer_d, _) = lcbft(&["keygen", "--out", path_str(&dir.path().join("d.key"))]);
    let (_, peer_e, _) = lcbft(&["keygen", "--out", path_str(&dir.path().join("e.key"))]);
    let net = dir.path().join("net");
    let (ok, _, err) = lcbft(&[
        "genesis",
        "--global",
        &peer_b,
        &peer_c,
        &peer_d,
        &peer_e,
        "--out",
        path_str(&net),
    ]);
    assert!(ok, "{err}");
    let cfg = dir.path().join("a.toml");
    std::fs::write(
        &cfg,
        "identity = \"a.key\"\ngenesis = \"net/genesis.toml\"\n[network]\nmdns = false\nlisten = [\"/ip4/127.0.0.1/tcp/0\"]\n[api]\nenabled = false\n",
    )
    .expect("write");
    let (ok, _, err) = lcbft(&["run", "--config", path_str(&cfg)]);
    assert!(!ok);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.contains("is in no domain") && last.contains("genesis.toml"),
        "{err}"
    );
}
