//! `#[cache_read]`.

use proc_macro2::TokenStream;
use quote::quote;
use syn::spanned::Spanned;
use syn::{Expr, LitStr, Path};

use crate::args::{self, Arg};
use crate::func::{Func, bind_cache};
use crate::template;
use crate::ttl::TtlArg;

const KNOWN: &[&str] = &[
    "key",
    "ttl",
    "tags",
    "cache",
    "condition",
    "cache_none",
    "lock",
    "refresh",
    "early_ttl",
    "stale_ttl",
    "xfetch",
    "resource",
    "id",
    "suffix",
];

#[derive(Default)]
struct ReadArgs {
    key: Option<LitStr>,
    ttl: Option<TtlArg>,
    tags: Vec<LitStr>,
    cache: Option<Expr>,
    condition: Option<Path>,
    cache_none: bool,
    lock: bool,
    refresh: bool,
    early_ttl: Option<TokenStream>,
    stale_ttl: Option<TokenStream>,
    xfetch: Option<Expr>,
    resource: Option<Path>,
    id: Option<Expr>,
    suffix: Option<LitStr>,
}

fn parse_args(tokens: TokenStream) -> syn::Result<(ReadArgs, Vec<Arg>)> {
    let list = args::parse(tokens, KNOWN, "cache_read")?;
    let mut a = ReadArgs::default();
    for arg in &list {
        match arg.name.to_string().as_str() {
            "key" => a.key = Some(arg.lit_str()?),
            "ttl" => a.ttl = Some(arg.ttl()?),
            "tags" => a.tags = arg.str_array()?,
            "cache" => a.cache = Some(arg.expr()?),
            "condition" => a.condition = Some(arg.path()?),
            "cache_none" => a.cache_none = arg.flag()?,
            "lock" => a.lock = arg.flag()?,
            "refresh" => a.refresh = arg.flag()?,
            "early_ttl" => a.early_ttl = Some(arg.ttl()?.duration_tokens(arg.expr()?.span())?),
            "stale_ttl" => a.stale_ttl = Some(arg.ttl()?.duration_tokens(arg.expr()?.span())?),
            "xfetch" => a.xfetch = Some(xfetch_beta(arg)?),
            "resource" => a.resource = Some(arg.path()?),
            "id" => a.id = Some(arg.expr()?),
            "suffix" => a.suffix = Some(arg.lit_str()?),
            _ => {}
        }
    }
    Ok((a, list))
}

/// The XFetch factor: a positive number (`1.0` is the usual choice), given
/// as a literal so that a wrong one is a compile error.
fn xfetch_beta(arg: &Arg) -> syn::Result<Expr> {
    let expr = arg.expr()?;
    let value = match &expr {
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Float(f),
            ..
        }) => f.base10_parse::<f64>().ok(),
        Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse::<u32>().ok().map(f64::from),
        _ => None,
    };
    match value {
        Some(beta) if beta > 0.0 && beta.is_finite() => {
            Ok(syn::parse_quote_spanned!(expr.span()=> #beta))
        }
        _ => Err(syn::Error::new(
            expr.span(),
            "`xfetch` takes a positive number, the XFetch factor (1.0 is the usual choice; \
             larger refreshes earlier)",
        )),
    }
}

/// Expand `#[cache_read(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let (a, list) = parse_args(args)?;
    let func = Func::parse(item, "cache_read")?;
    let name = func.name();

    args::check_resource_pair(&list, a.resource.is_some(), a.id.is_some())?;
    if a.suffix.is_some() && a.resource.is_none() {
        return Err(syn::Error::new(
            args::span_of(&list, "suffix"),
            "`suffix` goes with `resource = ..., id = ...`",
        ));
    }
    if let Some(id) = &a.id {
        func.check_expr_root(id, "id")?;
    }

    // The key: a template, or the resource's entity key.
    let key = match (&a.key, &a.resource, &a.id) {
        (Some(lit), _, _) => {
            let segments = template::parse(lit)?;
            template::check_roots(&segments, &func.params, lit, &name)?;
            template::render(&segments, lit)
        }
        (None, Some(resource), Some(id)) => {
            let suffix = a.suffix.as_ref().map_or_else(String::new, LitStr::value);
            quote!(::larder::__private::Resource::key(&#resource, #suffix, &#id))
        }
        _ => {
            return Err(syn::Error::new(
                proc_macro2::Span::call_site(),
                format!(
                    "#[cache_read] on `{name}` needs a key: `key = \"{name}:{{param}}\"`, \
                     or `resource = ..., id = ...`"
                ),
            ));
        }
    };

    let mut tags = Vec::new();
    for lit in &a.tags {
        let segments = template::parse(lit)?;
        template::check_roots(&segments, &func.params, lit, &name)?;
        tags.push(template::render(&segments, lit));
    }
    if let (Some(resource), Some(id)) = (&a.resource, &a.id) {
        tags.push(quote!(::larder::__private::Resource::tag(&#resource, &#id)));
    }

    let ttl = a
        .ttl
        .as_ref()
        .map_or_else(|| quote!(::larder::Ttl::Default), TtlArg::tokens);
    let cache_none = a.cache_none;
    let ret = func.return_type();
    // The type system decides what a return type is: an alias of `Result`
    // is a `Result`. `cache_none` on anything but an `Option` fails to
    // compile, with a message that says so.
    let expect_option = if cache_none {
        let span = args::span_of(&list, "cache_none");
        quote::quote_spanned!(span=> let _: () = ::larder::__private::expect_option::<#ret>();)
    } else {
        quote!()
    };
    let lock = a.lock;
    let refresh = a.refresh;
    let none = quote!(::core::option::Option::None);
    let early_ttl = a.early_ttl.unwrap_or_else(|| none.clone());
    let stale_ttl = a.stale_ttl.unwrap_or_else(|| none.clone());
    let xfetch = a
        .xfetch
        .map_or(none, |beta| quote!(::core::option::Option::Some(#beta)));
    let condition = match &a.condition {
        Some(path) => quote!(|__larder_value| #path(__larder_value)),
        None => quote!(|_| true),
    };
    let bind = bind_cache(a.cache.as_ref());
    let body = func.body_future();
    let adapt = quote!((&::larder::__private::Adapt::<#ret>::NEW));

    Ok(func.with_body(quote! {
        #expect_option
        #[allow(unused_imports)]
        use ::larder::__private::{
            ShareClone as _, ShareNothing as _, ViaOutcome as _, ViaPlain as _,
        };
        #bind
        let __larder_key: ::std::string::String = #key;
        // Tags are rendered only when a value is stored, not on every hit.
        let __larder_tags = || -> ::std::vec::Vec<::std::string::String> { ::std::vec![#(#tags),*] };
        let __larder_fill = ::larder::__private::FillOptions::new()
            .ttl(#ttl)
            .cache_none(#cache_none)
            .lock(#lock)
            .lock_timeout(::larder::__private::DEFAULT_LOCK_TIMEOUT)
            .refresh_on_hit(#refresh)
            .early_ttl(#early_ttl)
            .stale_ttl(#stale_ttl)
            .xfetch(#xfetch);
        let __larder_body = #body;
        let __larder_out = ::larder::__private::read(
            __larder_cache,
            #name,
            &__larder_key,
            __larder_tags,
            &__larder_fill,
            #condition,
            #adapt.share(),
            async { #adapt.wrap(__larder_body.await) },
        )
        .await;
        #adapt.unwrap(__larder_out)
    }))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    fn err(args: TokenStream, item: TokenStream) -> String {
        match expand(args, item) {
            Ok(t) => panic!("expected an error, got {t}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn expands_a_simple_read() {
        let out = expand(
            quote!(key = "user:{id}", ttl = "5m", tags = ["users"]),
            quote!(
                pub async fn get(id: u64) -> Option<u64> {
                    Some(id)
                }
            ),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("pub async fn get"), "{out}");
        assert!(out.contains("push_part"), "{out}");
        assert!(out.contains("from_millis (300000u64)"), "{out}");
        assert!(out.contains("__private :: read"), "{out}");
    }

    #[test]
    fn separators_other_than_colon_are_escaped_in_values() {
        let item = quote!(
            async fn pair(a: &str, b: &str) -> u64 {
                1
            }
        );
        let out = |key: &str| {
            let lit = syn::LitStr::new(key, proc_macro2::Span::call_site());
            expand(quote!(key = #lit, tags = ["t:{a}"]), item.clone())
                .unwrap()
                .to_string()
        };
        let dashed = out("pair:{a}-{b}");
        assert!(
            dashed.contains("push_part_escaping (& mut __larder_key , & a , \"-\")"),
            "{dashed}"
        );
        assert!(
            dashed.contains("push_part_escaping (& mut __larder_key , & b , \"-\")"),
            "{dashed}"
        );
        // The tag `t:{a}` needs no escaping.
        assert!(
            dashed.contains(":: push_part (& mut __larder_key , & a)"),
            "{dashed}"
        );
        let colon = out("user:{a}:{b}");
        assert!(!colon.contains("escaping"), "{colon}");
        assert!(
            colon.contains(":: push_part (& mut __larder_key , & b)"),
            "{colon}"
        );
    }

    #[test]
    fn touching_placeholders_are_reported() {
        let item = quote!(
            async fn pair(a: &str, b: &str) -> u64 {
                1
            }
        );
        let e = err(quote!(key = "pair:{a}{b}"), item.clone());
        assert!(e.contains("`{a}` and `{b}` touch"), "{e}");
        assert!(e.contains("`{a}:{b}`"), "{e}");
        let e = err(quote!(key = "k", tags = ["{a}{b}"]), item.clone());
        assert!(e.contains("touch"), "{e}");
        assert!(expand(quote!(key = "pair:{a|hash}{b}"), item).is_ok());
    }

    #[test]
    fn misuse_is_reported() {
        let item = quote!(
            async fn get(id: u64) -> u64 {
                id
            }
        );
        assert!(err(quote!(key = "u:{uid}"), item.clone()).contains("names no parameter"));
        assert!(err(quote!(keys = "u"), item.clone()).contains("unknown argument `keys`"));
        assert!(err(quote!(key = "u", ttl = "soon"), item.clone()).contains("malformed ttl"));
        assert!(err(quote!(resource = USER), item.clone()).contains("needs `id`"));
        assert!(err(quote!(ttl = 5), item.clone()).contains("needs a key"));
        assert!(err(quote!(key = "u", key = "v"), item.clone()).contains("twice"));
        assert!(
            err(
                quote!(key = "u"),
                quote!(
                    fn get() -> u64 {
                        1
                    }
                )
            )
            .contains("async fn")
        );
        let typed = expand(quote!(key = "u", cache_none), item)
            .unwrap()
            .to_string();
        assert!(typed.contains("expect_option"), "{typed}");
    }
}
