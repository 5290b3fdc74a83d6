//! Parsing of the attribute arguments (`key = "...", ttl = 300, ...`).

use proc_macro2::{Span, TokenStream};
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, ExprArray, ExprLit, Lit, LitBool, LitStr, Meta, Path, Token};

use crate::ttl::TtlArg;

/// One `name = value` (or bare `name`) argument.
pub(crate) struct Arg {
    pub(crate) name: syn::Ident,
    pub(crate) value: Option<Expr>,
}

/// Split the arguments, rejecting duplicates and names outside `known`.
pub(crate) fn parse(tokens: TokenStream, known: &[&str], attr: &str) -> syn::Result<Vec<Arg>> {
    let metas = Punctuated::<Meta, Token![,]>::parse_terminated.parse2(tokens)?;
    let mut out: Vec<Arg> = Vec::new();
    for meta in metas {
        let (path, value) = match meta {
            Meta::Path(path) => (path, None),
            Meta::NameValue(nv) => (nv.path, Some(nv.value)),
            Meta::List(list) => {
                return Err(syn::Error::new(
                    list.delimiter.span().open(),
                    format!("#[{attr}] arguments are `name = value`"),
                ));
            }
        };
        let Some(name) = path.get_ident().cloned() else {
            return Err(syn::Error::new(path.span(), "expected an argument name"));
        };
        if !known.contains(&name.to_string().as_str()) {
            return Err(syn::Error::new(
                name.span(),
                format!(
                    "unknown argument `{name}` of #[{attr}]; expected one of: {}",
                    known.join(", ")
                ),
            ));
        }
        if out.iter().any(|a| a.name == name) {
            return Err(syn::Error::new(
                name.span(),
                format!("`{name}` is given twice"),
            ));
        }
        out.push(Arg { name, value });
    }
    Ok(out)
}

impl Arg {
    fn value(&self) -> syn::Result<&Expr> {
        self.value.as_ref().ok_or_else(|| {
            syn::Error::new(
                self.name.span(),
                format!("`{}` needs a value: `{} = ...`", self.name, self.name),
            )
        })
    }

    pub(crate) fn expr(&self) -> syn::Result<Expr> {
        self.value().cloned()
    }

    pub(crate) fn lit_str(&self) -> syn::Result<LitStr> {
        match self.value()? {
            Expr::Lit(ExprLit {
                lit: Lit::Str(s), ..
            }) => Ok(s.clone()),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes a string literal", self.name),
            )),
        }
    }

    /// `flag`, `flag = true` or `flag = false`.
    pub(crate) fn flag(&self) -> syn::Result<bool> {
        match &self.value {
            None => Ok(true),
            Some(Expr::Lit(ExprLit {
                lit: Lit::Bool(LitBool { value, .. }),
                ..
            })) => Ok(*value),
            Some(other) => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes `true` or `false`", self.name),
            )),
        }
    }

    pub(crate) fn path(&self) -> syn::Result<Path> {
        match self.value()? {
            Expr::Path(p) => Ok(p.path.clone()),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes a path (`USER`, `crate::USER`)", self.name),
            )),
        }
    }

    pub(crate) fn positive_int(&self) -> syn::Result<usize> {
        let value = self.value()?;
        if let Expr::Lit(ExprLit {
            lit: Lit::Int(i), ..
        }) = value
            && let Ok(n) = i.base10_parse::<usize>()
            && n > 0
        {
            return Ok(n);
        }
        Err(syn::Error::new(
            value.span(),
            format!("`{}` takes a positive whole number", self.name),
        ))
    }

    pub(crate) fn ttl(&self) -> syn::Result<TtlArg> {
        TtlArg::parse(self.value()?)
    }

    /// `[elem, ...]`.
    pub(crate) fn array(&self) -> syn::Result<Vec<Expr>> {
        match self.value()? {
            Expr::Array(ExprArray { elems, .. }) => Ok(elems.iter().cloned().collect()),
            other => Err(syn::Error::new(
                other.span(),
                format!("`{}` takes a list: `{} = [...]`", self.name, self.name),
            )),
        }
    }

    /// `["lit", ...]`.
    pub(crate) fn str_array(&self) -> syn::Result<Vec<LitStr>> {
        self.array()?
            .into_iter()
            .map(|e| match e {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(s), ..
                }) => Ok(s),
                other => Err(syn::Error::new(
                    other.span(),
                    format!(
                        "`{}` takes string templates such as \"user:{{id}}\"",
                        self.name
                    ),
                )),
            })
            .collect()
    }
}

/// The span of argument `name` if present, else the call site.
pub(crate) fn span_of(args: &[Arg], name: &str) -> Span {
    args.iter()
        .find(|a| a.name == name)
        .map_or_else(Span::call_site, |a| a.name.span())
}

/// `resource` and `id` come together.
pub(crate) fn check_resource_pair(args: &[Arg], resource: bool, id: bool) -> syn::Result<()> {
    if resource == id {
        return Ok(());
    }
    let (missing, present) = if resource {
        ("id", "resource")
    } else {
        ("resource", "id")
    };
    Err(syn::Error::new(
        span_of(args, present),
        format!("`{present}` needs `{missing}`: `resource = USER, id = user_id`"),
    ))
}
