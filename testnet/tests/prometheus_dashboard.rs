//! The Grafana dashboard's queries, proven against a real Prometheus: `lcbft-testnet init`
//! writes a testnet with its scrape config and copies the dashboard, `up` runs it under a
//! light load, Prometheus scrapes it with that config (at 1 s instead of 5 s), and every query
//! of every panel of the copied dashboard, and every template variable, must return at least
//! one series and no error. `promtool check metrics` must accept every node's `/metrics`.
//!
//! Needs Debian's `prometheus` package (`prometheus` and `promtool` on PATH). Without it the
//! test says loudly that it skips; with `REQUIRE_PROMETHEUS=1` (CI) it fails instead.

#![allow(clippy::unwrap_used)]

mod common;

use common::{serial, skip, testnet};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TEST: &str = "prometheus_dashboard";

/// Grafana's variables as the test substitutes them: every domain and role, 10 s rate
/// windows (ten scrapes at the test's 1 s interval).
const VARIABLES: [(&str, &str); 8] = [
    ("${DS_PROMETHEUS}", "prometheus"),
    ("${__rate_interval}", "10s"),
    ("$__rate_interval", "10s"),
    ("$__interval", "2s"),
    ("$__range", "60s"),
    ("${domain}", ".*"),
    ("$domain", ".*"),
    ("$role", ".*"),
];

fn which(bin: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(bin))
        .find(|p| p.is_file())
}

/// Both binaries, or `None` after saying loudly why the test does not run.
fn prometheus_binaries() -> Option<(PathBuf, PathBuf)> {
    match (which("prometheus"), which("promtool")) {
        (Some(p), Some(t)) => Some((p, t)),
        _ => {
            let why = "prometheus and promtool are not on PATH: install Debian's `prometheus` \
                       package (apt-get install --no-install-recommends prometheus)";
            assert!(
                std::env::var_os("REQUIRE_PROMETHEUS").is_none(),
                "REQUIRE_PROMETHEUS is set but {why}"
            );
            skip(TEST, why);
            None
        }
    }
}

/// One blocking HTTP/1.0 GET: (status, body).
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, body.to_owned()))
}

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Prometheus {
    fn start(bin: &Path, dir: &Path, config: &Path) -> Prometheus {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.join("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Prometheus { child, addr, log }
    }

    fn get(&self, path: &str) -> Option<Value> {
        serde_json::from_str(&http_get(self.addr, path)?.1).ok()
    }

    /// An instant query: its result series, or the error Prometheus gave.
    fn query(&self, q: &str) -> Result<Vec<Value>, String> {
        let v = self
            .get(&format!("/api/v1/query?query={}", urlencode(q)))
            .ok_or("no answer from Prometheus")?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    }

    /// The scrape targets: (scrape URL, labels, last scrape error).
    fn targets(&self) -> Vec<(String, Value, String)> {
        let v = self.get("/api/v1/targets").unwrap_or_default();
        v["data"]["activeTargets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                (
                    t["scrapeUrl"].as_str().unwrap_or_default().to_owned(),
                    t["labels"].clone(),
                    t["lastError"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `lcbft-testnet up` in the background, stopped with `down` when dropped.
struct Up {
    child: Child,
    dir: PathBuf,
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = testnet(
            &["down", self.dir.to_str().unwrap()],
            Duration::from_secs(60),
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every target query of every panel (rows' nested panels too): (panel title, expr).
fn dashboard_queries(dash: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or_default();
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(expr) = t["expr"].as_str() {
                    out.push((title.to_owned(), expr.to_owned()));
                }
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dash["panels"], &mut out);
    out
}

fn substitute(expr: &str) -> String {
    let mut q = expr.to_owned();
    for (var, value) in VARIABLES {
        q = q.replace(var, value);
    }
    q
}

/// `label_values(metric, label)` of the dashboard's query variables: (name, metric, label).
fn variable_queries(dash: &Value) -> Vec<(String, String, String)> {
    dash["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .filter_map(|v| {
            let def = v["definition"].as_str()?;
            let inner = def.strip_prefix("label_values(")?.strip_suffix(')')?;
            let (metric, label) = inner.split_once(',')?;
            Some((
                v["name"].as_str()?.to_owned(),
                metric.trim().to_owned(),
                label.trim().to_owned(),
            ))
        })
        .collect()
}

/// `promtool check metrics` on `text`: (success, what it printed).
fn promtool_check(promtool: &Path, text: &str) -> (bool, String) {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said.trim().to_owned())
}

fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    false
}

fn node_logs(dir: &Path) -> String {
    let mut out = String::new();
    for e in std::fs::read_dir(dir.join("nodes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let log = std::fs::read_to_string(e.path().join("node.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        out.push_str(&format!("--- {} ---\n", e.file_name().to_string_lossy()));
        for l in tail.into_iter().rev() {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[test]
fn every_dashboard_query_returns_series_from_a_real_prometheus() {
    let Some((prometheus, promtool)) = prometheus_binaries() else {
        return;
    };
    let _g = serial();
    let started = Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("net");
    // 4 global validators (one of them the edge), one local domain of the edge and 3 devices.
    let o = testnet(
        &[
            "init",
            "--global",
            "4",
            "--domains",
            "1",
            "--devices",
            "3",
            "--out",
            dir.to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert!(o.status.success(), "init failed");
    // What init copied: the dashboard, its provisioning and the compose file.
    for f in [
        "grafana/lcbft-dashboard.json",
        "grafana/provisioning/datasources/prometheus.yml",
        "grafana/provisioning/dashboards/lcbft.yml",
        "compose.yml",
        "prometheus.yml",
    ] {
        assert!(dir.join(f).is_file(), "init did not write {f}");
    }
    let dash: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("grafana/lcbft-dashboard.json")).unwrap(),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dash);
    assert!(queries.len() >= 30, "only {} queries found", queries.len());
    // The generated scrape config, scraping every second so rate windows fill quickly.
    let generated = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    assert!(generated.contains("job_name: lcbft"), "{generated}");
    let fast = generated.replace("interval: 5s", "interval: 1s");
    let prom_dir = tmp.path().join("prometheus");
    std::fs::create_dir_all(&prom_dir).unwrap();
    let config = prom_dir.join("prometheus.yml");
    std::fs::write(&config, fast).unwrap();

    let child = Command::new(common::TESTNET)
        .args([
            "up",
            dir.to_str().unwrap(),
            "--duration",
            "150",
            "--load",
            "20",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn lcbft-testnet up");
    let up = Up {
        child,
        dir: dir.clone(),
    };
    let prom = Prometheus::start(&prometheus, &prom_dir, &config);
    let nodes = generated.matches("targets:").count();
    let scraping = wait_until(Duration::from_secs(60), || {
        prom.query("up{job=\"lcbft\"} == 1")
            .is_ok_and(|r| r.len() == nodes)
    });
    assert!(
        scraping,
        "Prometheus does not scrape all {nodes} nodes:\n{}\n{}",
        prom.log(),
        node_logs(&dir)
    );
    // Both layers commit (the launcher loads them once the mesh is up), then ten more scrapes
    // fill the rate windows.
    let committing = wait_until(Duration::from_secs(60), || {
        ["global", "local"].iter().all(|layer| {
            prom.query(&format!(
                "min(lcbft_consensus_committed_height{{layer=\"{layer}\"}}) > 1"
            ))
            .is_ok_and(|r| !r.is_empty())
        })
    });
    assert!(
        committing,
        "no commits in both layers:\n{}",
        node_logs(&dir)
    );
    std::thread::sleep(Duration::from_secs(11));

    let mut failures = Vec::new();
    for (title, expr) in &queries {
        let q = substitute(expr);
        match prom.query(&q) {
            Ok(series) if series.is_empty() => failures.push(format!("[{title}] no series: {q}")),
            Ok(series) => {
                let values: Vec<&str> = series
                    .iter()
                    .filter_map(|s| s["value"][1].as_str())
                    .collect();
                println!("[{title}] {} series {values:?}: {q}", series.len());
            }
            Err(e) => failures.push(format!("[{title}] error {e}: {q}")),
        }
    }
    let variables = variable_queries(&dash);
    for (name, metric, label) in &variables {
        let path = format!("/api/v1/label/{label}/values?match[]={}", urlencode(metric));
        let values = prom
            .get(&path)
            .map(|v| v["data"].clone())
            .unwrap_or_default();
        println!("${name}: {values}");
        if values.as_array().is_none_or(|a| a.is_empty()) {
            failures.push(format!(
                "variable ${name}: no values of {label} in {metric}"
            ));
        }
    }
    // Prometheus parsed every scrape (OpenMetrics) without error; promtool accepts each node's
    // /metrics as curl gets it (the classic text format).
    let targets = prom.targets();
    assert_eq!(targets.len(), nodes);
    for (url, labels, err) in &targets {
        if !err.is_empty() {
            failures.push(format!("scrape of {url}: {err}"));
        }
        let addr: SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches("/metrics")
            .parse()
            .unwrap();
        let text = http_get(addr, "/metrics").map(|r| r.1).unwrap_or_default();
        if !text.contains("lcbft_consensus_commits_total") {
            failures.push(format!("{url} serves no lcbft metrics"));
        }
        let (ok, said) = promtool_check(&promtool, &text);
        println!(
            "promtool check metrics {} ({}): {}",
            labels["node"],
            labels["role"],
            if ok && said.is_empty() {
                "clean"
            } else {
                &said
            }
        );
        if !ok || !said.is_empty() {
            failures.push(format!("promtool check metrics {url}: {said}"));
        }
    }
    drop(up);
    println!(
        "{} panel queries, {} variables and {} targets checked in {:.1} s",
        queries.len(),
        variables.len(),
        targets.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} dashboard checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
