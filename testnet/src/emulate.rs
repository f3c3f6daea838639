//! Nodes that run a Raspberry Pi build under qemu user emulation (`up --emulate
//! aarch64:dev1-1`): the cross-built `lcbft` for that architecture, started through
//! `qemu-<arch> -L <sysroot>` (Debian's qemu-user and cross libc), beside native nodes.

use crate::topology::Topology;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A Pi architecture this tool can emulate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Aarch64,
    Armv7,
}

impl Arch {
    pub fn parse(s: &str) -> anyhow::Result<Arch> {
        match s {
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            "armv7" | "armhf" => Ok(Arch::Armv7),
            other => bail!("unknown architecture `{other}`: expected aarch64 or armv7"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Armv7 => "armv7",
        }
    }

    pub fn target(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64-unknown-linux-gnu",
            Arch::Armv7 => "armv7-unknown-linux-gnueabihf",
        }
    }

    /// The qemu-user program and the cross libc it loads the binary's libraries from.
    pub fn qemu(self) -> (&'static str, &'static str) {
        match self {
            Arch::Aarch64 => ("qemu-aarch64", "/usr/aarch64-linux-gnu"),
            Arch::Armv7 => ("qemu-arm", "/usr/arm-linux-gnueabihf"),
        }
    }
}

/// What `--emulate` asked for: node name to architecture.
#[derive(Clone, Debug, Default)]
pub struct Plan {
    pub nodes: BTreeMap<String, Arch>,
}

impl Plan {
    /// `ARCH:NODE[,NODE..]`, possibly several such specs.
    pub fn parse(specs: &[String]) -> anyhow::Result<Plan> {
        let mut nodes = BTreeMap::new();
        for spec in specs {
            let (arch, names) = spec.split_once(':').with_context(|| {
                format!("--emulate {spec}: write ARCH:NODE[,NODE..], e.g. aarch64:dev1-1")
            })?;
            let arch = Arch::parse(arch).with_context(|| format!("--emulate {spec}"))?;
            for name in names.split(',').map(str::trim) {
                if name.is_empty() {
                    bail!("--emulate {spec}: an empty node name");
                }
                if nodes.insert(name.to_owned(), arch).is_some() {
                    bail!("--emulate names {name} twice");
                }
            }
        }
        Ok(Plan { nodes })
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Every named node exists in `topo`.
    pub fn check(&self, topo: &Topology) -> anyhow::Result<()> {
        for name in self.nodes.keys() {
            topo.node(name)
                .with_context(|| format!("--emulate {name}"))?;
        }
        Ok(())
    }

    /// Find qemu, the sysroot and one binary per architecture; `bins` are the `--emulate-bin`
    /// choices, else the cross build beside the native `lcbft` (device profile, then release).
    pub fn resolve(
        &self,
        native: &Path,
        bins: &BTreeMap<Arch, PathBuf>,
    ) -> anyhow::Result<BTreeMap<String, Emulated>> {
        let mut per_arch = BTreeMap::new();
        for &arch in self.nodes.values() {
            if per_arch.contains_key(&arch) {
                continue;
            }
            let (qemu, sysroot) = arch.qemu();
            let ok = Command::new(qemu)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
            if !ok {
                bail!(
                    "--emulate {}: `{qemu}` is not installed (apt-get install qemu-user; deploy/cross.sh {} installs it)",
                    arch.as_str(),
                    arch.as_str()
                );
            }
            if !Path::new(sysroot).is_dir() {
                bail!(
                    "--emulate {}: no {sysroot} (the cross libc): run deploy/cross.sh {}",
                    arch.as_str(),
                    arch.as_str()
                );
            }
            let bin = match bins.get(&arch) {
                Some(b) if b.is_file() => b.clone(),
                Some(b) => bail!("--emulate-bin {}: not a file", b.display()),
                None => cross_bin(native, arch)?,
            };
            same_release(
                native,
                &Emulated {
                    arch,
                    bin: bin.clone(),
                },
            )?;
            per_arch.insert(arch, bin);
        }
        Ok(self
            .nodes
            .iter()
            .map(|(name, &arch)| {
                let bin = per_arch[&arch].clone();
                (name.clone(), Emulated { arch, bin })
            })
            .collect())
    }
}

/// How one node runs under emulation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Emulated {
    pub arch: Arch,
    pub bin: PathBuf,
}

impl Emulated {
    /// The command that runs `lcbft` for this architecture (arguments follow).
    pub fn command(&self) -> Command {
        let (qemu, sysroot) = self.arch.qemu();
        let mut c = Command::new(qemu);
        c.arg("-L").arg(sysroot).arg(&self.bin);
        c
    }
}

/// A cross build left over from an older checkout speaks another wire version: it would run
/// but never take part, which reads as a slow device. Refuse it up front.
fn same_release(native: &Path, emulated: &Emulated) -> anyhow::Result<()> {
    let version = |mut c: Command| -> anyhow::Result<String> {
        let out = c.arg("--version").output()?;
        anyhow::ensure!(out.status.success(), "exit status {}", out.status);
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let ours =
        version(Command::new(native)).with_context(|| format!("{} --version", native.display()))?;
    let theirs = version(emulated.command())
        .with_context(|| format!("{} --version under emulation", emulated.bin.display()))?;
    if ours != theirs {
        bail!(
            "--emulate {}: {} is `{theirs}` but the native nodes are `{ours}`: rebuild it (`deploy/cross.sh {}`) or pass --emulate-bin {}=PATH",
            emulated.arch.as_str(),
            emulated.bin.display(),
            emulated.arch.as_str(),
            emulated.arch.as_str()
        );
    }
    Ok(())
}

/// `<target>/<triple>/{device,release}/lcbft`, where `<target>` holds the native binary's
/// profile directory.
fn cross_bin(native: &Path, arch: Arch) -> anyhow::Result<PathBuf> {
    let target = native
        .parent()
        .and_then(Path::parent)
        .context("cannot tell the target directory of the lcbft binary")?;
    let candidates: Vec<PathBuf> = ["device", "release"]
        .iter()
        .map(|p| target.join(arch.target()).join(p).join("lcbft"))
        .collect();
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "--emulate {}: no cross-built lcbft (looked for {}): build it with `deploy/cross.sh {}` or pass --emulate-bin {}=PATH",
            arch.as_str(),
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" and "),
            arch.as_str(),
            arch.as_str()
        )
    })
}

/// `ARCH=PATH` of `--emulate-bin`.
pub fn parse_bins(specs: &[String]) -> anyhow::Result<BTreeMap<Arch, PathBuf>> {
    let mut out = BTreeMap::new();
    for spec in specs {
        let (arch, path) = spec
            .split_once('=')
            .with_context(|| format!("--emulate-bin {spec}: write ARCH=PATH"))?;
        out.insert(
            Arch::parse(arch).with_context(|| format!("--emulate-bin {spec}"))?,
            PathBuf::from(path),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_name_an_architecture_and_nodes() {
        let p =
            Plan::parse(&["aarch64:dev1-1,dev1-2".into(), "armv7:dev2-1".into()]).expect("parses");
        assert_eq!(p.nodes["dev1-2"], Arch::Aarch64);
        assert_eq!(p.nodes["dev2-1"], Arch::Armv7);
        let e = |s: &str| format!("{:#}", Plan::parse(&[s.into()]).unwrap_err());
        assert!(e("dev1-1").contains("ARCH:NODE"));
        assert!(e("riscv:dev1-1").contains("unknown architecture `riscv`"));
        assert!(e("aarch64:dev1-1,,x").contains("empty node name"));
        let twice = Plan::parse(&["aarch64:dev1-1".into(), "armv7:dev1-1".into()]);
        assert!(format!("{:#}", twice.unwrap_err()).contains("twice"));
        let topo = Topology::new(vec![1], crate::topology::layout(Default::default()));
        let bad = Plan::parse(&["aarch64:dev9-9".into()]).expect("parses");
        assert!(format!("{:#}", bad.check(&topo).unwrap_err()).contains("no node `dev9-9`"));
    }
}
