//! Raspberry Pi builds. They take many minutes on a small machine, so they run only with
//! `REQUIRE_CROSS=1` (CI sets it) and otherwise say loudly that they skip. `deploy/cross.sh`
//! installs the Debian cross toolchains and qemu-user when missing (apt-get, so as root), then
//! builds with the `device` profile.
//!
//! - the aarch64 binary runs as device dev1-1 under qemu-aarch64 in a default loopback
//!   testnet: the network commits and passes the check, and at the end dev1-1's committed
//!   height is within 5 blocks of its domain's;
//! - the armv7 binary links.

#![allow(clippy::unwrap_used)]

mod common;

use common::{TESTNET, assert_healthy_run, json, serial, skip, testnet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The target directory the tests' binaries are in (`target/`), where `up --emulate` looks
/// for the cross build.
fn target_dir() -> PathBuf {
    Path::new(TESTNET)
        .parent()
        .and_then(Path::parent)
        .unwrap()
        .to_owned()
}

/// `deploy/cross.sh ARCH` into the tests' target directory; returns the binary.
fn cross_build(arch: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let start = Instant::now();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let cargo_dir = Path::new(&cargo).parent().map(Path::to_owned);
    let mut path = std::env::var_os("PATH").unwrap_or_default();
    if let Some(d) = cargo_dir {
        let mut p = std::ffi::OsString::from(d);
        p.push(":");
        p.push(&path);
        path = p;
    }
    let ok = Command::new(root.join("deploy/cross.sh"))
        .arg(arch)
        .env("CARGO_TARGET_DIR", target_dir())
        .env("PATH", path)
        .status()
        .unwrap()
        .success();
    assert!(ok, "deploy/cross.sh {arch} failed");
    let triple = match arch {
        "aarch64" => "aarch64-unknown-linux-gnu",
        _ => "armv7-unknown-linux-gnueabihf",
    };
    let bin = target_dir().join(triple).join("device").join("lcbft");
    eprintln!(
        "cross build {arch}: {:.0}s, {} bytes",
        start.elapsed().as_secs_f64(),
        std::fs::metadata(&bin).unwrap().len()
    );
    bin
}

/// Whether the cross tests run here: `REQUIRE_CROSS=1`, or a loud skip.
fn wanted(test: &str) -> bool {
    if std::env::var_os("REQUIRE_CROSS").is_some() {
        return true;
    }
    skip(
        test,
        "cross builds take many minutes on 2 cores: set REQUIRE_CROSS=1 to run them \
         (deploy/cross.sh installs the toolchains; CI does both)",
    );
    false
}

#[test]
fn an_emulated_aarch64_device_keeps_up_with_its_domain() {
    if !wanted("an_emulated_aarch64_device_keeps_up_with_its_domain") {
        return;
    }
    // One at a time: a cross build beside the run would slow the emulated device.
    let _g = serial();
    let bin = cross_build("aarch64");
    let dir = tempfile::tempdir().unwrap();
    let net = dir.path().join("net");
    let emulate_bin = format!("aarch64={}", bin.display());
    let o = testnet(
        &[
            "up",
            net.to_str().unwrap(),
            "--emulate",
            "aarch64:dev1-1",
            "--emulate-bin",
            &emulate_bin,
            "--duration",
            "60",
            "--load",
            "20",
            "--json",
        ],
        Duration::from_secs(240),
    );
    let v = json(&o);
    eprintln!("{v:#}");
    assert!(o.status.success(), "{v:#}");
    assert_healthy_run(&v);
    let e = &v["emulated"][0];
    assert_eq!(e["node"], "dev1-1", "{v:#}");
    assert_eq!(e["arch"], "aarch64", "{v:#}");
    let local = &e["domains"]["local/1"];
    let behind = local["behind"].as_u64().unwrap();
    assert!(local["height"].as_u64().unwrap() > 0, "{v:#}");
    assert!(
        behind <= 5,
        "dev1-1 under qemu is {behind} blocks behind local/1: {v:#}"
    );
}

#[test]
fn the_armv7_build_links() {
    if !wanted("the_armv7_build_links") {
        return;
    }
    let _g = serial();
    let bin = cross_build("armv7");
    // An ELF header of a 32-bit (EI_CLASS 1) ARM (e_machine 40) executable.
    let head = std::fs::read(&bin).unwrap();
    assert_eq!(
        &head[..4],
        b"\x7fELF",
        "{} is not an ELF file",
        bin.display()
    );
    assert_eq!(head[4], 1, "not a 32-bit ELF");
    assert_eq!(
        u16::from_le_bytes([head[18], head[19]]),
        40,
        "not an ARM ELF"
    );
}
