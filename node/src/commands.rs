//! What each subcommand does.

use anyhow::{Context, bail};
use lcbft_node::cli::{Cli, Command, ConfigCommand, Scheme, TraceCommand};
use lcbft_node::config::{self, Config};
use lcbft_node::http_client;
use lcbft_node::proofs::{ProvenItem, verify_trace_proof};
use lcbft_node::trace::{Action, Trace, TraceJson};
use lcbft_node::{genesis, identity};
use lcbft_protocol::crypto::SchemeId;
use lcbft_protocol::proof::TraceProof;
use libp2p::PeerId;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Keygen { out } => keygen(&out),
        Command::Genesis {
            global,
            domain,
            out,
            scheme,
            payload,
        } => genesis_cmd(&global, &domain, &out, scheme, payload.into()),
        Command::Config { command } => match command {
            ConfigCommand::Example => {
                print!("{}", config::EXAMPLE);
                Ok(())
            }
            ConfigCommand::Check { config } => {
                let cfg = Config::load(&config, config::env_overrides())?;
                print!("{}", cfg.to_toml());
                Ok(())
            }
        },
        Command::Run { config, rejoin } => run_node(&config, rejoin),
        Command::Status { api } => runtime()?.block_on(status(api)),
        Command::Trace { command } => match command {
            TraceCommand::Submit {
                api,
                key,
                domain,
                action,
                application,
                data,
                parent,
            } => {
                let t = TraceArgs {
                    domain,
                    action,
                    application,
                    data,
                    parents: parent,
                };
                runtime()?.block_on(trace_submit(api, &key, t))
            }
            TraceCommand::Get { api, id } => {
                runtime()?.block_on(get_print(api, &format!("/v1/traces/{id}")))
            }
        },
        Command::Proof { api, id, out } => runtime()?.block_on(fetch_proof(api, &id, &out)),
        Command::VerifyProof { file, genesis } => verify_proof(&file, &genesis),
    }
}

async fn fetch_proof(api: SocketAddr, id: &str, out: &Path) -> anyhow::Result<()> {
    let r = http_client::request(api, "GET", &format!("/v1/traces/{id}/proof"), None).await?;
    if r.status != 200 {
        bail!("the node answered {}: {}", r.status, r.body.trim());
    }
    std::fs::write(out, &r.bytes)
        .with_context(|| format!("cannot write the proof to {}", out.display()))?;
    println!("{} ({} bytes)", out.display(), r.bytes.len());
    Ok(())
}

fn verify_proof(file: &Path, genesis_path: &Path) -> anyhow::Result<()> {
    let genesis = genesis::load(genesis_path)?;
    let keys = genesis
        .key_ring()
        .with_context(|| format!("{}: a public key set does not load", genesis_path.display()))?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let proof = TraceProof::decode(&bytes)
        .with_context(|| format!("{} is not a readable trace proof", file.display()))?;
    // The block's commit, its anchor, and the trace's own producer signature and domain.
    let (proven, item) = verify_trace_proof(&proof, &keys)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    match item {
        ProvenItem::Trace(trace) => println!(
            "valid: trace {} is committed in {} at height {} (global height {}), signed by producer {}",
            proven.trace.to_hex(),
            proven.domain,
            proven.height,
            proven.global_height,
            hex::encode(trace.trace.producer)
        ),
        ProvenItem::Anchor(anchor) => println!(
            "valid: item {} is the anchor of {} height {}, committed in {} at height {}",
            proven.trace.to_hex(),
            anchor.block.domain,
            anchor.block.height,
            proven.domain,
            proven.height
        ),
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

fn run_node(config: &Path, rejoin: bool) -> anyhow::Result<()> {
    init_logging();
    let mut cfg = Config::load(config, config::env_overrides())?;
    cfg.rejoin = rejoin;
    runtime()?.block_on(async move {
        lcbft_node::node::run(cfg, shutdown_signal()).await?;
        Ok(())
    })
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

async fn get_print(api: SocketAddr, path: &str) -> anyhow::Result<()> {
    let r = http_client::request(api, "GET", path, None).await?;
    println!("{}", pretty(&r.body));
    if r.status >= 400 {
        bail!("the node answered {}", r.status);
    }
    Ok(())
}

async fn status(api: SocketAddr) -> anyhow::Result<()> {
    get_print(api, "/v1/status").await
}

fn pretty(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned())
}

struct TraceArgs {
    domain: String,
    action: String,
    application: String,
    data: String,
    parents: Vec<String>,
}

async fn trace_submit(api: SocketAddr, key: &Path, t: TraceArgs) -> anyhow::Result<()> {
    let keypair = identity::load(key)?;
    let producer = keypair
        .clone()
        .try_into_ed25519()
        .context("the producer key must be ed25519")?
        .public()
        .to_bytes();
    let action: Action = serde_json::from_value(serde_json::Value::String(t.action.clone()))
        .with_context(|| {
            format!(
                "--action `{}`: use generated, processed, derived or consumed",
                t.action
            )
        })?;
    let json = TraceJson {
        producer: hex::encode(producer),
        timestamp_ms: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0),
        domain: t.domain,
        action,
        application: t.application,
        digest: hex::encode(blake3::hash(t.data.as_bytes()).as_bytes()),
        body: Some(hex::encode(t.data.as_bytes())),
        parents: t.parents,
    };
    let trace = Trace::from_json(&json, usize::MAX).context("invalid trace")?;
    let signed = trace.sign(&keypair).context("cannot sign the trace")?;
    let body = serde_json::to_string(&signed.to_json())?;
    let r = http_client::request(api, "POST", "/v1/traces", Some(&body)).await?;
    if r.status >= 400 {
        bail!("the node refused the trace ({}): {}", r.status, r.body);
    }
    let v: serde_json::Value = serde_json::from_str(&r.body).context("bad answer from the node")?;
    println!("{}", v["id"].as_str().unwrap_or_default());
    Ok(())
}

fn keygen(out: &Path) -> anyhow::Result<()> {
    let kp = identity::generate(out)?;
    println!("{}", identity::peer_id(&kp));
    Ok(())
}

fn parse_peer(s: &str) -> anyhow::Result<PeerId> {
    PeerId::from_str(s.trim())
        .with_context(|| format!("`{s}` is not a PeerId (print one with `lcbft keygen`)"))
}

fn genesis_cmd(
    global: &[String],
    domains: &[String],
    out: &Path,
    scheme: Scheme,
    payload: genesis::PayloadKind,
) -> anyhow::Result<()> {
    let global = global
        .iter()
        .map(|s| parse_peer(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut locals = Vec::new();
    for d in domains {
        let (id, members) = d
            .split_once('=')
            .with_context(|| format!("--domain `{d}`: expected <id>=<edge>,<peer>,..."))?;
        let id: u32 = id
            .trim()
            .parse()
            .with_context(|| format!("--domain `{d}`: `{id}` is not a domain number"))?;
        let mut peers = members.split(',').map(parse_peer);
        let edge = peers
            .next()
            .with_context(|| format!("--domain `{d}`: no edge given"))??;
        let devices = peers.collect::<anyhow::Result<Vec<_>>>()?;
        locals.push((id, edge, devices));
    }
    let scheme = match scheme {
        Scheme::ThresholdCrypto => SchemeId::ThresholdCrypto,
        Scheme::Blsttc => SchemeId::Blsttc,
    };
    let req = genesis::Request {
        scheme,
        payload,
        global,
        locals,
    };
    let (g, secrets) = genesis::deal(&req)?;
    let path = genesis::write(out, &g, &secrets)?;
    println!(
        "wrote {} and {} key shares under {}",
        path.display(),
        secrets.len(),
        out.join("keys").display()
    );
    Ok(())
}
