//! Key templates: `"user:{user_id}"`, `"{self.id}"`, `"q:{query|hash}"`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::LitStr;

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Segment {
    Text(String),
    Placeholder {
        /// `user_id`, or `self`.
        root: String,
        /// `.field` accesses after the root.
        fields: Vec<String>,
        /// `lower` or `hash`.
        filter: Option<String>,
    },
}

const FILTERS: &[&str] = &["lower", "hash"];

fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && s != "_"
}

/// Parse a template; errors point at the literal.
pub(crate) fn parse(lit: &LitStr) -> syn::Result<Vec<Segment>> {
    let text = lit.value();
    let err = |msg: String| syn::Error::new(lit.span(), msg);
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                buf.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                buf.push('}');
            }
            '}' => {
                return Err(err(format!(
                    "unmatched `}}` in template {text:?}; write a literal brace as `}}}}`"
                )));
            }
            '{' => {
                let mut inner = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some(c) => inner.push(c),
                        None => {
                            return Err(err(format!(
                                "unclosed `{{` in template {text:?}; placeholders look like `{{param}}`"
                            )));
                        }
                    }
                }
                if !buf.is_empty() {
                    out.push(Segment::Text(std::mem::take(&mut buf)));
                }
                out.push(placeholder(&inner, &text, lit)?);
            }
            other => buf.push(other),
        }
    }
    if !buf.is_empty() {
        out.push(Segment::Text(buf));
    }
    Ok(out)
}

fn placeholder(inner: &str, text: &str, lit: &LitStr) -> syn::Result<Segment> {
    let err = |msg: String| syn::Error::new(lit.span(), msg);
    let (path, filter) = match inner.split_once('|') {
        Some((p, f)) => (p.trim(), Some(f.trim().to_owned())),
        None => (inner.trim(), None),
    };
    if let Some(f) = &filter
        && !FILTERS.contains(&f.as_str())
    {
        return Err(err(format!(
            "unknown filter `{f}` in `{{{inner}}}`; filters are: {}",
            FILTERS.join(", ")
        )));
    }
    let mut parts = path.split('.');
    let root = parts.next().unwrap_or_default().to_owned();
    let fields: Vec<String> = parts.map(str::to_owned).collect();
    let valid = is_ident(&root)
        && fields
            .iter()
            .all(|f| is_ident(f) || f.parse::<usize>().is_ok());
    if !valid {
        return Err(err(format!(
            "bad placeholder `{{{inner}}}` in template {text:?}; expected `{{param}}`, \
             `{{param.field}}` or `{{param|lower}}`"
        )));
    }
    Ok(Segment::Placeholder {
        root,
        fields,
        filter,
    })
}

/// Check that every placeholder names one of `params` (`self` included for
/// methods).
pub(crate) fn check_roots(
    segments: &[Segment],
    params: &[String],
    lit: &LitStr,
    function: &str,
) -> syn::Result<()> {
    for segment in segments {
        if let Segment::Placeholder { root, .. } = segment
            && !params.contains(root)
        {
            let known = if params.is_empty() {
                "it has none".to_owned()
            } else {
                format!("they are: {}", params.join(", "))
            };
            return Err(syn::Error::new(
                lit.span(),
                format!("placeholder `{{{root}}}` names no parameter of `{function}`; {known}"),
            ));
        }
    }
    Ok(())
}

/// Code that renders the template into a `String` expression.
pub(crate) fn render(segments: &[Segment], lit: &LitStr) -> TokenStream {
    let capacity = segments
        .iter()
        .map(|s| match s {
            Segment::Text(t) => t.len(),
            Segment::Placeholder { .. } => 16,
        })
        .sum::<usize>();
    let pushes = segments.iter().map(|s| match s {
        Segment::Text(t) => quote!(__larder_key.push_str(#t);),
        Segment::Placeholder {
            root,
            fields,
            filter,
        } => {
            // Spanned on the literal so the names resolve to the caller's
            // parameters and type errors point at the template.
            let root = if root == "self" {
                syn::Ident::new("self", lit.span())
            } else {
                syn::Ident::new(root, lit.span())
            };
            let fields = fields.iter().map(|f| match f.parse::<usize>() {
                Ok(_) => {
                    let index = syn::Index {
                        index: f.parse().unwrap_or_default(),
                        span: lit.span(),
                    };
                    quote!(.#index)
                }
                Err(_) => {
                    let f = syn::Ident::new(f, lit.span());
                    quote!(.#f)
                }
            });
            let push = match filter.as_deref() {
                Some("lower") => quote!(::larder::__private::push_part_lower),
                Some("hash") => quote!(::larder::__private::push_part_hash),
                _ => quote!(::larder::__private::push_part),
            };
            let span = lit.span();
            quote_spanned!(span=> #push(&mut __larder_key, &#root #(#fields)*);)
        }
    });
    quote!({
        let mut __larder_key = ::std::string::String::with_capacity(#capacity);
        #(#pushes)*
        __larder_key
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> LitStr {
        LitStr::new(s, proc_macro2::Span::call_site())
    }

    #[test]
    fn parses_placeholders_fields_and_filters() {
        let segs = parse(&lit("user:{user_id}:{self.org.id}:{q|hash}")).unwrap();
        assert_eq!(segs.len(), 6);
        assert_eq!(segs[0], Segment::Text("user:".into()));
        assert_eq!(
            segs[3],
            Segment::Placeholder {
                root: "self".into(),
                fields: vec!["org".into(), "id".into()],
                filter: None
            }
        );
        assert_eq!(
            segs[5],
            Segment::Placeholder {
                root: "q".into(),
                fields: vec![],
                filter: Some("hash".into())
            }
        );
        assert_eq!(
            parse(&lit("a{{b}}")).unwrap(),
            vec![Segment::Text("a{b}".into())]
        );
    }

    #[test]
    fn rejects_malformed_templates() {
        for (t, needle) in [
            ("user:{id", "unclosed"),
            ("user:id}", "unmatched"),
            ("user:{}", "bad placeholder"),
            ("user:{a b}", "bad placeholder"),
            ("user:{id|upper}", "unknown filter"),
        ] {
            let err = parse(&lit(t)).unwrap_err().to_string();
            assert!(err.contains(needle), "{t}: {err}");
        }
    }

    #[test]
    fn roots_must_be_parameters() {
        let l = lit("user:{usr_id}");
        let segs = parse(&l).unwrap();
        let err = check_roots(&segs, &["user_id".into()], &l, "get_user")
            .unwrap_err()
            .to_string();
        assert!(err.contains("usr_id") && err.contains("user_id"), "{err}");
        assert!(check_roots(&segs, &["usr_id".into()], &l, "f").is_ok());
    }
}
