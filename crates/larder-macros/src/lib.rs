//! `#[cache_read]` and `#[cache_write]` for [larder](https://docs.rs/larder).
//!
//! Use them through the `larder` crate: the generated code refers to
//! `::larder`. The expansion logic lives in plain functions returning
//! `syn::Result`, unit-tested without compiling a crate; every misuse is a
//! `syn::Error` spanned on the offending token.

use proc_macro::TokenStream;

mod args;
mod func;
mod read;
mod template;
mod ttl;
mod write;

/// Cache the result of an `async fn` under a key rendered from its
/// parameters.
///
/// ```text
/// #[cache_read(key = "user:{user_id}", ttl = 300, tags = ["user:{user_id}"])]
/// async fn get_user(user_id: u64) -> Result<User, DbError> { ... }
/// ```
///
/// Arguments: `key`, `ttl` (seconds, `"5m"`, or a bucket `"short"` /
/// `"default"` / `"long"`), `tags`, `cache`, `condition`, `cache_none`,
/// `lock`, `refresh`, `early_ttl`, `stale_ttl`, `xfetch`, `resource` + `id`
/// (+ `suffix`).
/// `Result` stores `Ok` only, `Option` stores `Some` only. Concurrent misses
/// run the body once; a cache failure never fails the call. The guide is
/// `docs/attributes.md`.
#[proc_macro_attribute]
pub fn cache_read(args: TokenStream, item: TokenStream) -> TokenStream {
    read::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Invalidate tags after an `async fn` succeeds, then recache.
///
/// ```text
/// #[cache_write(tags = ["user:{user_id}"], recache = [get_user(user_id)])]
/// async fn rename_user(user_id: u64, name: &str) -> Result<(), DbError> { ... }
/// ```
///
/// Arguments: `tags`, `resource` + `id`, `recache`, `recache_concurrency`,
/// `background`, `cache`. Nothing is invalidated when the body returns
/// `Err`; recache calls run with a forced refresh; their failures are logged
/// and counted, never returned. The guide is `docs/attributes.md`.
#[proc_macro_attribute]
pub fn cache_write(args: TokenStream, item: TokenStream) -> TokenStream {
    write::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
