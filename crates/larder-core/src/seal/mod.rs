//! Values nobody can forge or read: signing (HMAC-SHA256), encryption
//! (AES-256-GCM) and compression (LZ4) of the value envelope.
//!
//! A value is serialized, then compressed (when larger than
//! [`SecurityConfig::compress_min_size`] and only when that shrinks it),
//! then encrypted or signed. The envelope header's flags say which was
//! done; what follows the 16-byte header is then:
//!
//! | part | when | bytes |
//! |---|---|---|
//! | key id | signed or encrypted | 1 length byte (1..=32), the id |
//! | nonce | encrypted | 12 random bytes, new for every value |
//! | body | always | the payload; when compressed, its original length (u32 LE) then the LZ4 block; when encrypted, all of this encrypted, followed by the 16-byte GCM tag |
//! | MAC | signed | HMAC-SHA256 (32 bytes) |
//!
//! Both the MAC and the encryption's associated data cover the header (its
//! flags, fresh window and load time), the key id, and the **full stored
//! key** followed by its length: a valid value copied to another key does
//! not verify there. MACs are compared in constant time.
//!
//! When encryption keys are configured new values are encrypted only
//! (AES-GCM authenticates them); signing keys then still verify values
//! written signed. A cache with any key configured accepts only values it
//! can authenticate, unless [`SecurityConfig::allow_unsigned`] is on
//! (while rolling signing out). Counters written by `incr` are plain
//! decimal text the backend increments; they are never signed, and decode
//! only as numbers.
//!
//! Decompression never produces more than `max_value_size` bytes: the
//! original length is read first and checked against the limit.

pub mod keys;

use std::fmt;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, Generate, KeyInit, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use keys::{KeyRing, SecretKey};

use crate::codec::{FLAG_COMPRESSED, FLAG_ENCRYPTED, FLAG_SIGNED, HEADER_LEN, MAGIC};
use crate::error::{Error, Result};

/// Default compression threshold: payloads of at least 1 KiB are compressed.
pub const DEFAULT_COMPRESS_MIN_SIZE: usize = 1024;

const NONCE_LEN: usize = 12;
const GCM_TAG_LEN: usize = 16;
const MAC_LEN: usize = 32;
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_SIGNED;

/// The `[security]` settings: keys, compression, and whether unsigned
/// values are still accepted. Secrets never appear in `Debug` or in the
/// serialized form (`id:<redacted>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    /// HMAC-SHA256 keys (`LARDER_SIGNING_KEYS`): the first signs new
    /// values, all verify.
    pub signing_keys: KeyRing,
    /// AES-256-GCM keys (`LARDER_ENCRYPTION_KEYS`), exactly 32 bytes each:
    /// the first encrypts new values, all decrypt.
    pub encryption_keys: KeyRing,
    /// Accept values that are neither signed nor encrypted even though keys
    /// are configured (default off). Turn it on only while enabling signing
    /// on a cache that already holds unsigned values.
    pub allow_unsigned: bool,
    /// Compress payloads of at least this many bytes (default 1 KiB);
    /// `None` turns compression off. A payload that would not shrink is
    /// stored as it is.
    pub compress_min_size: Option<usize>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            signing_keys: KeyRing::new(),
            encryption_keys: KeyRing::new(),
            allow_unsigned: false,
            compress_min_size: Some(DEFAULT_COMPRESS_MIN_SIZE),
        }
    }
}

impl SecurityConfig {
    /// Check the keys: AES-256 keys must be exactly 32 bytes.
    pub fn validate(&self, source: &str) -> Result<()> {
        for key in self.encryption_keys.keys() {
            if key.secret().len() != 32 {
                return Err(Error::config(
                    format!("encryption key {:?}", key.id()),
                    source,
                    "exactly 32 bytes (AES-256); generate one with `openssl rand -base64 32`",
                    format!("{} bytes ({})", key.secret().len(), keys::REDACTED),
                ));
            }
        }
        Ok(())
    }

    /// Whether any key is configured.
    pub fn has_keys(&self) -> bool {
        !self.signing_keys.is_empty() || !self.encryption_keys.is_empty()
    }
}

/// The sealing side of a cache: what its settings say to do to every value
/// written and read. Built once per cache (ciphers and MAC keys are
/// prepared then).
#[derive(Clone)]
pub struct Sealer {
    signers: Vec<(String, Hmac<Sha256>)>,
    ciphers: Vec<(String, Aes256Gcm)>,
    require: bool,
    compress_min_size: Option<usize>,
    max_value_size: usize,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("signing_key_ids", &ids_of(&self.signers))
            .field("encryption_key_ids", &ids_of(&self.ciphers))
            .field("require", &self.require)
            .field("compress_min_size", &self.compress_min_size)
            .field("max_value_size", &self.max_value_size)
            .finish()
    }
}

fn ids_of<T>(v: &[(String, T)]) -> Vec<&str> {
    v.iter().map(|(id, _)| id.as_str()).collect()
}

/// A value that failed its integrity check (the error kind `integrity`).
fn integrity(reason: impl Into<String>) -> Error {
    Error::Integrity {
        reason: reason.into(),
    }
}

fn malformed(reason: impl Into<String>) -> Error {
    Error::Codec {
        codec: "envelope",
        message: reason.into(),
    }
}

impl Sealer {
    /// A sealer for `config`, decompressing at most `max_value_size` bytes.
    /// Keys that do not fit their algorithm (see
    /// [`SecurityConfig::validate`]) are an error.
    pub fn new(config: &SecurityConfig, max_value_size: usize) -> Result<Self> {
        config.validate("the configuration")?;
        let mut signers = Vec::new();
        for key in config.signing_keys.keys() {
            let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.secret()).map_err(|_| {
                Error::config(
                    "signing key",
                    "the configuration",
                    "a valid HMAC key",
                    keys::REDACTED,
                )
            })?;
            signers.push((key.id().to_owned(), mac));
        }
        let mut ciphers = Vec::new();
        for key in config.encryption_keys.keys() {
            let cipher = Aes256Gcm::new_from_slice(key.secret()).map_err(|_| {
                Error::config(
                    "encryption key",
                    "the configuration",
                    "exactly 32 bytes",
                    keys::REDACTED,
                )
            })?;
            ciphers.push((key.id().to_owned(), cipher));
        }
        Ok(Sealer {
            require: config.has_keys() && !config.allow_unsigned,
            signers,
            ciphers,
            compress_min_size: config.compress_min_size,
            max_value_size,
        })
    }

    /// A sealer that only compresses (the default settings).
    pub fn plain(max_value_size: usize) -> Self {
        Sealer {
            signers: Vec::new(),
            ciphers: Vec::new(),
            require: false,
            compress_min_size: Some(DEFAULT_COMPRESS_MIN_SIZE),
            max_value_size,
        }
    }

    /// Whether values must be signed or encrypted to be read.
    pub fn requires_integrity(&self) -> bool {
        self.require
    }

    /// Seal an envelope (header and payload, no flags) for `stored_key`:
    /// compress, then encrypt or sign, as configured. Bytes without an
    /// envelope header are returned unchanged.
    pub fn seal(&self, stored_key: &str, plain: bytes::Bytes) -> Result<bytes::Bytes> {
        if plain.len() < HEADER_LEN || plain[..2] != MAGIC || plain[4] != 0 {
            return Ok(plain);
        }
        let payload = &plain[HEADER_LEN..];
        let compressed = match self.compress_min_size {
            Some(min) if payload.len() >= min && u32::try_from(payload.len()).is_ok() => {
                let block = lz4_flex::block::compress(payload);
                (block.len() + 4 < payload.len()).then_some(block)
            }
            _ => None,
        };
        let cipher = self.ciphers.first();
        let signer = self.signers.first().filter(|_| cipher.is_none());
        if compressed.is_none() && cipher.is_none() && signer.is_none() {
            return Ok(plain);
        }
        let mut flags = 0;
        if compressed.is_some() {
            flags |= FLAG_COMPRESSED;
        }
        if cipher.is_some() {
            flags |= FLAG_ENCRYPTED;
        }
        if signer.is_some() {
            flags |= FLAG_SIGNED;
        }
        let body_len = compressed.as_ref().map_or(payload.len(), |c| c.len() + 4);
        let mut out =
            Vec::with_capacity(HEADER_LEN + 34 + NONCE_LEN + body_len + GCM_TAG_LEN + MAC_LEN);
        out.extend_from_slice(&plain[..HEADER_LEN]);
        out[4] = flags;
        let key_id = cipher.map(|(id, _)| id).or(signer.map(|(id, _)| id));
        if let Some(id) = key_id {
            // Ids are checked to be 1..=32 bytes when parsed.
            out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(id.as_bytes());
        }
        let nonce = match cipher {
            Some(_) => {
                let nonce = Nonce::<Aes256Gcm>::try_generate().map_err(|e| {
                    integrity(format!("the system random number generator failed: {e}"))
                })?;
                out.extend_from_slice(&nonce);
                Some(nonce)
            }
            None => None,
        };
        let body_start = out.len();
        match &compressed {
            Some(block) => {
                let original = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                out.extend_from_slice(&original.to_le_bytes());
                out.extend_from_slice(block);
            }
            None => out.extend_from_slice(payload),
        }
        if let (Some((_, cipher)), Some(nonce)) = (cipher, nonce) {
            let aad = associated_data(&out[..body_start], stored_key);
            let (_, body) = out.split_at_mut(body_start);
            let tag = cipher
                .encrypt_inout_detached(&nonce, &aad, body.into())
                .map_err(|_| malformed("the value is too large to encrypt"))?;
            out.extend_from_slice(&tag);
        } else if let Some((_, mac)) = signer {
            let tag = mac_of(mac, &out, stored_key);
            out.extend_from_slice(&tag);
        }
        Ok(bytes::Bytes::from(out))
    }

    /// Open stored bytes read under `stored_key`: verify or decrypt, then
    /// decompress. `Ok(None)`: use the bytes as they are (no flags, or not
    /// an envelope: counters and foreign bytes are left to the decoder).
    /// A value that fails authentication, or that is not authenticated on
    /// a cache that requires it, is an [`Error::Integrity`].
    pub fn open(&self, stored_key: &str, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
        if bytes.len() < 5 || bytes[..2] != MAGIC {
            return Ok(None);
        }
        let flags = bytes[4];
        if flags == 0 {
            if self.require {
                return Err(integrity(
                    "the value is neither signed nor encrypted, and this cache requires one \
                     (it has keys configured; set `security.allow_unsigned` while rolling \
                     signing out)",
                ));
            }
            return Ok(None);
        }
        if bytes.len() < HEADER_LEN {
            return Err(malformed(format!(
                "value header is truncated ({} of {HEADER_LEN} bytes)",
                bytes.len()
            )));
        }
        if flags & !KNOWN_FLAGS != 0 {
            return Err(malformed(format!(
                "unknown value flags {flags:#04x}; upgrade larder"
            )));
        }
        let encrypted = flags & FLAG_ENCRYPTED != 0;
        let signed = flags & FLAG_SIGNED != 0;
        if encrypted && signed {
            return Err(integrity("a value cannot be both signed and encrypted"));
        }
        let mut pos = HEADER_LEN;
        let decrypted;
        let body: &[u8] = if encrypted || signed {
            let id = read_id(bytes, &mut pos)?;
            if encrypted {
                let Some((_, cipher)) = self.ciphers.iter().find(|(k, _)| k.as_bytes() == id)
                else {
                    return Err(unknown_key(id, "encryption", self.ciphers.is_empty()));
                };
                let Some(nonce) = bytes.get(pos..pos + NONCE_LEN) else {
                    return Err(integrity("the encrypted value is truncated (no nonce)"));
                };
                pos += NONCE_LEN;
                if bytes.len() < pos + GCM_TAG_LEN {
                    return Err(integrity("the encrypted value is truncated (no tag)"));
                }
                let aad = associated_data(&bytes[..pos], stored_key);
                let split = bytes.len() - GCM_TAG_LEN;
                let mut buffer = bytes[pos..split].to_vec();
                let nonce = Nonce::<Aes256Gcm>::try_from(nonce)
                    .map_err(|_| integrity("bad nonce length"))?;
                let tag = aes_gcm::aead::Tag::<Aes256Gcm>::try_from(&bytes[split..])
                    .map_err(|_| integrity("bad tag length"))?;
                cipher
                    .decrypt_inout_detached(&nonce, &aad, buffer.as_mut_slice().into(), &tag)
                    .map_err(|_| {
                        integrity(
                            "decryption failed: the value was altered, written for another key, \
                             or encrypted with a different secret under the same key id",
                        )
                    })?;
                decrypted = buffer;
                &decrypted
            } else {
                let Some((_, mac)) = self.signers.iter().find(|(k, _)| k.as_bytes() == id) else {
                    return Err(unknown_key(id, "signing", self.signers.is_empty()));
                };
                if bytes.len() < pos + MAC_LEN {
                    return Err(integrity("the signed value is truncated (no MAC)"));
                }
                let split = bytes.len() - MAC_LEN;
                let expected = mac_of(mac, &bytes[..split], stored_key);
                if !bool::from(expected.as_slice().ct_eq(&bytes[split..])) {
                    return Err(integrity(
                        "the signature does not match: the value was altered, written for \
                         another key, or signed with a different secret under the same key id",
                    ));
                }
                &bytes[pos..split]
            }
        } else {
            if self.require {
                return Err(integrity(
                    "the value is compressed but neither signed nor encrypted, and this cache \
                     requires one",
                ));
            }
            &bytes[pos..]
        };
        let mut out = Vec::new();
        out.extend_from_slice(&bytes[..HEADER_LEN]);
        out[4] = 0;
        if flags & FLAG_COMPRESSED != 0 {
            decompress_into(body, &mut out, self.max_value_size)?;
        } else {
            out.extend_from_slice(body);
        }
        Ok(Some(out))
    }
}

fn unknown_key(id: &[u8], purpose: &str, none: bool) -> Error {
    let id = String::from_utf8_lossy(id);
    if none {
        integrity(format!(
            "the value is {} with key {id:?}, and this cache has no {purpose} keys; configure \
             them (LARDER_{}_KEYS)",
            if purpose == "signing" {
                "signed"
            } else {
                "encrypted"
            },
            purpose.to_ascii_uppercase()
        ))
    } else {
        integrity(format!(
            "the value names {purpose} key {id:?}, which this cache does not list; keep retired \
             keys in the ring until their values have expired"
        ))
    }
}

/// The key id after the header, advancing `pos`.
fn read_id<'a>(bytes: &'a [u8], pos: &mut usize) -> Result<&'a [u8]> {
    let len = usize::from(*bytes.get(*pos).ok_or_else(|| integrity("no key id"))?);
    if len == 0 || len > keys::MAX_KEY_ID_LEN {
        return Err(integrity(format!("bad key id length {len}")));
    }
    let id = bytes
        .get(*pos + 1..*pos + 1 + len)
        .ok_or_else(|| integrity("the key id is truncated"))?;
    *pos += 1 + len;
    Ok(id)
}

/// What a MAC or the encryption binds besides the value: `prefix` (header
/// and key id, and for encryption the nonce), the stored key and its length.
fn associated_data(prefix: &[u8], stored_key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(prefix.len() + stored_key.len() + 8);
    aad.extend_from_slice(prefix);
    aad.extend_from_slice(stored_key.as_bytes());
    aad.extend_from_slice(&(stored_key.len() as u64).to_le_bytes());
    aad
}

fn mac_of(mac: &Hmac<Sha256>, signed: &[u8], stored_key: &str) -> [u8; MAC_LEN] {
    let mut mac = mac.clone();
    mac.update(signed);
    mac.update(stored_key.as_bytes());
    mac.update(&(stored_key.len() as u64).to_le_bytes());
    let mut out = [0u8; MAC_LEN];
    out.copy_from_slice(&mac.finalize().into_bytes());
    out
}

/// Decompress `body` (original length, then the LZ4 block) onto `out`,
/// refusing an original length over `limit` before allocating anything.
fn decompress_into(body: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<()> {
    let Some((len, block)) = body.split_first_chunk::<4>() else {
        return Err(malformed("the compressed value is truncated"));
    };
    let original = u32::from_le_bytes(*len) as usize;
    if original > limit {
        return Err(malformed(format!(
            "the value would decompress to {original} bytes, over the {limit}-byte \
             `max_value_size`; it was not decompressed"
        )));
    }
    let start = out.len();
    out.resize(start + original, 0);
    let written = lz4_flex::block::decompress_into(block, &mut out[start..])
        .map_err(|e| malformed(format!("the compressed value is corrupt: {e}")))?;
    if written != original {
        return Err(malformed(format!(
            "the compressed value decompressed to {written} bytes, not the {original} its \
             header records"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
