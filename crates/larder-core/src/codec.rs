//! Codecs (serde formats) and the value envelope.
//!
//! Every stored value starts with a 16-byte header:
//!
//! | bytes | field |
//! |---|---|
//! | 0..2 | magic `0xFF 'L'` (0xFF never starts UTF-8 text or JSON) |
//! | 2 | envelope format version (1) |
//! | 3 | codec id (0 raw bytes, 1 JSON, 2 MessagePack, 3 postcard, 4 bincode) |
//! | 4 | flags (1 compressed, 2 encrypted, 4 signed; see [`crate::seal`]) |
//! | 5..8 | how long the value took to load, in milliseconds (24 bits, saturating); 0 = unknown |
//! | 8..16 | `fresh_until`, milliseconds since the Unix epoch, little endian; 0 = none |
//!
//! The payload follows. A value is decoded with the codec named in its own
//! header, so changing the default codec does not strand older entries.
//! Raw values (`Cache::set_raw`) carry their bytes unchanged after the
//! header. Counters written by `incr` are plain decimal text without a
//! header and decode as integers. No codec can run code on decode.
//!
//! A value with flags set is sealed: [`crate::seal::Sealer::open`] verifies,
//! decrypts and decompresses it back into a plain envelope (flags 0) that
//! [`decode`] and [`parse`] read; they refuse sealed bytes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::{Error, Result};

/// Length of the envelope header.
pub const HEADER_LEN: usize = 16;
pub(crate) const MAGIC: [u8; 2] = [0xFF, b'L'];
const FORMAT_VERSION: u8 = 1;

/// Envelope flag: payload is compressed.
pub const FLAG_COMPRESSED: u8 = 1;
/// Envelope flag: payload is encrypted.
pub const FLAG_ENCRYPTED: u8 = 2;
/// Envelope flag: payload is signed.
pub const FLAG_SIGNED: u8 = 4;

/// The serde format values are stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Codec {
    /// JSON: readable in `redis-cli`, interoperable. The default.
    #[default]
    Json,
    /// MessagePack (feature `msgpack`): compact, self-describing.
    #[cfg(feature = "msgpack")]
    #[serde(alias = "messagepack")]
    Msgpack,
    /// postcard (feature `postcard`): the most compact, not self-describing.
    #[cfg(feature = "postcard")]
    Postcard,
    /// bincode 2.x (feature `bincode`): unmaintained upstream, prefer postcard.
    #[cfg(feature = "bincode")]
    Bincode,
}

const RAW_ID: u8 = 0;
const JSON_ID: u8 = 1;
const MSGPACK_ID: u8 = 2;
const POSTCARD_ID: u8 = 3;
const BINCODE_ID: u8 = 4;

impl Codec {
    /// The codec's name (`json`, `msgpack`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Codec::Json => "json",
            #[cfg(feature = "msgpack")]
            Codec::Msgpack => "msgpack",
            #[cfg(feature = "postcard")]
            Codec::Postcard => "postcard",
            #[cfg(feature = "bincode")]
            Codec::Bincode => "bincode",
        }
    }

    /// The id written in the envelope header.
    pub fn id(self) -> u8 {
        match self {
            Codec::Json => JSON_ID,
            #[cfg(feature = "msgpack")]
            Codec::Msgpack => MSGPACK_ID,
            #[cfg(feature = "postcard")]
            Codec::Postcard => POSTCARD_ID,
            #[cfg(feature = "bincode")]
            Codec::Bincode => BINCODE_ID,
        }
    }

    /// The codec with envelope id `id`, or an error that names the cargo
    /// feature to enable.
    pub fn from_id(id: u8) -> Result<Self> {
        match id {
            JSON_ID => Ok(Codec::Json),
            #[cfg(feature = "msgpack")]
            MSGPACK_ID => Ok(Codec::Msgpack),
            #[cfg(not(feature = "msgpack"))]
            MSGPACK_ID => Err(missing("msgpack")),
            #[cfg(feature = "postcard")]
            POSTCARD_ID => Ok(Codec::Postcard),
            #[cfg(not(feature = "postcard"))]
            POSTCARD_ID => Err(missing("postcard")),
            #[cfg(feature = "bincode")]
            BINCODE_ID => Ok(Codec::Bincode),
            #[cfg(not(feature = "bincode"))]
            BINCODE_ID => Err(missing("bincode")),
            other => Err(Error::Codec {
                codec: "envelope",
                message: format!("unknown codec id {other} in the value header"),
            }),
        }
    }

    fn error(self, message: impl std::fmt::Display) -> Error {
        Error::Codec {
            codec: self.name(),
            message: message.to_string(),
        }
    }

    fn encode_into<T: Serialize + ?Sized>(self, out: &mut Vec<u8>, value: &T) -> Result<()> {
        match self {
            Codec::Json => serde_json::to_writer(out, value).map_err(|e| self.error(e)),
            #[cfg(feature = "msgpack")]
            Codec::Msgpack => rmp_serde::encode::write_named(out, value).map_err(|e| self.error(e)),
            #[cfg(feature = "postcard")]
            Codec::Postcard => {
                let taken = std::mem::take(out);
                *out = postcard::to_extend(value, taken).map_err(|e| self.error(e))?;
                Ok(())
            }
            #[cfg(feature = "bincode")]
            Codec::Bincode => {
                bincode::serde::encode_into_std_write(value, out, bincode::config::standard())
                    .map(drop)
                    .map_err(|e| self.error(e))
            }
        }
    }

    /// Decode a payload (the bytes after the envelope header) as `T`.
    pub fn decode_payload<T: DeserializeOwned>(self, payload: &[u8]) -> Result<T> {
        match self {
            Codec::Json => serde_json::from_slice(payload).map_err(|e| self.error(e)),
            #[cfg(feature = "msgpack")]
            Codec::Msgpack => rmp_serde::from_slice(payload).map_err(|e| self.error(e)),
            #[cfg(feature = "postcard")]
            Codec::Postcard => postcard::from_bytes(payload).map_err(|e| self.error(e)),
            #[cfg(feature = "bincode")]
            Codec::Bincode => {
                let (value, used) =
                    bincode::serde::decode_from_slice(payload, bincode::config::standard())
                        .map_err(|e| self.error(e))?;
                if used != payload.len() {
                    return Err(self.error("trailing bytes after the value"));
                }
                Ok(value)
            }
        }
    }
}

/// The error for a value stored with a codec whose feature is off.
#[cfg_attr(
    all(feature = "msgpack", feature = "postcard", feature = "bincode"),
    allow(dead_code)
)]
fn missing(name: &'static str) -> Error {
    Error::Codec {
        codec: name,
        message: format!(
            "the value was stored with {name}; enable the `{name}` feature of larder to read it"
        ),
    }
}

/// How a stored payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Format {
    /// Bytes stored unchanged (`Cache::set_raw`).
    Raw,
    /// A serde value in this codec.
    Codec(Codec),
    /// A decimal integer written by `incr`, without a header.
    Counter,
}

impl Format {
    /// `raw`, `counter`, or the codec's name.
    pub fn name(self) -> &'static str {
        match self {
            Format::Raw => "raw",
            Format::Codec(c) => c.name(),
            Format::Counter => "counter",
        }
    }
}

/// The header fields of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Encoding of the payload ([`Format::Raw`] or [`Format::Codec`]).
    pub format: Format,
    /// Flag bits (`FLAG_*`).
    pub flags: u8,
    /// End of the fresh window, when one was set (early refresh and
    /// stale-while-revalidate).
    pub fresh_until: Option<SystemTime>,
    /// How long the value took to load, when known (for probabilistic early
    /// refresh).
    pub load_time: Option<Duration>,
}

fn push_header(out: &mut Vec<u8>, id: u8, fresh_until: Option<SystemTime>, load_time: Duration) {
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(id);
    out.push(0);
    let load_ms = u32::try_from(load_time.as_millis())
        .unwrap_or(u32::MAX)
        .min(0x00FF_FFFF);
    out.extend_from_slice(&load_ms.to_le_bytes()[..3]);
    let millis = fresh_until
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        });
    out.extend_from_slice(&millis.to_le_bytes());
}

/// Encode `value` with `codec` behind an envelope header.
pub fn encode<T: Serialize + ?Sized>(
    codec: Codec,
    value: &T,
    fresh_until: Option<SystemTime>,
) -> Result<Bytes> {
    encode_timed(codec, value, fresh_until, Duration::ZERO)
}

/// [`encode`], recording how long the value took to load.
pub fn encode_timed<T: Serialize + ?Sized>(
    codec: Codec,
    value: &T,
    fresh_until: Option<SystemTime>,
    load_time: Duration,
) -> Result<Bytes> {
    let mut out = Vec::with_capacity(64);
    push_header(&mut out, codec.id(), fresh_until, load_time);
    codec.encode_into(&mut out, value)?;
    Ok(Bytes::from(out))
}

/// `payload` unchanged behind an envelope header that marks it raw.
pub fn encode_raw(payload: &[u8], fresh_until: Option<SystemTime>) -> Bytes {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    push_header(&mut out, RAW_ID, fresh_until, Duration::ZERO);
    out.extend_from_slice(payload);
    Bytes::from(out)
}

/// Read the header of stored bytes. `Ok(None)` for bytes without a header
/// (counters).
pub fn header(bytes: &[u8]) -> Result<Option<Header>> {
    if bytes.len() < 2 || bytes[..2] != MAGIC {
        return Ok(None);
    }
    let invalid = |message: String| Error::Codec {
        codec: "envelope",
        message,
    };
    if bytes.len() < HEADER_LEN {
        return Err(invalid(format!(
            "value header is truncated ({} of {HEADER_LEN} bytes)",
            bytes.len()
        )));
    }
    if bytes[2] != FORMAT_VERSION {
        return Err(invalid(format!(
            "envelope format version {} is newer than this larder understands ({FORMAT_VERSION}); upgrade larder",
            bytes[2]
        )));
    }
    let format = match bytes[3] {
        RAW_ID => Format::Raw,
        id => Format::Codec(Codec::from_id(id)?),
    };
    let flags = bytes[4];
    if flags & !(FLAG_COMPRESSED | FLAG_ENCRYPTED | FLAG_SIGNED) != 0 {
        return Err(invalid(format!(
            "unknown value flags {flags:#04x}; the value was written by a newer larder: upgrade"
        )));
    }
    let mut millis = [0u8; 8];
    millis.copy_from_slice(&bytes[8..16]);
    let millis = u64::from_le_bytes(millis);
    let fresh_until = (millis != 0).then(|| UNIX_EPOCH + Duration::from_millis(millis));
    let load_ms = u32::from_le_bytes([bytes[5], bytes[6], bytes[7], 0]);
    let load_time = (load_ms != 0).then(|| Duration::from_millis(u64::from(load_ms)));
    Ok(Some(Header {
        format,
        flags,
        fresh_until,
        load_time,
    }))
}

fn foreign(bytes: &[u8]) -> Error {
    Error::Codec {
        codec: "envelope",
        message: format!(
            "stored bytes are not a larder value (no header; {} bytes); was the key written by another program?",
            bytes.len()
        ),
    }
}

/// Decode stored bytes into `T`, with the header when there was one.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<(T, Option<Header>)> {
    match header(bytes)? {
        Some(h) if h.flags != 0 => Err(sealed(h.flags)),
        Some(h) => match h.format {
            Format::Codec(codec) => Ok((codec.decode_payload(&bytes[HEADER_LEN..])?, Some(h))),
            _ => Err(raw_is_not_typed()),
        },
        None if is_counter(bytes) => Ok((Codec::Json.decode_payload(bytes)?, None)),
        None => Err(foreign(bytes)),
    }
}

/// The error for sealed bytes given to [`decode`] or [`parse`].
fn sealed(flags: u8) -> Error {
    Error::Codec {
        codec: "envelope",
        message: format!(
            "the value is sealed (flags {flags:#04x}: compressed, encrypted or signed); read it \
             through a Cache, or open it with larder_core::seal::Sealer first"
        ),
    }
}

pub(crate) fn raw_is_not_typed() -> Error {
    Error::Codec {
        codec: "raw",
        message: "the value was stored as raw bytes (set_raw); read it with get_raw".into(),
    }
}

/// A stored value taken apart without decoding its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// How the payload is encoded.
    pub format: Format,
    /// The payload: serde bytes, raw bytes, or the counter's digits.
    pub payload: Bytes,
    /// End of the fresh window, when one was set.
    pub fresh_until: Option<SystemTime>,
}

/// Take stored bytes apart: header, payload, format. Bytes that are neither
/// an envelope nor a counter are an error.
pub fn parse(bytes: Bytes) -> Result<Parsed> {
    match header(&bytes)? {
        Some(h) if h.flags != 0 => Err(sealed(h.flags)),
        Some(h) => Ok(Parsed {
            format: h.format,
            payload: bytes.slice(HEADER_LEN..),
            fresh_until: h.fresh_until,
        }),
        None if is_counter(&bytes) => Ok(Parsed {
            format: Format::Counter,
            payload: bytes,
            fresh_until: None,
        }),
        None => Err(foreign(&bytes)),
    }
}

/// Whether `bytes` are a decimal integer as `incr` writes them.
pub fn is_counter(bytes: &[u8]) -> bool {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    !digits.is_empty() && digits.len() <= 20 && digits.iter().all(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct User {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    fn user() -> User {
        User {
            id: 7,
            name: "Ada".into(),
            tags: vec!["a".into()],
        }
    }

    fn all_codecs() -> Vec<Codec> {
        #[allow(unused_mut)]
        let mut v = vec![Codec::Json];
        #[cfg(feature = "msgpack")]
        v.push(Codec::Msgpack);
        #[cfg(feature = "postcard")]
        v.push(Codec::Postcard);
        #[cfg(feature = "bincode")]
        v.push(Codec::Bincode);
        v
    }

    #[test]
    fn roundtrip_every_codec() {
        let fresh = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        for codec in all_codecs() {
            let bytes =
                encode_timed(codec, &user(), Some(fresh), Duration::from_millis(1234)).unwrap();
            let (back, header) = decode::<User>(&bytes).unwrap();
            assert_eq!(back, user(), "{codec:?}");
            let header = header.unwrap();
            assert_eq!(header.format, Format::Codec(codec));
            assert_eq!(header.fresh_until, Some(fresh));
            assert_eq!(header.load_time, Some(Duration::from_millis(1234)));
        }
    }

    #[test]
    fn json_payload_is_readable() {
        let bytes = encode(Codec::Json, &user(), None).unwrap();
        assert_eq!(
            &bytes[HEADER_LEN..],
            br#"{"id":7,"name":"Ada","tags":["a"]}"#
        );
        assert_eq!(header(&bytes).unwrap().unwrap().fresh_until, None);
    }

    #[test]
    fn raw_values_keep_their_bytes() {
        let bytes = encode_raw(b"\x00\xffanything", None);
        let parsed = parse(bytes.clone()).unwrap();
        assert_eq!(parsed.format, Format::Raw);
        assert_eq!(&parsed.payload[..], b"\x00\xffanything");
        let err = decode::<Vec<u8>>(&bytes).unwrap_err().to_string();
        assert!(err.contains("get_raw"), "{err}");
        assert_eq!(
            parse(Bytes::from_static(b"-12")).unwrap().format,
            Format::Counter
        );
        assert!(parse(Bytes::from_static(b"junk")).is_err());
    }

    #[test]
    fn counters_decode_as_integers() {
        assert_eq!(decode::<i64>(b"-42").unwrap().0, -42);
        assert!(decode::<i64>(b"4x").is_err());
        assert!(!is_counter(b"-"));
        assert!(!is_counter(b""));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &b"hello"[..],
            &[0xFF, b'L'][..],
            &[0xFF, b'L', 9, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[0xFF, b'L', 1, 99, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[0xFF, b'L', 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
            &[0xFF, b'L', 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'{'][..],
        ] {
            let err = decode::<User>(bad).unwrap_err();
            assert_eq!(err.kind(), "codec", "{bad:?}");
        }
        let bytes = encode(Codec::Json, &user(), None).unwrap();
        assert!(decode::<u64>(&bytes).is_err(), "type mismatch is an error");
    }
}
