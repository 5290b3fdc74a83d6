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

/// Cache the result of an `async fn`. See `larder::cache_read`.
#[proc_macro_attribute]
pub fn cache_read(args: TokenStream, item: TokenStream) -> TokenStream {
    read::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Invalidate (and optionally recache) after an `async fn` succeeds. See
/// `larder::cache_write`.
#[proc_macro_attribute]
pub fn cache_write(args: TokenStream, item: TokenStream) -> TokenStream {
    write::expand(args.into(), item.into())
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
