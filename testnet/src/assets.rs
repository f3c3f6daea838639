//! Monitoring files for a testnet: `prometheus.yml` generated from the topology, and the
//! Grafana dashboard, provisioning and compose files copied from `testnet/assets/`.
//!
//! The assets are read at run time from the source tree this binary was built from (or from
//! `LCBFT_TESTNET_ASSETS`), not embedded: the folder is maintained separately and may not
//! exist in every checkout, and a missing folder must not break the build.

use crate::topology::Topology;
use anyhow::Context;
use std::path::{Path, PathBuf};

const ASSETS_ENV: &str = "LCBFT_TESTNET_ASSETS";

fn assets_dir() -> PathBuf {
    std::env::var_os(ASSETS_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("assets"))
}

/// One scrape target per node API, labelled with node name, role and its domain. The label
/// is `node_domain`, not `domain`: the node's own metrics carry a `domain` label, which a
/// target label of the same name would rename to `exported_domain`.
pub fn prometheus_yml(topo: &Topology) -> String {
    let mut s = String::from(
        "# Prometheus scrape config for this lcbft network (written by `lcbft-testnet init` or\n\
         # `bundle`). Targets are the APIs outside --netns mode (loopback, or the hosts' LAN\n\
         # addresses); in --netns mode each API lives inside its node's network namespace and is\n\
         # not reachable from here.\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         scrape_configs:\n  - job_name: lcbft\n    metrics_path: /metrics\n    static_configs:\n",
    );
    for n in &topo.nodes {
        let domain = n
            .local
            .map(|d| format!("local/{d}"))
            .unwrap_or_else(|| "global".to_owned());
        s.push_str(&format!(
            "      - targets: [\"{}\"]\n        labels: {{ node: \"{}\", role: \"{}\", node_domain: \"{}\" }}\n",
            n.api(false),
            n.name,
            n.role.as_str(),
            domain
        ));
    }
    s
}

/// Copy every file under the assets folder into `out`, keeping relative paths. Without the
/// folder, write a note saying where the dashboards would come from.
pub fn copy_dashboards(out: &Path) -> anyhow::Result<()> {
    let src = assets_dir();
    if !src.is_dir() {
        let note = out.join("MONITORING.txt");
        let text = format!(
            "No Grafana dashboard was copied: {} does not exist (set {ASSETS_ENV} to a folder\n\
             with grafana/ and compose.yml). prometheus.yml beside this file scrapes every node.\n",
            src.display()
        );
        return std::fs::write(&note, text)
            .with_context(|| format!("cannot write {}", note.display()));
    }
    copy_tree(&src, out)
}

fn copy_tree(src: &Path, dst: &Path) -> anyhow::Result<()> {
    let entries =
        std::fs::read_dir(src).with_context(|| format!("cannot read {}", src.display()))?;
    for e in entries {
        let e = e.with_context(|| format!("cannot read {}", src.display()))?;
        let (from, to) = (e.path(), dst.join(e.file_name()));
        if from.is_dir() {
            std::fs::create_dir_all(&to)
                .with_context(|| format!("cannot create {}", to.display()))?;
            copy_tree(&from, &to)?;
        } else {
            std::fs::copy(&from, &to)
                .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        }
    }
    Ok(())
}
