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

/// The error of a zero TTL, at `span`.
fn zero(span: proc_macro2::Span) -> syn::Error {
    syn::Error::new(
        span,
        "ttl must be positive; leave it out for the default TTL",
    )
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
                    return Err(zero(i.span()));
                }
                secs.checked_mul(1000).map(TtlArg::Millis).ok_or_else(bad)
            }
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => match s.value().trim() {
                "short" => Ok(TtlArg::Bucket("Short")),
                "default" => Ok(TtlArg::Bucket("Default")),
                "long" => Ok(TtlArg::Bucket("Long")),
                // The grammar of `larder::config::parse_duration`, from the
                // crate both share so the two cannot drift.
                text => match larder_grammar::parse_duration(text) {
                    None => Err(bad()),
                    Some(d) if d.is_zero() => Err(zero(s.span())),
                    Some(d) => u64::try_from(d.as_millis())
                        .map(TtlArg::Millis)
                        .map_err(|_| bad()),
                },
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
        assert_eq!(ttl("\"2d\"").unwrap(), TtlArg::Millis(172_800_000));
        assert_eq!(ttl("\"90\"").unwrap(), TtlArg::Millis(90_000));
        assert_eq!(ttl("\"short\"").unwrap(), TtlArg::Bucket("Short"));
        for bad in ["\"soon\"", "\"5 m\"", "1.5", "-3", "x", "\"\""] {
            let err = ttl(bad).unwrap_err().to_string();
            assert!(err.contains("malformed ttl"), "{bad}: {err}");
        }
        for zero in ["0", "\"0\"", "\"0s\"", "\"0h0m\""] {
            let err = ttl(zero).unwrap_err().to_string();
            assert!(err.contains("must be positive"), "{zero}: {err}");
        }
    }
}
