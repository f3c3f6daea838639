//! Per-host bundles (issue 12): a hosts file of eight "machines" on 127.0.0.2-9, one bundle
//! each, the network started from the bundles' own files, committing and passing the check.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TESTNET, assert_healthy_run, json, serial, testnet};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// (name, role, domain) of the hosts; host i gets address 127.0.0.(i + 2).
const HOSTS: [(&str, &str, Option<u32>); 8] = [
    ("cloud1", "cloud", None),
    ("cloud2", "cloud", None),
    ("edge1", "edge", Some(1)),
    ("edge2", "edge", Some(2)),
    ("pi1-1", "device", Some(1)),
    ("pi1-2", "device", Some(1)),
    ("pi2-1", "device", Some(2)),
    ("pi2-2", "device", Some(2)),
];

fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, i as u8 + 2)
}

/// One port pair free on every host address, like the fixed ports of a real LAN.
fn free_port_pair() -> u16 {
    for _ in 0..200 {
        let p = rand::random::<u16>() % 10_000 + 20_000;
        let free = (0..HOSTS.len()).all(|i| {
            [p, p + 1]
                .iter()
                .all(|&q| TcpListener::bind((address(i), q)).is_ok())
        });
        if free {
            return p;
        }
    }
    panic!("no port pair free on 127.0.0.2-9");
}

fn hosts_file(port: u16) -> String {
    let mut s = format!("p2p_port = {port}\napi_port = {}\n", port + 1);
    for (i, (name, role, domain)) in HOSTS.iter().enumerate() {
        s.push_str(&format!(
            "\n[[host]]\nname = \"{name}\"\nrole = \"{role}\"\naddress = \"{}\"\n",
            address(i)
        ));
        if let Some(d) = domain {
            s.push_str(&format!("domain = {d}\n"));
        }
    }
    s
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn bundles_from_a_hosts_file_start_a_network_that_commits_and_checks() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.toml");
    let out = dir.path().join("lan");
    let port = free_port_pair();
    std::fs::write(&hosts, hosts_file(port)).unwrap();
    let o = testnet(
        &[
            "bundle",
            "--hosts",
            hosts.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        Duration::from_secs(60),
    );
    assert!(o.status.success());

    // Each host's directory is self-contained: config, identity, shares, genesis, unit.
    for (i, (name, role, domain)) in HOSTS.iter().enumerate() {
        let b = out.join("nodes").join(name);
        let cfg = std::fs::read_to_string(b.join("node.toml")).unwrap();
        let me = format!("/ip4/{}/tcp/{port}", address(i));
        // The first `listen` is [network]'s (then [api]'s): only the host's own address.
        let listen = cfg
            .split("listen = ")
            .nth(1)
            .unwrap()
            .split(']')
            .next()
            .unwrap();
        assert!(listen.contains(&format!("\"{me}\"")), "{name}: {cfg}");
        assert_eq!(listen.matches("/ip4/").count(), 1, "{name}: {cfg}");
        assert!(cfg.contains("genesis = \"genesis.toml\""), "{name}: {cfg}");
        assert!(
            !cfg.contains(".."),
            "{name} reaches outside its bundle: {cfg}"
        );
        assert_eq!(
            cfg.contains("mdns = true"),
            domain.is_some(),
            "{name}: {cfg}"
        );
        assert_eq!(mode(&b.join("node.key")), 0o600, "{name}");
        let mut shares = Vec::new();
        if *role != "device" {
            shares.push("global.share".to_owned());
        }
        if let Some(d) = domain {
            shares.push(format!("local-{d}.share"));
        }
        for s in &shares {
            assert_eq!(mode(&b.join("keys").join(s)), 0o600, "{name}/{s}");
        }
        let held = std::fs::read_dir(b.join("keys")).unwrap().count();
        assert_eq!(held, shares.len(), "{name} holds shares of other domains");
        assert!(b.join("genesis.toml").is_file());
        let unit = std::fs::read_to_string(b.join("lcbft.service")).unwrap();
        assert!(unit.contains("ProtectSystem=strict"), "{unit}");
    }
    // Devices know their domain's members only; clouds know no device.
    let pi = std::fs::read_to_string(out.join("nodes/pi1-1/node.toml")).unwrap();
    assert!(pi.contains(&address(2).to_string()) && !pi.contains(&address(3).to_string()));
    let cloud = std::fs::read_to_string(out.join("nodes/cloud1/node.toml")).unwrap();
    assert!(!cloud.contains(&address(4).to_string()), "{cloud}");

    // Start the nodes from the bundles (`up` runs `lcbft run --config nodes/<host>/node.toml`
    // for each), load them, stop and check.
    let o = testnet(
        &[
            "up",
            out.to_str().unwrap(),
            "--duration",
            "30",
            "--load",
            "50",
            "--json",
        ],
        Duration::from_secs(150),
    );
    let v = json(&o);
    eprintln!("{v:#}");
    assert!(o.status.success(), "{v:#}");
    assert_healthy_run(&v);
    assert_eq!(v["nodes"]["up"], 8, "{v:#}");
}

#[test]
fn a_bad_hosts_file_is_refused_with_the_host_named() {
    let _g = serial();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.toml");
    let out = dir.path().join("lan");
    let run = |text: &str| {
        std::fs::write(&hosts, text).unwrap();
        let o = Command::new(TESTNET)
            .args(["bundle", "--hosts", hosts.to_str().unwrap()])
            .args(["--out", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = run("[[host]]\nname = \"pi1\"\nrole = \"device\"\naddress = \"10.0.0.9\"\n");
    assert!(e.contains("host 1 (`pi1`): a device needs `domain"), "{e}");
    let e =
        run("[[host]]\nname = \"pi1\"\nrole = \"device\"\ndomain = 1\naddress = \"10.0.0.9\"\n");
    assert!(e.contains("local domain 1 has devices but no edge"), "{e}");
    let e = run("[[hosts]]\nname = \"pi1\"\n");
    assert!(e.contains("unknown field `hosts`"), "{e}");
    let missing = dir.path().join("nope.toml");
    let o = Command::new(TESTNET)
        .args(["bundle", "--hosts", missing.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap()])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("cannot read hosts file"), "{e}");
    // Nothing was written for a refused file.
    assert!(!out.exists());
}
