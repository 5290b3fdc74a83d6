//! Keys: validation, unambiguous rendering, namespacing, long-key hashing.
//!
//! A stored key is `{prefix}:{version}:{key}` (`svc:v1:user:42`). Keys are
//! checked before they reach a backend: an empty key or one holding a
//! control character is rejected, and so is one longer than the cache's
//! `max_key_length`. A stored key longer than [`MAX_STORED_KEY_LEN`] bytes is
//! replaced by a readable head and the SHA-256 of the whole key, the same way
//! on every backend, so a key that works on one backend works on all.
//!
//! When a key is built from values, use [`KeyBuilder`] (or [`escape_part`]):
//! it escapes the separator and template braces, so `("1:2", "3")` and
//! `("1", "2:3")` never render to the same key.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// The longest stored key (namespace included) kept verbatim; longer ones
/// are hashed. 250 is Memcached's limit, the smallest of the backends.
pub const MAX_STORED_KEY_LEN: usize = 250;

/// Default limit on the length of a key as given by the caller.
pub const DEFAULT_MAX_KEY_LENGTH: usize = 8 * 1024;

/// Longest prefix or version accepted.
const MAX_NAMESPACE_PART: usize = 64;

/// Escape one value for use as a key part: `%`, `:`, `{`, `}` and control
/// characters become `%XX`, everything else is kept.
///
/// ```
/// assert_eq!(larder_core::key::escape_part("a:b{c}%"), "a%3Ab%7Bc%7D%25");
/// ```
pub fn escape_part(part: &str) -> String {
    let mut out = String::with_capacity(part.len());
    push_escaped(&mut out, part);
    out
}

fn push_escaped(out: &mut String, part: &str) {
    for c in part.chars() {
        if matches!(c, '%' | ':' | '{' | '}') || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "%{b:02X}");
            }
        } else {
            out.push(c);
        }
    }
}

/// Escapes what is written through it into a key.
struct Escaping<'a>(&'a mut String);

impl std::fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        push_escaped(self.0, s);
        Ok(())
    }
}

/// Append the escaped display form of `value` to `out` (the `{param}` of a
/// key template).
pub fn push_part(out: &mut String, value: &dyn std::fmt::Display) {
    let _ = write!(Escaping(out), "{value}");
}

/// Append the escaped, lowercased display form of `value` (`{param|lower}`).
pub fn push_part_lower(out: &mut String, value: &dyn std::fmt::Display) {
    push_escaped(out, &value.to_string().to_lowercase());
}

/// Append the first 16 bytes of the SHA-256 of the display form of `value`,
/// in hex (`{param|hash}`): a fixed-length stand-in for large inputs.
pub fn push_part_hash(out: &mut String, value: &dyn std::fmt::Display) {
    let digest = Sha256::digest(value.to_string().as_bytes());
    for b in &digest[..16] {
        let _ = write!(out, "{b:02x}");
    }
}

/// `c` as `%XX` of its UTF-8 bytes.
fn push_percent(out: &mut String, c: char) {
    let mut buf = [0u8; 4];
    for b in c.encode_utf8(&mut buf).bytes() {
        let _ = write!(out, "%{b:02X}");
    }
}

/// [`push_escaped`], also escaping every character of `extra`.
fn push_escaped_extra(out: &mut String, part: &str, extra: &str) {
    let mut start = 0;
    for (at, c) in part.char_indices() {
        if extra.contains(c) {
            push_escaped(out, &part[start..at]);
            push_percent(out, c);
            start = at + c.len_utf8();
        }
    }
    push_escaped(out, &part[start..]);
}

/// Escapes what is written through it into a key, `extra` included.
struct EscapingExtra<'a> {
    out: &'a mut String,
    extra: &'a str,
}

impl std::fmt::Write for EscapingExtra<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        push_escaped_extra(self.out, s, self.extra);
        Ok(())
    }
}

/// Append the display form of `value` to `out`, escaping what
/// [`push_part`] escapes and also every character of `extra`, each as
/// `%XX` of its UTF-8 bytes.
///
/// Key templates whose placeholders are followed by a character other
/// than `:` pass it here (`"{a}-{b}"` passes `"-"`), so that no rendered
/// value holds the character that ends it and `("x-y", "z")` and
/// `("x", "y-z")` render to different keys.
///
/// ```
/// use larder_core::key::push_part_escaping;
/// let mut a = String::new();
/// push_part_escaping(&mut a, &"x-y", "-");
/// a.push('-');
/// push_part_escaping(&mut a, &"z", "-");
/// assert_eq!(a, "x%2Dy-z");
/// let mut b = String::new();
/// push_part_escaping(&mut b, &"x", "-");
/// b.push('-');
/// push_part_escaping(&mut b, &"y-z", "-");
/// assert_eq!(b, "x-y%2Dz");
/// ```
pub fn push_part_escaping(out: &mut String, value: &dyn std::fmt::Display, extra: &str) {
    let _ = write!(EscapingExtra { out, extra }, "{value}");
}

/// [`push_part_escaping`] of the lowercased display form of `value`
/// (`{param|lower}` in a template with other separators than `:`).
///
/// ```
/// use larder_core::key::push_part_escaping_lower;
/// let mut k = String::new();
/// push_part_escaping_lower(&mut k, &"A.B:C", ".");
/// assert_eq!(k, "a%2Eb%3Ac");
/// ```
pub fn push_part_escaping_lower(out: &mut String, value: &dyn std::fmt::Display, extra: &str) {
    push_escaped_extra(out, &value.to_string().to_lowercase(), extra);
}

/// Builds a key from parts joined by `:`, escaping each part.
///
/// ```
/// use larder_core::key::KeyBuilder;
/// let a = KeyBuilder::new("user").part("1:2").part("3").build();
/// let b = KeyBuilder::new("user").part("1").part("2:3").build();
/// assert_ne!(a, b);
/// assert_eq!(a, "user:1%3A2:3");
/// ```
#[derive(Debug, Clone)]
pub struct KeyBuilder {
    key: String,
}

impl KeyBuilder {
    /// Start a key with a literal head (not escaped: `user`, `org:users`).
    pub fn new(head: &str) -> Self {
        KeyBuilder {
            key: head.to_owned(),
        }
    }

    /// Append `:` and the escaped display form of `value`.
    pub fn part(mut self, value: impl std::fmt::Display) -> Self {
        if !self.key.is_empty() {
            self.key.push(':');
        }
        push_part(&mut self.key, &value);
        self
    }

    /// The key.
    pub fn build(self) -> String {
        self.key
    }
}

/// Check that `key` (as given by the caller) is usable.
pub fn validate(key: &str, max_len: usize) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid_key(key, "keys must not be empty"));
    }
    if key.len() > max_len {
        return Err(Error::invalid_key(
            key,
            format!(
                "key is {} bytes, over the {max_len}-byte limit; shorten it (hash large inputs \
                 with the `|hash` filter or KeyBuilder) or raise `max_key_length`",
                key.len()
            ),
        ));
    }
    if let Some((at, c)) = key.char_indices().find(|(_, c)| c.is_control()) {
        return Err(Error::invalid_key(
            key,
            format!(
                "control character {c:?} at byte {at}; build keys from values with \
                 larder::key::KeyBuilder, which escapes them"
            ),
        ));
    }
    Ok(())
}

/// `{head}#{sha256 hex}` for stored keys over [`MAX_STORED_KEY_LEN`];
/// shorter keys are returned as they are.
pub fn fit_length(stored: String) -> String {
    fit(stored, MAX_STORED_KEY_LEN, "")
}

/// The stored form of `stored` on a backend that takes keys of at most
/// `max_len` bytes (never more than [`MAX_STORED_KEY_LEN`]) without any
/// character of `forbidden`: the key itself when it fits, else a readable
/// head (forbidden characters shown as `_`) followed by `#` and the SHA-256
/// of the whole key. Distinct keys keep distinct stored forms.
///
/// ```
/// use larder_core::key::fit;
/// assert_eq!(fit("svc:v1:a b".into(), 250, ""), "svc:v1:a b");
/// let hashed = fit("svc:v1:a b".into(), 250, " ");
/// assert!(hashed.starts_with("svc:v1:a_b#") && !hashed.contains(' '));
/// assert_ne!(hashed, fit("svc:v1:a_b".into(), 250, " "));
/// ```
pub fn fit(stored: String, max_len: usize, forbidden: &str) -> String {
    let max_len = max_len.clamp(80, MAX_STORED_KEY_LEN);
    let clean = forbidden.is_empty() || !stored.contains(|c| forbidden.contains(c));
    if stored.len() <= max_len && clean {
        return stored;
    }
    let digest = Sha256::digest(stored.as_bytes());
    // head + '#' + 64 hex chars stays within the limit.
    let mut end = (max_len - 65).min(stored.len());
    while !stored.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = String::with_capacity(max_len);
    out.extend(
        stored[..end]
            .chars()
            .map(|c| if forbidden.contains(c) { '_' } else { c }),
    );
    out.push('#');
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Check a namespace part (`prefix` or `version`): 1 to 64 characters out
/// of `A-Z a-z 0-9 - _ .`.
pub fn validate_namespace_part(field: &str, value: &str, source: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= MAX_NAMESPACE_PART
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(Error::config(
            field,
            source,
            "1 to 64 characters out of A-Z a-z 0-9 - _ .",
            value,
        ))
    }
}

/// A cache's namespace: `{prefix}:{version}:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    prefix: String,
    version: String,
    head: String,
    max_key_length: usize,
    max_stored_len: usize,
    forbidden: &'static str,
}

impl Namespace {
    /// A namespace; `prefix` and `version` must pass
    /// [`validate_namespace_part`].
    pub fn new(prefix: &str, version: &str) -> Result<Self> {
        validate_namespace_part("prefix", prefix, "the cache builder")?;
        validate_namespace_part("version", version, "the cache builder")?;
        Ok(Namespace {
            prefix: prefix.to_owned(),
            version: version.to_owned(),
            head: format!("{prefix}:{version}:"),
            max_key_length: DEFAULT_MAX_KEY_LENGTH,
            max_stored_len: MAX_STORED_KEY_LEN,
            forbidden: "",
        })
    }

    /// The same namespace with another limit on caller key length.
    #[must_use]
    pub fn with_max_key_length(mut self, max: usize) -> Self {
        self.max_key_length = max;
        self
    }

    /// The same namespace for a backend whose stored keys must be at most
    /// `max_len` bytes and free of the characters in `forbidden` (see
    /// [`fit`]); from [`Capabilities`](crate::Capabilities).
    #[must_use]
    pub fn for_backend(mut self, max_len: Option<usize>, forbidden: &'static str) -> Self {
        self.max_stored_len = max_len.map_or(MAX_STORED_KEY_LEN, |m| m.min(MAX_STORED_KEY_LEN));
        self.forbidden = forbidden;
        self
    }

    /// The prefix (`svc`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The version (`v1`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `{prefix}:{version}:`, what every stored key and tag starts with.
    pub fn head(&self) -> &str {
        &self.head
    }

    /// The stored form of `key`, validated and fitted to length.
    pub fn key(&self, key: &str) -> Result<String> {
        validate(key, self.max_key_length)?;
        let mut stored = String::with_capacity(self.head.len() + key.len());
        stored.push_str(&self.head);
        stored.push_str(key);
        Ok(fit(stored, self.max_stored_len, self.forbidden))
    }

    /// The stored form of a tag. Tags follow the same rules as keys.
    pub fn tag(&self, tag: &str) -> Result<String> {
        self.key(tag)
    }

    /// The stored form of a glob pattern over this namespace's keys.
    pub fn pattern(&self, pattern: &str) -> Result<String> {
        if pattern.is_empty() {
            return Err(Error::invalid_key(
                pattern,
                "empty pattern; use `*` to match every key",
            ));
        }
        validate(pattern, self.max_key_length)?;
        let stored = format!("{}{pattern}", self.head);
        crate::glob::Glob::new(&stored)?;
        Ok(stored)
    }

    /// The caller's part of a stored key, if it belongs to this namespace.
    pub fn strip<'a>(&self, stored: &'a str) -> Option<&'a str> {
        stored.strip_prefix(self.head.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_never_collide() {
        let a = KeyBuilder::new("k").part("1:2").part("3").build();
        let b = KeyBuilder::new("k").part("1").part("2:3").build();
        assert_ne!(a, b);
        let c = KeyBuilder::new("k").part("{x}").build();
        assert_eq!(c, "k:%7Bx%7D");
        let d = KeyBuilder::new("k").part("%3A").build();
        assert_ne!(d, KeyBuilder::new("k").part(":").build());
        assert_eq!(escape_part("a\nb"), "a%0Ab");
        assert_eq!(escape_part("é"), "é");
        let mut k = String::new();
        push_part_lower(&mut k, &"Ab:C");
        assert_eq!(k, "ab%3Ac");
        let mut h = String::new();
        push_part_hash(&mut h, &"anything");
        assert_eq!(h.len(), 32);
    }

    #[test]
    fn extra_characters_are_escaped() {
        let render = |a: &str, b: &str, sep: char| {
            let extra = sep.to_string();
            let mut k = String::new();
            push_part_escaping(&mut k, &a, &extra);
            k.push(sep);
            push_part_escaping(&mut k, &b, &extra);
            k
        };
        for sep in ['-', '.', '/', '_', 'é', '2', 'A'] {
            let (x, y) = (format!("x{sep}y"), format!("y{sep}z"));
            assert_ne!(render(&x, "z", sep), render("x", &y, sep), "{sep}");
        }
        assert_eq!(render("x-y", "z", '-'), "x%2Dy-z");
        assert_eq!(render("a/b", "c", '/'), "a%2Fb/c");
        // Multi-byte characters escape every byte; the default set still
        // applies; characters outside both sets are kept.
        let mut k = String::new();
        push_part_escaping(&mut k, &"é:{x}%-ü\n", "é-");
        assert_eq!(k, "%C3%A9%3A%7Bx%7D%25%2Dü%0A");
        // An empty set is push_part.
        let (mut a, mut b) = (String::new(), String::new());
        push_part_escaping(&mut a, &"a:b-c", "");
        push_part(&mut b, &"a:b-c");
        assert_eq!(a, b);
        // Values written in several pieces are escaped the same.
        struct Pieces;
        impl std::fmt::Display for Pieces {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a-")?;
                f.write_str("b.")?;
                write!(f, "{}", 7)
            }
        }
        let mut p = String::new();
        push_part_escaping(&mut p, &Pieces, ".-");
        assert_eq!(p, "a%2Db%2E7");
        let mut l = String::new();
        push_part_escaping_lower(&mut l, &"X-Y", "-");
        assert_eq!(l, "x%2Dy");
    }

    #[test]
    fn namespacing() {
        let ns = Namespace::new("svc", "v1").unwrap();
        assert_eq!(ns.key("user:42").unwrap(), "svc:v1:user:42");
        assert_eq!(ns.strip("svc:v1:user:42"), Some("user:42"));
        assert_eq!(ns.strip("other:v1:user:42"), None);
        assert!(Namespace::new("s:v", "v1").is_err());
        assert!(Namespace::new("svc", "").is_err());
        assert!(Namespace::new("svc*", "v1").is_err());
    }

    #[test]
    fn rejects_bad_keys() {
        let ns = Namespace::new("svc", "v1").unwrap();
        assert!(matches!(ns.key(""), Err(Error::InvalidKey { .. })));
        let err = ns.key("a\u{7}b").unwrap_err().to_string();
        assert!(err.contains("control character"), "{err}");
        let long = "x".repeat(DEFAULT_MAX_KEY_LENGTH + 1);
        let err = ns.key(&long).unwrap_err().to_string();
        assert!(err.contains("8193 bytes"), "{err}");
        assert!(err.contains("max_key_length"), "{err}");
    }

    #[test]
    fn long_keys_are_hashed_stably() {
        let ns = Namespace::new("svc", "v1").unwrap();
        let long = "é".repeat(300);
        let a = ns.key(&long).unwrap();
        assert!(a.len() <= MAX_STORED_KEY_LEN, "{}", a.len());
        assert!(a.starts_with("svc:v1:éé"));
        assert_eq!(a, ns.key(&long).unwrap());
        let mut other = long.clone();
        other.push('x');
        assert_ne!(a, ns.key(&other).unwrap());
        // Keys at the limit stay readable.
        let exact = "k".repeat(MAX_STORED_KEY_LEN - ns.head().len());
        assert_eq!(ns.key(&exact).unwrap(), format!("svc:v1:{exact}"));
    }
}
