//! The one wire codec: CBOR (cbor4ii + serde) with a hard size bound checked before decoding.

use cbor4ii::core::dec::{Read, Reference};
use cbor4ii::core::utils::SliceReader;
use serde::{Serialize, de::DeserializeOwned};

/// Largest consensus message accepted: a block of payload plus certificates.
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("message of {len} bytes exceeds the {max}-byte bound")]
    TooLarge { len: usize, max: usize },
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    match cbor4ii::serde::to_vec(Vec::new(), value) {
        Ok(bytes) => bytes,
        // Writing to a Vec cannot fail and our types have no fallible Serialize impls.
        Err(e) => unreachable!("encoding into memory failed: {e}"),
    }
}

/// Decode `bytes` as one `T`, refusing anything longer than `max` or with trailing bytes.
pub fn decode<T: DeserializeOwned>(bytes: &[u8], max: usize) -> Result<T, CodecError> {
    if bytes.len() > max {
        return Err(CodecError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let mut de = cbor4ii::serde::Deserializer::new(SliceReader::new(bytes));
    let value = T::deserialize(&mut de).map_err(|e| CodecError::Malformed(e.to_string()))?;
    let mut reader = de.into_inner();
    let rest = match reader.fill(usize::MAX) {
        Ok(Reference::Long(b)) | Ok(Reference::Short(b)) => b.len(),
        Err(never) => match never {},
    };
    if rest != 0 {
        return Err(CodecError::Trailing(rest));
    }
    Ok(value)
}
