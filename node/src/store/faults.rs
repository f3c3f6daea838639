//! Storage faults: a damaged database is refused at open, never repaired into an older state;
//! a full disk or a read-only data directory fails the write with a clear error and loses
//! nothing acknowledged. The disk tests need root (a small tmpfs in a private mount namespace,
//! so nothing outside the test sees it) and say so loudly when they skip.

use super::*;
use lcbft_protocol::types::{Certificate, Tx};
use std::path::PathBuf;
use std::process::Command;

/// Set in the re-executed test binary that runs inside the private mount namespace.
const INNER: &str = "LCBFT_STORE_FAULT_DIR";

fn proof(domain: DomainId) -> CommitProof {
    CommitProof {
        above: Vec::new(),
        qc: Certificate::genesis(domain),
    }
}

/// Commit `count` blocks on top of `domain`'s chain, each carrying `payload` bytes of `fill`.
fn commit_blocks(
    store: &Store,
    domain: DomainId,
    count: u64,
    payload: usize,
    fill: u8,
) -> Result<u64, StoreError> {
    let mut parent = store
        .committed_chain(domain)?
        .last()
        .cloned()
        .unwrap_or_else(|| Block::genesis(domain));
    for _ in 0..count {
        let mut b = parent.clone();
        b.height = parent.height + 1;
        b.view = parent.view + 1;
        b.parent = parent.hash();
        let mut tx = vec![fill; payload];
        tx[..8].copy_from_slice(&b.height.to_le_bytes());
        b.payload = vec![Tx::new(tx)].into();
        store.commit_block(&b, &proof(domain))?;
        parent = b;
    }
    Ok(parent.height)
}

fn filled_store(path: &Path) -> SafetyState {
    let store = Store::open(path).expect("open");
    commit_blocks(&store, DomainId::Global, 6, 3000, 0x5a).expect("commit");
    let mut safety = SafetyState::genesis(DomainId::Global);
    safety.last_voted = 7;
    store
        .save_safety(DomainId::Global, &safety, &[])
        .expect("save");
    safety
}

fn assert_damaged(path: &Path, what: &str) {
    match Store::open(path) {
        Err(e @ StoreError::Damaged { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&path.display().to_string()), "{what}: {msg}");
            assert!(msg.contains("refusing"), "{what}: {msg}");
        }
        Err(e) => panic!("{what}: expected Damaged, got {e}"),
        Ok(_) => panic!("{what}: a damaged database was opened"),
    }
}

#[test]
fn a_truncated_database_is_refused_at_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    filled_store(&path);
    let len = std::fs::metadata(&path).expect("meta").len();
    for cut in [len / 2, 4096, 100, 0] {
        let p = dir.path().join(format!("cut-{cut}"));
        std::fs::copy(&path, &p).expect("copy");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .expect("open");
        f.set_len(cut).expect("truncate");
        drop(f);
        assert_damaged(&p, &format!("cut to {cut} of {len} bytes"));
    }
    // The intact file still opens and holds everything.
    let store = Store::open(&path).expect("intact");
    assert_eq!(store.committed_height(DomainId::Global).expect("h"), 6);
}

#[test]
fn a_corrupted_page_is_refused_not_rolled_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    filled_store(&path);
    let mut bytes = std::fs::read(&path).expect("read");
    // Flip a byte inside every run of the block payloads: one of them is the live page.
    let mut flipped = 0;
    let mut i = 0;
    while i + 64 <= bytes.len() {
        if bytes[i..i + 64].iter().all(|&b| b == 0x5a) {
            bytes[i + 32] ^= 0xff;
            flipped += 1;
            i += 4096;
        } else {
            i += 1;
        }
    }
    assert!(flipped > 0, "no payload found in the file");
    std::fs::write(&path, &bytes).expect("write");
    assert_damaged(&path, "flipped payload bytes");
}

#[test]
fn a_clean_reopen_keeps_the_safety_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("db");
    let safety = filled_store(&path);
    let store = Store::open(&path).expect("reopen");
    assert_eq!(store.safety(DomainId::Global).expect("read"), Some(safety));
}

/// Why the root-only tests cannot run here, if they cannot.
fn namespace_unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0");
    if !root {
        return Some("not root (needs a tmpfs mounted in a private mount namespace)".into());
    }
    let ok = Command::new("unshare")
        .args(["-m", "--propagation", "private", "true"])
        .status()
        .is_ok_and(|s| s.success());
    (!ok).then(|| "`unshare -m` does not work here (util-linux missing or no privilege)".into())
}

/// Run `inner` (an ignored test of this binary) inside a private mount namespace, with a
/// tmpfs of `size` mounted at a fresh directory it finds in `INNER`.
fn in_namespace(test: &str, inner: &str, size: &str) {
    if let Some(why) = namespace_unavailable() {
        eprintln!("\n*** SKIPPED {test}: {why} ***\n");
        println!("SKIPPED {test}: {why}");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mnt = dir.path().display().to_string();
    let exe = std::env::current_exe().expect("test binary");
    let script = format!(
        "mount -t tmpfs -o size={size} lcbft-fault \"$1\" && exec \"$2\" --exact {inner} --ignored --nocapture --test-threads 1"
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script, "sh"])
        .arg(&mnt)
        .arg(&exe)
        .env(INNER, &mnt)
        .output()
        .expect("run unshare");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{inner} failed:\n{text}");
    assert!(text.contains("1 passed"), "{inner} did not run:\n{text}");
}

#[test]
fn a_full_disk_fails_the_write_clearly_and_loses_nothing_committed() {
    in_namespace(
        "a_full_disk_fails_the_write_clearly_and_loses_nothing_committed",
        "store::faults::full_disk_inner",
        "4m",
    );
}

#[test]
fn a_read_only_data_directory_is_a_clear_error() {
    in_namespace(
        "a_read_only_data_directory_is_a_clear_error",
        "store::faults::read_only_inner",
        "4m",
    );
}

#[test]
#[ignore = "runs inside a private mount namespace, started by a_full_disk_fails_the_write_clearly_and_loses_nothing_committed"]
fn full_disk_inner() {
    let dir = PathBuf::from(std::env::var(INNER).expect("run by the outer test"));
    // Space the operator can free later, as on a real node (logs, old files).
    let filler = dir.join("filler");
    std::fs::write(&filler, vec![0u8; 512 * 1024]).expect("filler");
    let path = dir.join("lcbft.redb");
    let store = Store::open(&path).expect("open");
    let mut safety = SafetyState::genesis(DomainId::Global);
    let mut acknowledged = 0;
    let err = loop {
        match commit_blocks(&store, DomainId::Global, 1, 16 * 1024, 0x33) {
            Ok(h) => acknowledged = h,
            Err(e) => break e,
        }
        safety.last_voted = acknowledged;
        if let Err(e) = store.save_safety(DomainId::Global, &safety, &[]) {
            break e;
        }
        assert!(acknowledged < 10_000, "the 4 MiB disk never filled");
    };
    let msg = err.to_string();
    assert!(
        msg.contains("No space left on device") || msg.contains("os error 28"),
        "unclear error on a full disk: {msg}"
    );
    assert!(acknowledged > 10, "only {acknowledged} blocks fit");
    drop(store);
    // The operator frees space and restarts: everything acknowledged is there.
    std::fs::remove_file(&filler).expect("free space");
    let store = Store::open(&path).expect("reopen after freeing space");
    assert_eq!(
        store.committed_height(DomainId::Global).expect("height"),
        acknowledged
    );
    let stored = store
        .safety(DomainId::Global)
        .expect("read")
        .expect("safety");
    assert!(
        stored.last_voted + 1 >= acknowledged,
        "safety state went back: {} < {acknowledged}",
        stored.last_voted
    );
    let chain = store.committed_chain(DomainId::Global).expect("chain");
    assert_eq!(chain.len() as u64, acknowledged);
}

#[test]
#[ignore = "runs inside a private mount namespace, started by a_read_only_data_directory_is_a_clear_error"]
fn read_only_inner() {
    let dir = PathBuf::from(std::env::var(INNER).expect("run by the outer test"));
    let path = dir.join("lcbft.redb");
    {
        let store = Store::open(&path).expect("open");
        commit_blocks(&store, DomainId::Global, 3, 1000, 0x11).expect("commit");
    }
    let fresh = dir.join("fresh.redb");
    let remount = Command::new("mount")
        .args(["-o", "remount,ro"])
        .arg(&dir)
        .status()
        .expect("mount");
    assert!(remount.success(), "cannot remount read-only");
    for p in [&path, &fresh] {
        let Err(e) = Store::open(p) else {
            panic!("{} opened on a read-only file system", p.display())
        };
        let msg = e.to_string();
        assert!(
            msg.contains("Read-only file system") || msg.contains("os error 30"),
            "unclear error for {}: {msg}",
            p.display()
        );
    }
}
