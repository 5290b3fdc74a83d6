//! Glob patterns for `invalidate_pattern` and `scan`, with Redis syntax.
//!
//! `*` matches any run of characters (including `:`), `?` one character,
//! `[abc]`, `[a-z]` and `[^a]` one character of a class, and `\` makes the
//! next character literal. Every other character, `.` `(` `{` `+` included,
//! is literal: there is no regex underneath. Matching works on Unicode
//! characters, so `?` matches `é` whole. Use [`escape`] to match a piece of
//! text literally.

use crate::error::{Error, Result};

/// Escape `text` so that it matches itself literally inside a pattern.
///
/// ```
/// use larder_core::glob::{escape, Glob};
/// let pattern = format!("{}*", escape("items[1]*"));
/// let glob = Glob::new(&pattern).unwrap();
/// assert!(glob.matches("items[1]*:x"));
/// assert!(!glob.matches("items1:x"));
/// ```
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A compiled glob pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Literal(l) => *l == c,
            Token::AnyOne => true,
            Token::AnyRun => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

impl Glob {
    /// Compile `pattern`. An unterminated class or a trailing `\` is an error.
    pub fn new(pattern: &str) -> Result<Self> {
        let invalid = |reason: &str| {
            Error::invalid_key(
                pattern,
                format!(
                    "bad glob pattern: {reason}; write a literal `[`, `*`, `?` or `\\` as `\\[`, `\\*`, `\\?`, `\\\\` (see larder::glob::escape)"
                ),
            )
        };
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' => {
                    if tokens.last() == Some(&Token::AnyRun) {
                        continue;
                    }
                    Token::AnyRun
                }
                '?' => Token::AnyOne,
                '\\' => Token::Literal(chars.next().ok_or_else(|| invalid("trailing `\\`"))?),
                '[' => {
                    let mut negated = false;
                    let mut ranges = Vec::new();
                    let mut first = true;
                    loop {
                        let mut c = chars.next().ok_or_else(|| invalid("unterminated `[`"))?;
                        if first && c == '^' {
                            negated = true;
                            first = false;
                            continue;
                        }
                        if c == ']' && !first {
                            break;
                        }
                        first = false;
                        if c == '\\' {
                            c = chars.next().ok_or_else(|| invalid("unterminated `[`"))?;
                        }
                        let mut rest = chars.clone();
                        if rest.next() == Some('-') {
                            match rest.next() {
                                Some(']') | None => ranges.push((c, c)),
                                Some(mut hi) => {
                                    if hi == '\\' {
                                        hi = rest
                                            .next()
                                            .ok_or_else(|| invalid("unterminated `[`"))?;
                                    }
                                    let (lo, hi) = if c <= hi { (c, hi) } else { (hi, c) };
                                    ranges.push((lo, hi));
                                    chars = rest;
                                }
                            }
                        } else {
                            ranges.push((c, c));
                        }
                    }
                    Token::Class { negated, ranges }
                }
                other => Token::Literal(other),
            };
            tokens.push(token);
        }
        Ok(Glob { tokens })
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        let tokens = &self.tokens;
        let (mut ti, mut si) = (0usize, 0usize);
        let mut backtrack: Option<(usize, usize)> = None;
        loop {
            if let Some(token) = tokens.get(ti) {
                if *token == Token::AnyRun {
                    backtrack = Some((ti, si));
                    ti += 1;
                    continue;
                }
                if let Some(c) = text[si..].chars().next()
                    && token.matches(c)
                {
                    ti += 1;
                    si += c.len_utf8();
                    continue;
                }
            } else if si == text.len() {
                return true;
            }
            // Mismatch: let the last `*` swallow one more character.
            match backtrack {
                Some((star, from)) => match text[from..].chars().next() {
                    Some(c) => {
                        let next = from + c.len_utf8();
                        backtrack = Some((star, next));
                        ti = star + 1;
                        si = next;
                    }
                    None => return false,
                },
                None => return false,
            }
        }
    }

    /// The literal text every match starts with (useful to narrow a range
    /// scan).
    pub fn literal_prefix(&self) -> String {
        self.tokens
            .iter()
            .map_while(|t| match t {
                Token::Literal(c) => Some(*c),
                _ => None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Glob::new(p).unwrap().matches(s)
    }

    #[test]
    fn wildcards() {
        assert!(m("user:*", "user:1"));
        assert!(m("user:*", "user:"));
        assert!(m("user:*:profile", "user:1:2:profile"));
        assert!(!m("user:*", "users:1"));
        assert!(m("a?c", "abc"));
        assert!(m("a?c", "aéc"));
        assert!(!m("a?c", "ac"));
        assert!(m("*", ""));
        assert!(m("**a", "bba"));
        assert!(m("*a*b", "xxaxxb"));
        assert!(!m("*a*b", "xxaxxbc"));
    }

    #[test]
    fn regex_characters_are_literal() {
        assert!(m("a.b", "a.b"));
        assert!(!m("a.b", "axb"));
        assert!(m("f(x)*", "f(x)=1"));
        assert!(m("a+b", "a+b"));
        assert!(!m("a+b", "aab"));
        assert!(m("{x}", "{x}"));
    }

    #[test]
    fn classes() {
        assert!(m("[abc]", "b"));
        assert!(!m("[abc]", "d"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("[^a-c]x", "dx"));
        assert!(!m("[^a-c]x", "ax"));
        assert!(m("[]]", "]"));
        assert!(m("[a-]", "-"));
        assert!(m("[é-ü]", "ö"));
    }

    #[test]
    fn escapes() {
        assert!(m("a\\*b", "a*b"));
        assert!(!m("a\\*b", "axb"));
        assert!(m("\\[1\\]", "[1]"));
        let text = "we*ird?[k]\\ey";
        assert!(m(&escape(text), text));
        assert!(!m(&escape(text), "weXird?[k]\\ey"));
    }

    #[test]
    fn bad_patterns_are_errors() {
        assert!(Glob::new("a[bc").is_err());
        assert!(Glob::new("ab\\").is_err());
        let err = Glob::new("a[").unwrap_err().to_string();
        assert!(err.contains("unterminated"), "{err}");
    }

    #[test]
    fn literal_prefix() {
        assert_eq!(
            Glob::new("svc:v1:user\\*:*").unwrap().literal_prefix(),
            "svc:v1:user*:"
        );
        assert_eq!(Glob::new("*").unwrap().literal_prefix(), "");
    }
}
