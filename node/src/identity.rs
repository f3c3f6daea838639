//! A node's libp2p ed25519 identity: created by `lcbft keygen`, stored protobuf-encoded in a
//! file only its owner can read.

use crate::files::{self, FileError};
use libp2p::PeerId;
use libp2p::identity::Keypair;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error(
        "identity file {path} is corrupt (not a protobuf-encoded libp2p key): create a new one with `lcbft keygen --out {path}`"
    )]
    Corrupt { path: PathBuf },
    #[error(
        "identity file {path} holds a non-ed25519 key: create a new one with `lcbft keygen --out {path}`"
    )]
    NotEd25519 { path: PathBuf },
}

/// Generate a fresh ed25519 identity and write it to `path` (mode 0600, never overwriting).
pub fn generate(path: &Path) -> Result<Keypair, IdentityError> {
    let keypair = Keypair::generate_ed25519();
    let bytes = keypair
        .to_protobuf_encoding()
        .map_err(|_| IdentityError::NotEd25519 {
            path: path.to_owned(),
        })?;
    files::write_secret(path, &bytes, "`lcbft keygen --out <another path>`")?;
    Ok(keypair)
}

/// Load an identity written by [`generate`].
pub fn load(path: &Path) -> Result<Keypair, IdentityError> {
    let bytes = files::read_secret(path, "create it with `lcbft keygen --out <path>`")?;
    let keypair = Keypair::from_protobuf_encoding(&bytes).map_err(|_| IdentityError::Corrupt {
        path: path.to_owned(),
    })?;
    if keypair.clone().try_into_ed25519().is_err() {
        return Err(IdentityError::NotEd25519 {
            path: path.to_owned(),
        });
    }
    Ok(keypair)
}

pub fn peer_id(keypair: &Keypair) -> PeerId {
    keypair.public().to_peer_id()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn generate_then_load_gives_the_same_peer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let kp = generate(&path).expect("generate");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let back = load(&path).expect("load");
        assert_eq!(peer_id(&kp), peer_id(&back));
    }

    #[test]
    fn refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        generate(&path).expect("generate");
        let err = generate(&path).expect_err("second generate must fail");
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn missing_and_corrupt_files_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("none.key");
        let err = load(&path).expect_err("missing").to_string();
        assert!(
            err.contains("none.key") && err.contains("lcbft keygen"),
            "{err}"
        );
        assert!(!err.contains('\n'));
        // Private, so the content is what is judged.
        crate::files::write_secret(&path, b"garbage", "").expect("write");
        let err = load(&path).expect_err("corrupt").to_string();
        assert!(
            err.contains("corrupt") && err.contains("lcbft keygen"),
            "{err}"
        );
    }

    #[test]
    fn a_key_readable_by_others_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.key");
        let kp = generate(&path).expect("generate");
        for mode in [0o640, 0o604, 0o660, 0o606] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = load(&path).expect_err("refused").to_string();
            assert!(
                err.contains(&path.display().to_string()) && err.contains("chmod 600"),
                "{mode:o}: {err}"
            );
        }
        for mode in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let back = load(&path).expect("private key loads");
            assert_eq!(peer_id(&back), peer_id(&kp));
        }
    }
}
