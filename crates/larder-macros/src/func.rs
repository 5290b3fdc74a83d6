//! What the attributes need to know about the function they wrap.

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::spanned::Spanned;
use syn::{Expr, FnArg, ItemFn, Pat, ReturnType, Type};

/// The wrapped function.
pub(crate) struct Func {
    pub(crate) item: ItemFn,
    /// Parameter names usable in templates (`self` for methods).
    pub(crate) params: Vec<String>,
}

fn collect_names(pat: &Pat, out: &mut Vec<String>) {
    match pat {
        Pat::Ident(p) => out.push(p.ident.to_string()),
        Pat::Tuple(t) => t.elems.iter().for_each(|p| collect_names(p, out)),
        Pat::TupleStruct(t) => t.elems.iter().for_each(|p| collect_names(p, out)),
        Pat::Struct(s) => s.fields.iter().for_each(|f| collect_names(&f.pat, out)),
        Pat::Reference(r) => collect_names(&r.pat, out),
        Pat::Type(t) => collect_names(&t.pat, out),
        Pat::Paren(p) => collect_names(&p.pat, out),
        _ => {}
    }
}

impl Func {
    pub(crate) fn parse(item: TokenStream, attr: &str) -> syn::Result<Self> {
        let item: ItemFn = syn::parse2(item)?;
        if item.sig.asyncness.is_none() {
            return Err(syn::Error::new(
                item.sig.fn_token.span,
                format!(
                    "#[{attr}] works on `async fn`; make `{}` async",
                    item.sig.ident
                ),
            ));
        }
        let mut params = Vec::new();
        for input in &item.sig.inputs {
            match input {
                FnArg::Receiver(_) => params.push("self".to_owned()),
                FnArg::Typed(t) => collect_names(&t.pat, &mut params),
            }
        }
        // What the return type means for storing is decided by the type
        // system in the expansion (see `larder::__private::Adapt`), so type
        // aliases work; only `impl Trait` is refused here, since nothing
        // concrete can be stored or rebuilt from it.
        if let ReturnType::Type(_, ty) = &item.sig.output
            && let Type::ImplTrait(t) = &**ty
        {
            return Err(syn::Error::new(
                t.span(),
                format!("#[{attr}] needs a concrete return type it can store, not `impl Trait`"),
            ));
        }
        Ok(Func { item, params })
    }

    pub(crate) fn name(&self) -> String {
        self.item.sig.ident.to_string()
    }

    /// The declared return type (`()` when there is none).
    pub(crate) fn return_type(&self) -> TokenStream {
        match &self.item.sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => ty.to_token_stream(),
        }
    }

    /// The body as a future that has not started: `return` and `?` in the
    /// body end this future, not the function.
    pub(crate) fn body_future(&self) -> TokenStream {
        let ret = self.return_type();
        let block = &self.item.block;
        quote!(async {
            let __larder_ret: #ret = #block;
            #[allow(unreachable_code)]
            __larder_ret
        })
    }

    /// Re-emit the function with `body` in place of its block.
    pub(crate) fn with_body(&self, body: TokenStream) -> TokenStream {
        let ItemFn {
            attrs, vis, sig, ..
        } = &self.item;
        quote!(#(#attrs)* #vis #sig { #body })
    }

    /// Check that an `id = ...` expression starts at a parameter.
    pub(crate) fn check_expr_root(&self, expr: &Expr, what: &str) -> syn::Result<()> {
        let mut e = expr;
        loop {
            match e {
                Expr::Field(f) => e = &f.base,
                Expr::Reference(r) => e = &r.expr,
                Expr::Paren(p) => e = &p.expr,
                Expr::Path(p) => {
                    let name = p.path.get_ident().map(ToString::to_string);
                    return match name {
                        Some(n) if self.params.contains(&n) => Ok(()),
                        _ => Err(syn::Error::new(
                            expr.span(),
                            format!(
                                "`{what}` must name a parameter of `{}` (they are: {})",
                                self.name(),
                                self.params.join(", ")
                            ),
                        )),
                    };
                }
                // A method call or other expression: let the compiler judge.
                _ => return Ok(()),
            }
        }
    }
}

/// Statements binding `__larder_cache: Option<&larder::Cache>`: the named
/// cache, or the installed one. A `let` of `&(expr)` keeps a temporary (a
/// `cache = make_cache()`) alive for the whole function.
pub(crate) fn bind_cache(cache: Option<&Expr>) -> TokenStream {
    match cache {
        Some(expr) => quote! {
            let __larder_named: &::larder::Cache = &(#expr);
            let __larder_cache: ::core::option::Option<&::larder::Cache> =
                ::core::option::Option::Some(__larder_named);
        },
        None => quote! {
            let __larder_cache: ::core::option::Option<&::larder::Cache> =
                ::larder::__private::installed();
        },
    }
}
