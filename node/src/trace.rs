//! Data traces (DESIGN §5): who (the producer's ed25519 key), when, where (domain), what
//! happened, by which application, the data's digest (and optionally a small body), and the
//! traces it was derived from. Signed by the producer; a trace's id is the hash of its
//! canonical CBOR encoding, the only encoding a block may carry (`Tx::id`).
//!
//! On the API it is JSON, `{"trace": {..}, "signature": "<hex>"}`, hex for every byte field.
//! What is signed is the canonical CBOR of the decoded fields, prefixed `lcbft1/trace`.

use lcbft_protocol::codec;
use lcbft_protocol::types::{DomainId, Tx};
use libp2p::identity::{Keypair, ed25519};
use serde::{Deserialize, Serialize};

pub const MAX_PARENTS: usize = 64;
pub const MAX_APPLICATION: usize = 128;
const SIGNING_PREFIX: &[u8] = b"lcbft1/trace";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
    #[error("the signature does not verify against the producer key")]
    BadSignature,
    #[error("trace body of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: usize, max: usize },
    #[error("not a trace: {0}")]
    Undecodable(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Generated,
    Processed,
    Derived,
    Consumed,
}

/// A trace as JSON carries it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceJson {
    /// The producer's ed25519 public key (32 bytes, hex).
    pub producer: String,
    /// Milliseconds since the Unix epoch, as the producer saw it.
    pub timestamp_ms: u64,
    /// `global` or `local/<id>`.
    pub domain: String,
    pub action: Action,
    pub application: String,
    /// blake3 digest of the data (32 bytes, hex).
    pub digest: String,
    /// The data itself when small (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Ids of the traces this one derives from (hex).
    #[serde(default)]
    pub parents: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedTraceJson {
    pub trace: TraceJson,
    /// ed25519 signature over the canonical encoding (64 bytes, hex).
    pub signature: String,
}

/// The decoded, canonical form: what is signed and (with the signature) what a block holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trace {
    pub producer: [u8; 32],
    pub timestamp_ms: u64,
    pub domain: DomainId,
    pub action: Action,
    pub application: String,
    pub digest: [u8; 32],
    #[serde(with = "serde_bytes")]
    pub body: Option<Vec<u8>>,
    pub parents: Vec<[u8; 32]>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedTrace {
    pub trace: Trace,
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

fn hex32(field: &'static str, s: &str) -> Result<[u8; 32], TraceError> {
    let bytes = hex::decode(s).map_err(|_| TraceError::Field {
        field,
        reason: "not hex".into(),
    })?;
    bytes.try_into().map_err(|_| TraceError::Field {
        field,
        reason: "must be 32 bytes".into(),
    })
}

impl Trace {
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = SIGNING_PREFIX.to_vec();
        out.extend(codec::encode(self));
        out
    }

    pub fn from_json(j: &TraceJson, max_body: usize) -> Result<Trace, TraceError> {
        let domain = j
            .domain
            .parse::<DomainId>()
            .map_err(|e| TraceError::Field {
                field: "domain",
                reason: e.to_string(),
            })?;
        if j.application.len() > MAX_APPLICATION {
            return Err(TraceError::Field {
                field: "application",
                reason: format!("longer than {MAX_APPLICATION} bytes"),
            });
        }
        let body = j
            .body
            .as_ref()
            .map(|b| {
                hex::decode(b).map_err(|_| TraceError::Field {
                    field: "body",
                    reason: "not hex".into(),
                })
            })
            .transpose()?;
        if let Some(b) = &body
            && b.len() > max_body
        {
            return Err(TraceError::TooLarge {
                len: b.len(),
                max: max_body,
            });
        }
        if j.parents.len() > MAX_PARENTS {
            return Err(TraceError::Field {
                field: "parents",
                reason: format!("more than {MAX_PARENTS}"),
            });
        }
        Ok(Trace {
            producer: hex32("producer", &j.producer)?,
            timestamp_ms: j.timestamp_ms,
            domain,
            action: j.action,
            application: j.application.clone(),
            digest: hex32("digest", &j.digest)?,
            body,
            parents: j
                .parents
                .iter()
                .map(|p| hex32("parents", p))
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn to_json(&self) -> TraceJson {
        TraceJson {
            producer: hex::encode(self.producer),
            timestamp_ms: self.timestamp_ms,
            domain: self.domain.to_string(),
            action: self.action,
            application: self.application.clone(),
            digest: hex::encode(self.digest),
            body: self.body.as_ref().map(hex::encode),
            parents: self.parents.iter().map(hex::encode).collect(),
        }
    }

    /// Sign with the producer's key (an `lcbft keygen` identity).
    pub fn sign(self, key: &Keypair) -> Result<SignedTrace, TraceError> {
        let kp = key
            .clone()
            .try_into_ed25519()
            .map_err(|_| TraceError::Field {
                field: "producer",
                reason: "the key is not ed25519".into(),
            })?;
        if kp.public().to_bytes() != self.producer {
            return Err(TraceError::Field {
                field: "producer",
                reason: "does not match the signing key".into(),
            });
        }
        let signature = kp.sign(&self.signing_bytes());
        Ok(SignedTrace {
            trace: self,
            signature,
        })
    }
}

impl SignedTrace {
    /// Parse and verify an API submission.
    pub fn from_json(j: &SignedTraceJson, max_body: usize) -> Result<SignedTrace, TraceError> {
        let trace = Trace::from_json(&j.trace, max_body)?;
        let signature = hex::decode(&j.signature).map_err(|_| TraceError::Field {
            field: "signature",
            reason: "not hex".into(),
        })?;
        let s = SignedTrace { trace, signature };
        s.verify()?;
        Ok(s)
    }

    pub fn verify(&self) -> Result<(), TraceError> {
        let key = ed25519::PublicKey::try_from_bytes(&self.trace.producer).map_err(|_| {
            TraceError::Field {
                field: "producer",
                reason: "not an ed25519 public key".into(),
            }
        })?;
        if key.verify(&self.trace.signing_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(TraceError::BadSignature)
        }
    }

    pub fn to_json(&self) -> SignedTraceJson {
        SignedTraceJson {
            trace: self.trace.to_json(),
            signature: hex::encode(&self.signature),
        }
    }

    pub fn to_tx(&self) -> Tx {
        Tx::new(codec::encode(self))
    }

    /// The parents a committed block item names, none if it is not a trace. The provenance
    /// index is written and pruned by this one reading. Unlike `from_tx` it does not encode the
    /// trace again to compare: that check was admission's, and repeating it for every item of
    /// every committed and anchored block was a tenth of a global validator's storage thread.
    pub fn parents_of(tx: &Tx) -> Vec<[u8; 32]> {
        codec::decode::<SignedTrace>(tx.bytes(), codec::MAX_MESSAGE_BYTES)
            .map(|s| s.trace.parents)
            .unwrap_or_default()
    }

    /// Decode a block item; only the canonical encoding is a trace, so one trace has one id.
    pub fn from_tx(tx: &Tx) -> Result<SignedTrace, TraceError> {
        let s: SignedTrace = codec::decode(tx.bytes(), codec::MAX_MESSAGE_BYTES)
            .map_err(|e| TraceError::Undecodable(e.to_string()))?;
        if codec::encode(&s) != tx.bytes() {
            return Err(TraceError::Undecodable("not in canonical encoding".into()));
        }
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(key: &Keypair) -> Trace {
        let producer = key
            .clone()
            .try_into_ed25519()
            .expect("ed25519")
            .public()
            .to_bytes();
        Trace {
            producer,
            timestamp_ms: 1_700_000_000_000,
            domain: DomainId::Local(3),
            action: Action::Derived,
            application: "thermo".into(),
            digest: *blake3::hash(b"21.5C").as_bytes(),
            body: Some(b"21.5C".to_vec()),
            parents: vec![[9; 32]],
        }
    }

    #[test]
    fn signed_trace_round_trips_through_json_and_tx() {
        let key = Keypair::generate_ed25519();
        let signed = sample(&key).sign(&key).expect("sign");
        let json = serde_json::to_string(&signed.to_json()).expect("json");
        let parsed: SignedTraceJson = serde_json::from_str(&json).expect("parse");
        let back = SignedTrace::from_json(&parsed, 1024).expect("verify");
        assert_eq!(back, signed);
        let tx = back.to_tx();
        assert_eq!(SignedTrace::from_tx(&tx).expect("from tx"), signed);
    }

    #[test]
    fn tampering_breaks_the_signature_and_bad_fields_are_named() {
        let key = Keypair::generate_ed25519();
        let mut j = sample(&key).sign(&key).expect("sign").to_json();
        j.trace.application = "other".into();
        assert_eq!(
            SignedTrace::from_json(&j, 1024),
            Err(TraceError::BadSignature)
        );

        let mut j2 = sample(&key).sign(&key).expect("sign").to_json();
        j2.trace.digest = "abcd".into();
        let err = SignedTrace::from_json(&j2, 1024).expect_err("short digest");
        assert!(err.to_string().contains("digest"), "{err}");

        let j3 = sample(&key).sign(&key).expect("sign").to_json();
        assert!(matches!(
            SignedTrace::from_json(&j3, 2),
            Err(TraceError::TooLarge { len: 5, max: 2 })
        ));
        assert!(SignedTrace::from_tx(&Tx::new(b"junk".to_vec())).is_err());
    }
}
