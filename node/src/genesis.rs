//! The genesis ceremony and file (DESIGN §1): which domains exist, who is in each (PeerId,
//! index, role), the threshold scheme and every domain's public key set; plus one secret-share
//! file per member per domain.
//!
//! `genesis.toml` is meant to be read by people: domains by name (`global`, `local/7`), keys
//! in hex. Loading it validates everything once, so the rest of the node can trust it.

use crate::files::{self, FileError};
use lcbft_protocol::anchor::KeyRing;
use lcbft_protocol::crypto::{
    CryptoError, Dealer, DealtKeys, SchemeId, SecretBytes, ThresholdCryptoScheme, ThresholdKeys,
    load_keys,
};
use lcbft_protocol::types::{DomainId, ReplicaIndex};
use libp2p::PeerId;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

const VERSION: u32 = 1;
const REGENERATE: &str = "regenerate it with `lcbft genesis`";

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{path} is not a valid genesis file ({reason}): {REGENERATE}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path} is not a valid key-share file ({reason}): copy the share `lcbft genesis` wrote for this node"
    )]
    BadShare { path: PathBuf, reason: String },
    #[error(
        "{path} does not match the genesis ({reason}): copy the share `lcbft genesis` wrote for this node with this genesis"
    )]
    Mismatch { path: PathBuf, reason: String },
    #[error("bad genesis request: {0}")]
    Request(String),
}

/// A member's job (DESIGN §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Cloud,
    Edge,
    Device,
}

impl Role {
    /// The name used in configs, `/v1/status`, metrics labels and the testnet.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Cloud => "cloud",
            Role::Edge => "edge",
            Role::Device => "device",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    pub index: ReplicaIndex,
    pub peer_id: PeerId,
    pub role: Role,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainGenesis {
    pub id: DomainId,
    pub members: Vec<Member>,
    pub public_key_set: Vec<u8>,
}

impl DomainGenesis {
    pub fn n(&self) -> usize {
        self.members.len()
    }

    pub fn index_of(&self, peer: &PeerId) -> Option<ReplicaIndex> {
        self.members
            .iter()
            .find(|m| &m.peer_id == peer)
            .map(|m| m.index)
    }

    pub fn peer(&self, index: ReplicaIndex) -> Option<PeerId> {
        self.members.get(usize::from(index)).map(|m| m.peer_id)
    }

    /// The local domain's edge member.
    pub fn edge(&self) -> Option<ReplicaIndex> {
        self.members
            .iter()
            .find(|m| m.role == Role::Edge)
            .map(|m| m.index)
    }
}

/// What the network's blocks carry: producer-signed data traces (the default), or opaque
/// payloads with no producer signature, for benchmarks comparable to other BFT systems.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PayloadKind {
    /// Signed traces (`POST /v1/traces`).
    #[default]
    Traces,
    /// Opaque byte strings (`POST /v1/payloads`); replicas check only their size.
    Raw,
}

impl std::fmt::Display for PayloadKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PayloadKind::Traces => "traces",
            PayloadKind::Raw => "raw",
        })
    }
}

/// A validated genesis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Genesis {
    pub scheme: SchemeId,
    /// Network-wide: what a block's payload items are.
    pub payload: PayloadKind,
    pub domains: Vec<DomainGenesis>,
}

impl Genesis {
    pub fn domain(&self, id: DomainId) -> Option<&DomainGenesis> {
        self.domains.iter().find(|d| d.id == id)
    }

    /// Every domain's public key set: what verifies anchors and proofs offline.
    pub fn key_ring(&self) -> Result<KeyRing, CryptoError> {
        self.domains
            .iter()
            .map(|d| {
                Ok((
                    d.id,
                    load_keys(self.scheme, d.n(), &d.public_key_set, None)?,
                ))
            })
            .collect()
    }

    /// Domains `peer` is a member of, with its index in each.
    pub fn memberships(&self, peer: &PeerId) -> Vec<(DomainId, ReplicaIndex)> {
        self.domains
            .iter()
            .filter_map(|d| d.index_of(peer).map(|i| (d.id, i)))
            .collect()
    }

    /// Every PeerId named anywhere in the genesis.
    pub fn all_peers(&self) -> BTreeSet<PeerId> {
        self.domains
            .iter()
            .flat_map(|d| d.members.iter().map(|m| m.peer_id))
            .collect()
    }
}

/// File-name-safe tag: `global`, `local-7`.
pub fn domain_tag(id: DomainId) -> String {
    match id {
        DomainId::Global => "global".into(),
        DomainId::Local(n) => format!("local-{n}"),
    }
}

/// Where `lcbft genesis` puts a member's share for a domain, under its output directory.
pub fn share_path(dir: &Path, peer: &PeerId, domain: DomainId) -> PathBuf {
    dir.join("keys")
        .join(peer.to_string())
        .join(format!("{}.share", domain_tag(domain)))
}

// ---- file formats ----

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenesisFile {
    version: u32,
    scheme: SchemeId,
    /// Absent in files written before it existed: traces.
    #[serde(default)]
    payload: PayloadKind,
    domains: Vec<DomainFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DomainFile {
    id: String,
    /// Shares needed for a certificate (n - f); informative, checked against the key set.
    quorum: usize,
    /// The public key set, hex.
    public_key_set: String,
    members: Vec<MemberFile>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberFile {
    index: ReplicaIndex,
    peer_id: String,
    role: Role,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareFile {
    domain: String,
    index: ReplicaIndex,
    peer_id: String,
    scheme: SchemeId,
    /// The secret share, hex. Never share this file.
    secret: String,
}

fn quorum_for(n: usize) -> usize {
    n - (n.saturating_sub(1)) / 3
}

// ---- the ceremony ----

/// Every member's secret share, per domain, as dealt.
pub type DealtSecrets = Vec<(DomainId, Member, SecretBytes)>;

/// What `lcbft genesis` was asked for.
pub struct Request {
    pub scheme: SchemeId,
    pub payload: PayloadKind,
    pub global: Vec<PeerId>,
    /// Local domains: id, edge, other members (devices).
    pub locals: Vec<(u32, PeerId, Vec<PeerId>)>,
}

/// Deal every domain's keys. Returns the genesis and per (domain, member) secret.
pub fn deal(req: &Request) -> Result<(Genesis, DealtSecrets), GenesisError> {
    if req.global.is_empty() && req.locals.is_empty() {
        return Err(GenesisError::Request(
            "no domain given: pass --global and/or --domain".into(),
        ));
    }
    let edges: BTreeSet<PeerId> = req.locals.iter().map(|(_, e, _)| *e).collect();
    let mut plans: Vec<(DomainId, Vec<Member>)> = Vec::new();
    if !req.global.is_empty() {
        let members = req
            .global
            .iter()
            .enumerate()
            .map(|(i, p)| Member {
                index: i as ReplicaIndex,
                peer_id: *p,
                role: if edges.contains(p) {
                    Role::Edge
                } else {
                    Role::Cloud
                },
            })
            .collect();
        plans.push((DomainId::Global, members));
    }
    for (id, edge, devices) in &req.locals {
        let mut members = vec![Member {
            index: 0,
            peer_id: *edge,
            role: Role::Edge,
        }];
        for (i, p) in devices.iter().enumerate() {
            members.push(Member {
                index: (i + 1) as ReplicaIndex,
                peer_id: *p,
                role: Role::Device,
            });
        }
        plans.push((DomainId::Local(*id), members));
    }
    let mut domains = Vec::new();
    let mut secrets = Vec::new();
    for (id, members) in plans {
        let n = members.len();
        let dealt = deal_keys(req.scheme, n)?;
        for (m, s) in members.iter().zip(dealt.secrets) {
            secrets.push((id, m.clone(), s));
        }
        domains.push(DomainGenesis {
            id,
            members,
            public_key_set: dealt.public,
        });
    }
    let genesis = Genesis {
        scheme: req.scheme,
        payload: req.payload,
        domains,
    };
    validate(&genesis).map_err(GenesisError::Request)?;
    Ok((genesis, secrets))
}

fn deal_keys(scheme: SchemeId, n: usize) -> Result<DealtKeys, GenesisError> {
    let seed: [u8; 32] = rand::random();
    match scheme {
        SchemeId::ThresholdCrypto => Ok(ThresholdCryptoScheme::deal(n, quorum_for(n), seed)),
        #[cfg(feature = "blsttc")]
        SchemeId::Blsttc => Ok(lcbft_protocol::crypto::BlsttcScheme::deal(
            n,
            quorum_for(n),
            seed,
        )),
        other => Err(GenesisError::Request(format!(
            "scheme {other:?} is not available in this build"
        ))),
    }
}

/// Write `genesis.toml` and the share files under `dir`. Refuses to overwrite anything.
pub fn write(
    dir: &Path,
    genesis: &Genesis,
    secrets: &[(DomainId, Member, SecretBytes)],
) -> Result<PathBuf, GenesisError> {
    let path = dir.join("genesis.toml");
    let text = to_toml(genesis);
    files::write_new(
        &path,
        text.as_bytes(),
        0o644,
        "`lcbft genesis --out <another dir>`",
    )?;
    for (domain, member, secret) in secrets {
        let share = ShareFile {
            domain: domain.to_string(),
            index: member.index,
            peer_id: member.peer_id.to_string(),
            scheme: genesis.scheme,
            secret: hex::encode(&secret.0),
        };
        let body = toml::to_string(&share).map_err(|e| GenesisError::Request(e.to_string()))?;
        let text = format!(
            "# lcbft secret key share for {} in {}. Keep it private (mode 0600).\n{body}",
            member.peer_id, domain
        );
        files::write_secret(
            &share_path(dir, &member.peer_id, *domain),
            text.as_bytes(),
            "`lcbft genesis --out <another dir>`",
        )?;
    }
    Ok(path)
}

/// The text of `genesis.toml`; [`parse`] reads it back to the same genesis.
pub fn to_toml(genesis: &Genesis) -> String {
    let file = GenesisFile {
        version: VERSION,
        scheme: genesis.scheme,
        payload: genesis.payload,
        domains: genesis
            .domains
            .iter()
            .map(|d| DomainFile {
                id: d.id.to_string(),
                quorum: quorum_for(d.n()),
                public_key_set: hex::encode(&d.public_key_set),
                members: d
                    .members
                    .iter()
                    .map(|m| MemberFile {
                        index: m.index,
                        peer_id: m.peer_id.to_string(),
                        role: m.role,
                    })
                    .collect(),
            })
            .collect(),
    };
    let body = match toml::to_string_pretty(&file) {
        Ok(b) => b,
        // Plain strings, integers and arrays of tables always serialize.
        Err(e) => unreachable!("genesis serialization failed: {e}"),
    };
    format!(
        "# lcbft genesis: the domains, their members (libp2p PeerIds, share indices, roles),\n\
         # the threshold signature scheme and each domain's public key set (hex).\n\
         # Every node of the network needs this same file. Written by `lcbft genesis`.\n\n{body}"
    )
}

// ---- loading ----

/// Load and validate `genesis.toml`.
pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
    let text = files::read_text(path, REGENERATE)?;
    parse(&text, path)
}

/// Parse and validate the text of a genesis file; `path` only names it in errors. Apart from
/// [`load`], the fuzzer calls this: it is everything a hand-edited or hostile file reaches.
pub fn parse(text: &str, path: &Path) -> Result<Genesis, GenesisError> {
    let invalid = |reason: String| GenesisError::Invalid {
        path: path.to_owned(),
        reason,
    };
    let file: GenesisFile = toml::from_str(text).map_err(|e| invalid(one_line(&e.to_string())))?;
    if file.version != VERSION {
        return Err(invalid(format!(
            "version {} is not {VERSION}",
            file.version
        )));
    }
    let mut domains = Vec::new();
    for d in file.domains {
        let id =
            d.id.parse::<DomainId>()
                .map_err(|e| invalid(format!("domain id: {e}")))?;
        let mut members = Vec::new();
        for m in d.members {
            let peer_id = PeerId::from_str(&m.peer_id)
                .map_err(|_| invalid(format!("{}: `{}` is not a PeerId", d.id, m.peer_id)))?;
            members.push(Member {
                index: m.index,
                peer_id,
                role: m.role,
            });
        }
        let public_key_set = hex::decode(&d.public_key_set)
            .map_err(|_| invalid(format!("{}: public_key_set is not hex", d.id)))?;
        if d.quorum != quorum_for(members.len()) {
            return Err(invalid(format!(
                "{}: quorum {} is not n - f = {}",
                d.id,
                d.quorum,
                quorum_for(members.len())
            )));
        }
        domains.push(DomainGenesis {
            id,
            members,
            public_key_set,
        });
    }
    let genesis = Genesis {
        scheme: file.scheme,
        payload: file.payload,
        domains,
    };
    validate(&genesis).map_err(invalid)?;
    Ok(genesis)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Structural checks shared by dealing and loading.
fn validate(g: &Genesis) -> Result<(), String> {
    if g.scheme == SchemeId::Sim {
        return Err("scheme `sim` is insecure and only for the simulator".into());
    }
    if g.domains.is_empty() {
        return Err("no domains".into());
    }
    let mut ids = BTreeSet::new();
    for d in &g.domains {
        if !ids.insert(d.id) {
            return Err(format!("domain {} appears twice", d.id));
        }
        validate_domain(g.scheme, d)?;
    }
    validate_edges(g)
}

/// One domain on its own: its members, its key set and its roles.
fn validate_domain(scheme: SchemeId, d: &DomainGenesis) -> Result<(), String> {
    let name = d.id.to_string();
    if d.members.is_empty() {
        return Err(format!("{name}: no members"));
    }
    if d.n() > usize::from(ReplicaIndex::MAX) {
        return Err(format!("{name}: too many members"));
    }
    let mut peers = BTreeSet::new();
    for (i, m) in d.members.iter().enumerate() {
        if usize::from(m.index) != i {
            return Err(format!(
                "{name}: member {} has index {}, expected {i}",
                m.peer_id, m.index
            ));
        }
        if !peers.insert(m.peer_id) {
            return Err(format!("{name}: {} is listed twice", m.peer_id));
        }
    }
    let keys = load_keys(scheme, d.n(), &d.public_key_set, None)
        .map_err(|e| format!("{name}: public_key_set: {e}"))?;
    if keys.quorum() != quorum_for(d.n()) {
        return Err(format!(
            "{name}: public_key_set has quorum {}, expected n - f = {}",
            keys.quorum(),
            quorum_for(d.n())
        ));
    }
    validate_roles(&name, d)
}

fn validate_roles(name: &str, d: &DomainGenesis) -> Result<(), String> {
    let edges = d.members.iter().filter(|m| m.role == Role::Edge).count();
    match d.id {
        DomainId::Global => {
            if d.members.iter().any(|m| m.role == Role::Device) {
                return Err("global: a device cannot be a global validator".into());
            }
        }
        DomainId::Local(_) => {
            if edges != 1 {
                return Err(format!(
                    "{name}: needs exactly one edge member, has {edges}"
                ));
            }
            if d.members.iter().any(|m| m.role == Role::Cloud) {
                return Err(format!("{name}: a cloud node cannot be a local member"));
            }
        }
    }
    Ok(())
}

/// The global domain against the local ones.
fn validate_edges(g: &Genesis) -> Result<(), String> {
    // An edge bridges its local domain into the global chain, so it is a global member too.
    let mut roles: BTreeMap<PeerId, Role> = BTreeMap::new();
    for d in g.domains.iter().filter(|d| d.id != DomainId::Global) {
        for m in d.members.iter().filter(|m| m.role == Role::Edge) {
            roles.insert(m.peer_id, Role::Edge);
        }
    }
    if let Some(global) = g.domain(DomainId::Global) {
        if let Some(edge) = roles.keys().find(|p| global.index_of(p).is_none()) {
            return Err(format!(
                "edge {edge} of a local domain is not a global member"
            ));
        }
        for m in &global.members {
            let expect = roles.get(&m.peer_id).copied().unwrap_or(Role::Cloud);
            if m.role != expect {
                return Err(format!(
                    "global: {} has role {:?}, expected {expect:?}",
                    m.peer_id, m.role
                ));
            }
        }
    }
    Ok(())
}

/// This node's keys for `domain`: read its share file and check it against the genesis (same
/// domain, peer, index and scheme; a share of this key set at this index).
pub fn load_member_keys(
    genesis: &Genesis,
    domain: DomainId,
    me: &PeerId,
    share: &Path,
) -> Result<(ReplicaIndex, Box<dyn ThresholdKeys>), GenesisError> {
    let name = domain.to_string();
    let dg = genesis
        .domain(domain)
        .ok_or_else(|| GenesisError::Mismatch {
            path: share.to_owned(),
            reason: format!("the genesis has no domain {name}"),
        })?;
    let index = dg.index_of(me).ok_or_else(|| GenesisError::Mismatch {
        path: share.to_owned(),
        reason: format!("this node ({me}) is not a member of {name}"),
    })?;
    let text = files::read_secret_text(
        share,
        "copy the share `lcbft genesis` wrote for this node (keys/<peer-id>/<domain>.share)",
    )?;
    let bad = |reason: String| GenesisError::BadShare {
        path: share.to_owned(),
        reason,
    };
    let mismatch = |reason: String| GenesisError::Mismatch {
        path: share.to_owned(),
        reason,
    };
    let file: ShareFile = toml::from_str(&text).map_err(|e| bad(one_line(&e.to_string())))?;
    if file.domain.parse::<DomainId>().ok() != Some(domain) {
        return Err(mismatch(format!(
            "it is for domain `{}`, not {name}",
            file.domain
        )));
    }
    if file.peer_id != me.to_string() {
        return Err(mismatch(format!(
            "it is for peer {}, not this node ({me})",
            file.peer_id
        )));
    }
    if file.index != index {
        return Err(mismatch(format!(
            "it has index {}, the genesis says {index}",
            file.index
        )));
    }
    if file.scheme != genesis.scheme {
        return Err(mismatch(format!(
            "scheme {:?}, the genesis says {:?}",
            file.scheme, genesis.scheme
        )));
    }
    let secret =
        SecretBytes(hex::decode(&file.secret).map_err(|_| bad("secret is not hex".into()))?);
    let keys = load_keys(genesis.scheme, dg.n(), &dg.public_key_set, Some(&secret))
        .map_err(|e| mismatch(e.to_string()))?;
    if keys.quorum() != quorum_for(dg.n()) {
        return Err(mismatch(format!("quorum {} is not n - f", keys.quorum())));
    }
    // The secret must be this index's share, not another member's of the same set.
    let probe = b"lcbft/share-check";
    let ok = keys
        .sign_share(probe)
        .map(|s| keys.verify_share(index, probe, &s))
        .unwrap_or(false);
    if !ok {
        return Err(mismatch(format!(
            "the secret is not member {index}'s share"
        )));
    }
    Ok((index, keys))
}

#[cfg(test)]
mod tests {
    use super::*;
    use libp2p::identity::Keypair;
    use std::os::unix::fs::PermissionsExt;

    fn peers(n: usize) -> Vec<PeerId> {
        (0..n)
            .map(|_| Keypair::generate_ed25519().public().to_peer_id())
            .collect()
    }

    fn request(global: &[PeerId], local: Option<(PeerId, Vec<PeerId>)>) -> Request {
        Request {
            scheme: SchemeId::ThresholdCrypto,
            payload: PayloadKind::Traces,
            global: global.to_vec(),
            locals: local.map(|(e, d)| vec![(1, e, d)]).unwrap_or_default(),
        }
    }

    #[test]
    fn genesis_round_trips_and_shares_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = peers(4);
        let devices = peers(3);
        let (genesis, secrets) = deal(&request(&g, Some((g[0], devices.clone())))).expect("deal");
        let path = write(dir.path(), &genesis, &secrets).expect("write");
        let back = load(&path).expect("load");
        assert_eq!(back, genesis);
        let global = back.domain(DomainId::Global).expect("global");
        assert_eq!(global.members[0].role, Role::Edge);
        assert_eq!(global.members[1].role, Role::Cloud);
        let local = back.domain(DomainId::Local(1)).expect("local");
        assert_eq!(local.n(), 4);
        assert_eq!(local.edge(), Some(0));
        assert_eq!(back.memberships(&g[0]).len(), 2);

        let share = share_path(dir.path(), &devices[1], DomainId::Local(1));
        let mode = std::fs::metadata(&share)
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (index, keys) =
            load_member_keys(&back, DomainId::Local(1), &devices[1], &share).expect("keys");
        assert_eq!(index, 2);
        assert_eq!(keys.quorum(), 3);
        // A share others can read is refused, naming the file and the fix.
        std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load_member_keys(&back, DomainId::Local(1), &devices[1], &share)
            .err()
            .expect("exposed share")
            .to_string();
        assert!(
            err.contains(&share.display().to_string()) && err.contains("chmod 600"),
            "{err}"
        );
    }

    #[test]
    fn the_payload_kind_round_trips_and_defaults_to_traces() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = peers(4);
        let mut req = request(&g, None);
        req.payload = PayloadKind::Raw;
        let (genesis, secrets) = deal(&req).expect("deal");
        let path = write(dir.path(), &genesis, &secrets).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(text.contains("payload = \"raw\""), "{text}");
        assert_eq!(load(&path).expect("load").payload, PayloadKind::Raw);
        // A genesis written before the field existed loads as a trace network.
        std::fs::write(&path, text.replace("payload = \"raw\"\n", "")).expect("write");
        assert_eq!(load(&path).expect("load").payload, PayloadKind::Traces);
    }

    #[test]
    fn a_share_of_another_member_or_domain_is_a_mismatch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = peers(4);
        let (genesis, secrets) = deal(&request(&g, None)).expect("deal");
        write(dir.path(), &genesis, &secrets).expect("write");
        let other = share_path(dir.path(), &g[1], DomainId::Global);
        let err = load_member_keys(&genesis, DomainId::Global, &g[0], &other)
            .err()
            .expect("mismatch")
            .to_string();
        assert!(
            err.contains("does not match") && err.contains(&g[1].to_string()),
            "{err}"
        );
        assert!(!err.contains('\n'));

        // Same peer and index, but a secret from a different key set.
        let dir2 = tempfile::tempdir().expect("tempdir");
        let (genesis2, secrets2) = deal(&request(&g, None)).expect("deal");
        write(dir2.path(), &genesis2, &secrets2).expect("write");
        let foreign = share_path(dir2.path(), &g[0], DomainId::Global);
        let err = load_member_keys(&genesis, DomainId::Global, &g[0], &foreign)
            .err()
            .expect("foreign");
        assert!(matches!(err, GenesisError::Mismatch { .. }), "{err}");
    }

    #[test]
    fn corrupt_and_truncated_genesis_files_are_one_line_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = peers(4);
        let (genesis, secrets) = deal(&request(&g, None)).expect("deal");
        let path = write(dir.path(), &genesis, &secrets).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");

        let cases = [
            text.replace("quorum = 3", "quorum = 2"),
            text.replace("role = \"cloud\"", "role = \"device\""),
            // Truncate the public key set by one point: a smaller quorum must not load.
            {
                let d = &genesis.domains[0];
                let full = hex::encode(&d.public_key_set);
                text.replace(&full, &full[..full.len() - 96])
            },
            text.replace("version = 1", "version = 9"),
            "not toml at all [[[".to_string(),
        ];
        for (i, case) in cases.iter().enumerate() {
            let p = dir.path().join(format!("bad{i}.toml"));
            std::fs::write(&p, case).expect("write");
            let err = load(&p).expect_err("must fail").to_string();
            assert!(err.contains(&format!("bad{i}.toml")), "{err}");
            assert!(err.contains("lcbft genesis"), "{err}");
            assert!(!err.contains('\n'), "case {i}: {err}");
        }
        let p = dir.path().join("bad-domain.toml");
        std::fs::write(&p, text.replace("id = \"global\"", "id = \"galaxy\"")).expect("write");
        let err = load(&p).expect_err("must fail").to_string();
        assert!(
            err.contains("'galaxy' is not a domain: expected 'global' or 'local/<id>'"),
            "{err}"
        );
        let missing = load(&dir.path().join("nope.toml"))
            .expect_err("missing")
            .to_string();
        assert!(
            missing.contains("nope.toml") && missing.contains("does not exist"),
            "{missing}"
        );
    }

    #[test]
    fn a_local_domain_needs_its_edge_in_the_global_domain_roles() {
        let g = peers(4);
        let outsider = peers(1)[0];
        let req = Request {
            scheme: SchemeId::ThresholdCrypto,
            payload: PayloadKind::Traces,
            global: vec![],
            locals: vec![],
        };
        assert!(deal(&req).is_err());
        let err = deal(&request(&g, Some((outsider, g[1..].to_vec()))))
            .expect_err("edge outside the global domain")
            .to_string();
        assert!(err.contains("not a global member"), "{err}");
        let (genesis, _) = deal(&request(&g, Some((g[3], peers(3))))).expect("deal");
        assert_eq!(genesis.domain(DomainId::Local(1)).map(|d| d.n()), Some(4));
    }
}
