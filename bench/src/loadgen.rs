//! `lcbft-bench loadgen`: what the testnet's load generator can offer when the nodes are not
//! the limit. A default testnet directory is initialised (keys, genesis, ports) but, instead
//! of nodes, a minimal HTTP sink listens on every node's API port and admits every item of a
//! batch at once, answering one JSON entry per item like a node. The generator signs,
//! encodes, sends and parses exactly as against real nodes.

use anyhow::Context;
use clap::Args as ClapArgs;
use lcbft_testnet::load::{Load, Options};
use lcbft_testnet::net::Net;
use lcbft_testnet::topology::Shape;
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(ClapArgs)]
pub struct Args {
    /// Items per second to ask for.
    #[arg(long, default_value_t = 20_000.0)]
    rate: f64,
    /// Seconds to run.
    #[arg(long, default_value_t = 10)]
    duration: u64,
}

pub fn run(a: &Args) -> anyhow::Result<()> {
    let dir = tempfile_dir()?;
    lcbft_testnet::init::init(&dir, Shape::default(), None)?;
    let net = Net::open(&dir, false)?;
    for n in &net.topo.nodes {
        let addr = n.api(false);
        let listener =
            TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || sink(conn));
            }
        });
    }
    let load = Load::start_with(
        &net,
        &Options {
            rate: a.rate,
            keep_ids: false,
            sample_every: 0,
        },
    )?;
    std::thread::sleep(Duration::from_secs(a.duration));
    let seconds = load.started.elapsed().as_secs_f64();
    let stats = load.stop();
    let per_s = |c: &std::sync::atomic::AtomicU64| {
        (c.load(Ordering::Relaxed) as f64 / seconds * 10.0).round() / 10.0
    };
    println!(
        "{}",
        json!({
            "rate": a.rate,
            "seconds": (seconds * 10.0).round() / 10.0,
            "offered_per_s": per_s(&stats.submitted),
            "accepted_per_s": per_s(&stats.accepted),
            "requests_per_s": per_s(&stats.requests),
            "unreachable": stats.unreachable.load(Ordering::Relaxed),
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("lcbft-loadgen-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Count the items of a CBOR array (its head) or of length-prefixed frames.
fn items(body: &[u8], cbor: bool) -> usize {
    if cbor {
        return match body {
            [b, ..] if b & 0xe0 == 0x80 && b & 0x1f < 24 => usize::from(b & 0x1f),
            [0x98, n, ..] => usize::from(*n),
            [0x99, a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => 0,
        };
    }
    let mut n = 0;
    let mut rest = body;
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let len = u32::from_be_bytes(*len) as usize;
        rest = tail.get(len..).unwrap_or_default();
        n += 1;
    }
    n
}

/// Answer every request on a keep-alive connection with one admitted entry per item.
fn sink(conn: TcpStream) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut len = 0;
        let mut cbor = false;
        let mut line = String::new();
        loop {
            line.clear();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let l = line.trim_end().to_ascii_lowercase();
            if l.is_empty() {
                break;
            }
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap_or(0);
            }
            if l.starts_with("content-type:") && l.contains("cbor") {
                cbor = true;
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let entry = r#"{"id":"0000000000000000000000000000000000000000000000000000000000000000","status":"pending","duplicate":false}"#;
        let n = items(&body, cbor);
        let answer = format!("[{}]", vec![entry; n].join(","));
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            answer.len()
        );
        if out.write_all(head.as_bytes()).is_err() || out.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
