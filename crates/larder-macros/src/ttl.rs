//! `ttl = 300 | "5m" | "1h30m" | "short" | "default" | "long"`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Expr, ExprLit, Lit};

const EXPECTED: &str = "a TTL: seconds (`300`), a duration string (`\"5m\"`, `\"1h30m\"`, \
                        `\"500ms\"`) or a bucket (`\"short\"`, `\"default\"`, `\"long\"`)";

/// A TTL known at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TtlArg {
    Millis(u64),
    Bucket(&'static str),
}

/// `300`, `5m`, `1h30m`, `500ms`, `2d` in milliseconds; the grammar of
/// `larder::config::parse_duration`.
fn parse_millis(text: &str) -> Option<u64> {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().ok()?.checked_mul(1000);
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let factor = match &rest[..unit] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(n.checked_mul(factor)?)?;
        rest = &rest[unit..];
    }
    (total > 0).then_some(total)
}

impl TtlArg {
    pub(crate) fn parse(expr: &Expr) -> syn::Result<Self> {
        let bad = || syn::Error::new(expr.span(), format!("malformed ttl: expected {EXPECTED}"));
        match expr {
            Expr::Lit(ExprLit {
                lit: Lit::Int(i), ..
            }) => {
                let secs: u64 = i.base10_parse().map_err(|_| bad())?;
                if secs == 0 {
                    return Err(syn::Error::new(
                        i.span(),
                        "ttl must be positive; leave it out for the default TTL",
                    ));
                }
                secs.checked_mul(1000).map(TtlArg::Millis).ok_or_else(bad)
            }
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => match s.value().trim() {
                "short" => Ok(TtlArg::Bucket("Short")),
                "default" => Ok(TtlArg::Bucket("Default")),
                "long" => Ok(TtlArg::Bucket("Long")),
                text => parse_millis(text).map(TtlArg::Millis).ok_or_else(bad),
            },
            _ => Err(bad()),
        }
    }

    /// A `larder::Ttl` expression.
    pub(crate) fn tokens(&self) -> TokenStream {
        match self {
            TtlArg::Millis(ms) => {
                quote!(::larder::Ttl::Fixed(::core::time::Duration::from_millis(#ms)))
            }
            TtlArg::Bucket(b) => {
                let b = syn::Ident::new(b, proc_macro2::Span::call_site());
                quote!(::larder::Ttl::Bucket(::larder::TtlBucket::#b))
            }
        }
    }

    /// An `Option<Duration>` expression (for early_ttl / stale_ttl, which
    /// take no bucket).
    pub(crate) fn duration_tokens(&self, expr_span: proc_macro2::Span) -> syn::Result<TokenStream> {
        match self {
            TtlArg::Millis(ms) => Ok(quote!(::core::option::Option::Some(
                ::core::time::Duration::from_millis(#ms)
            ))),
            TtlArg::Bucket(_) => Err(syn::Error::new(
                expr_span,
                "early_ttl and stale_ttl take a duration, not a bucket",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ttl(src: &str) -> syn::Result<TtlArg> {
        TtlArg::parse(&syn::parse_str(src).unwrap())
    }

    #[test]
    fn forms() {
        assert_eq!(ttl("300").unwrap(), TtlArg::Millis(300_000));
        assert_eq!(ttl("\"5m\"").unwrap(), TtlArg::Millis(300_000));
        assert_eq!(ttl("\"1h30m\"").unwrap(), TtlArg::Millis(5_400_000));
        assert_eq!(ttl("\"250ms\"").unwrap(), TtlArg::Millis(250));
        assert_eq!(ttl("\"short\"").unwrap(), TtlArg::Bucket("Short"));
        for bad in ["0", "\"soon\"", "\"5 m\"", "1.5", "-3", "x", "\"\""] {
            let err = ttl(bad).unwrap_err().to_string();
            assert!(err.contains("ttl"), "{bad}: {err}");
        }
    }
}
