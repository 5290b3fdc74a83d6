//! `#[cache_write]`.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Expr, Path};

use crate::args::{self, Arg};
use crate::func::{Func, bind_cache};
use crate::template;

const KNOWN: &[&str] = &[
    "tags",
    "recache",
    "recache_concurrency",
    "background",
    "resource",
    "id",
    "cache",
];

/// Recache calls run at once unless `recache_concurrency` says otherwise.
const DEFAULT_CONCURRENCY: usize = 4;

/// Expand `#[cache_write(args)] item`.
pub(crate) fn expand(args: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let list: Vec<Arg> = args::parse(args, KNOWN, "cache_write")?;
    let func = Func::parse(item, "cache_write")?;
    let name = func.name();

    let mut tag_lits = Vec::new();
    let mut recache: Vec<Expr> = Vec::new();
    let mut concurrency = DEFAULT_CONCURRENCY;
    let mut background = false;
    let mut resource: Option<Path> = None;
    let mut id: Option<Expr> = None;
    let mut cache: Option<Expr> = None;
    for arg in &list {
        match arg.name.to_string().as_str() {
            "tags" => tag_lits = arg.str_array()?,
            "recache" => recache = arg.array()?,
            "recache_concurrency" => concurrency = arg.positive_int()?,
            "background" => background = arg.flag()?,
            "resource" => resource = Some(arg.path()?),
            "id" => id = Some(arg.expr()?),
            "cache" => cache = Some(arg.expr()?),
            _ => {}
        }
    }
    args::check_resource_pair(&list, resource.is_some(), id.is_some())?;
    if let Some(id) = &id {
        func.check_expr_root(id, "id")?;
    }

    let mut tags = Vec::new();
    for lit in &tag_lits {
        let segments = template::parse(lit)?;
        template::check_roots(&segments, &func.params, lit, &name)?;
        tags.push(template::render(&segments, lit));
    }
    if let (Some(resource), Some(id)) = (&resource, &id) {
        tags.push(quote!(::larder::__private::Resource::tag(&#resource, &#id)));
    }
    if tags.is_empty() {
        return Err(syn::Error::new(
            proc_macro2::Span::call_site(),
            format!(
                "#[cache_write] on `{name}` invalidates nothing: give `tags = [\"...\"]` or \
                 `resource = ..., id = ...`"
            ),
        ));
    }
    for call in &recache {
        if !matches!(call, Expr::Call(_) | Expr::MethodCall(_)) {
            return Err(syn::Error::new_spanned(
                call,
                "recache entries are calls of cached reads: `recache = [get_user(user_id)]`",
            ));
        }
    }

    let bind = bind_cache(cache.as_ref());
    let body = func.body_future();
    let ret = func.return_type();
    let jobs = recache.iter().map(|call| {
        let shown = call.to_token_stream().to_string();
        let capture = if background { quote!(move) } else { quote!() };
        quote! {
            (
                #shown,
                ::std::boxed::Box::pin(async #capture {
                    let __larder_outcome = ::larder::recache::refresh(#call).await;
                    #[allow(unused_imports)]
                    use ::larder::__private::{AnyDescribe as _, AnySuccess as _, ResultDescribe as _, ResultSuccess as _};
                    let __larder_check = ::larder::__private::Check(&__larder_outcome);
                    if (&__larder_check).succeeded() {
                        ::core::option::Option::None
                    } else {
                        ::core::option::Option::Some((&__larder_check).describe())
                    }
                }) as ::larder::__private::RecacheFuture<'_>,
            )
        }
    });
    let run_recache = if recache.is_empty() {
        quote!()
    } else if background {
        // Own the cache before the jobs move the parameters it may borrow.
        quote! {
            let __larder_owned: ::core::option::Option<::larder::Cache> = __larder_cache.cloned();
            let __larder_jobs: ::std::vec::Vec<(&'static str, ::larder::__private::RecacheFuture<'static>)> =
                ::std::vec![#(#jobs),*];
            ::larder::__private::spawn_recache(__larder_owned, #name, __larder_jobs, #concurrency);
        }
    } else {
        quote! {
            ::larder::__private::run_recache(__larder_cache, ::std::vec![#(#jobs),*], #concurrency).await;
        }
    };

    Ok(func.with_body(quote! {
        #bind
        let __larder_tags: ::std::vec::Vec<::std::string::String> = ::std::vec![#(#tags),*];
        let __larder_out: #ret = #body.await;
        let __larder_succeeded = {
            #[allow(unused_imports)]
            use ::larder::__private::{OtherReturned as _, ResultReturned as _};
            (&::larder::__private::Adapt::<#ret>::NEW).succeeded(&__larder_out)
        };
        if __larder_succeeded {
            ::larder::__private::invalidate(__larder_cache, #name, &__larder_tags).await;
            #run_recache
        }
        __larder_out
    }))
}

#[cfg(test)]
mod tests {
    use quote::quote;

    use super::*;

    #[test]
    fn expands_invalidation_and_recache() {
        let out = expand(
            quote!(
                tags = ["user:{id}"],
                recache = [get_user(id)],
                recache_concurrency = 2
            ),
            quote!(
                async fn update(id: u64) -> Result<(), String> {
                    Ok(())
                }
            ),
        )
        .unwrap()
        .to_string();
        assert!(out.contains("invalidate"), "{out}");
        assert!(out.contains("refresh (get_user (id))"), "{out}");
        assert!(out.contains("run_recache"), "{out}");
    }

    #[test]
    fn misuse_is_reported() {
        let item = quote!(
            async fn update(id: u64) {}
        );
        let err = |args| expand(args, item.clone()).unwrap_err().to_string();
        assert!(err(quote!()).contains("invalidates nothing"));
        assert!(err(quote!(tags = ["u:{uid}"])).contains("names no parameter"));
        assert!(err(quote!(tags = ["u"], recache = [1])).contains("calls of cached reads"));
        assert!(err(quote!(tags = ["u"], recache_concurrency = 0)).contains("positive"));
        assert!(err(quote!(resource = USER)).contains("needs `id`"));
        assert!(err(quote!(tags = ["u"], ttl = 5)).contains("unknown argument `ttl`"));
    }
}
