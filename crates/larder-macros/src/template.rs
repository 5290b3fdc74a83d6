//! Key templates: `"user:{user_id}"`, `"{self.id}"`, `"q:{query|hash}"`.
//!
//! Rendering is unambiguous: two argument tuples never render to the same
//! key. Values are escaped for `%`, `:`, `{`, `}` and control characters
//! (`push_part`) and, when some placeholder is followed by another
//! character (`"{a}-{b}"`), for that character too (`push_part_escaping`),
//! so a value never holds the character that ends it. What escaping cannot
//! separate is rejected at compile time: two placeholders with nothing
//! between them, and a `%` right after a placeholder (it reads as the start
//! of an escape). A `|hash` placeholder has a fixed width and needs neither.

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

impl Segment {
    /// A placeholder whose rendering can have any length: not `|hash`.
    fn is_variable_width(&self) -> bool {
        matches!(self, Segment::Placeholder { filter, .. } if filter.as_deref() != Some("hash"))
    }
}

/// Characters `push_part` escapes already; passing them again is harmless
/// but would turn `"user:{id}:name"` into an escaping call for nothing.
fn escaped_by_default(c: char) -> bool {
    matches!(c, '%' | ':' | '{' | '}') || c.is_control()
}

/// A plain Rust identifier (not a keyword, not raw). `char::is_alphabetic`
/// alone is not enough: Rust identifiers are XID_Start / XID_Continue, and
/// `Ident::new` panics on anything else (found by the `key_template` fuzz
/// target: `{\u{6d6}lf}`), so syn has the last word.
fn is_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
        && s != "_"
        && syn::parse_str::<syn::Ident>(s).is_ok()
}

/// Parse a template; errors point at the literal.
pub(crate) fn parse(lit: &LitStr) -> syn::Result<Vec<Segment>> {
    let text = lit.value();
    let err = |msg: String| syn::Error::new(lit.span(), msg);
    let mut out = Vec::new();
    let mut buf = String::new();
    let mut chars = text.chars().peekable();
    // The inner text of the latest placeholder, for messages.
    let mut last: Option<String> = None;
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
                let segment = placeholder(&inner, &text, lit)?;
                if buf.is_empty()
                    && let Some(before) = &last
                    && out.last().is_some_and(Segment::is_variable_width)
                {
                    return Err(err(format!(
                        "placeholders `{{{before}}}` and `{{{inner}}}` touch in template {text:?}: \
                         nothing marks where one value ends, so (\"ab\", \"c\") and \
                         (\"a\", \"bc\") would render the same key; put a separator between \
                         them, such as `{{{before}}}:{{{inner}}}`"
                    )));
                }
                if !buf.is_empty() {
                    out.push(Segment::Text(std::mem::take(&mut buf)));
                }
                out.push(segment);
                last = Some(inner);
            }
            other => {
                if buf.is_empty()
                    && other == '%'
                    && let Some(before) = &last
                    && out.last().is_some_and(Segment::is_variable_width)
                {
                    return Err(err(format!(
                        "`%` right after `{{{before}}}` in template {text:?} reads as the start \
                         of an escape in the value (a `:` renders as `%3A`), so different values \
                         could render the same key; use another separator, such as `:` or `-`"
                    )));
                }
                buf.push(other);
            }
        }
    }
    if !buf.is_empty() {
        out.push(Segment::Text(buf));
    }
    Ok(out)
}

/// The characters that end a variable-width placeholder (the first one of
/// the text after it) and that `push_part` does not escape already, each
/// once. Every value is escaped for all of them.
pub(crate) fn separators(segments: &[Segment]) -> String {
    let mut out = String::new();
    for pair in segments.windows(2) {
        if let [placeholder, Segment::Text(text)] = pair
            && placeholder.is_variable_width()
            && let Some(c) = text.chars().next()
            && !escaped_by_default(c)
            && !out.contains(c)
        {
            out.push(c);
        }
    }
    out
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
    let valid = (root == "self" || is_ident(&root))
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
    let separators = separators(segments);
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
            // `|hash` is fixed-length hex; the others escape the separators
            // too when the template has any besides `:`.
            let (push, extra) = match filter.as_deref() {
                Some("hash") => (quote!(::larder::__private::push_part_hash), None),
                Some("lower") if separators.is_empty() => {
                    (quote!(::larder::__private::push_part_lower), None)
                }
                Some("lower") => (
                    quote!(::larder::__private::push_part_escaping_lower),
                    Some(&separators),
                ),
                _ if separators.is_empty() => (quote!(::larder::__private::push_part), None),
                _ => (
                    quote!(::larder::__private::push_part_escaping),
                    Some(&separators),
                ),
            };
            let extra = extra.map(|chars| quote!(, #chars));
            let span = lit.span();
            quote_spanned!(span=> #push(&mut __larder_key, &#root #(#fields)* #extra);)
        }
    });
    quote!({
        let mut __larder_key = ::std::string::String::with_capacity(#capacity);
        #(#pushes)*
        __larder_key
    })
}

/// The fuzzing entry point (`fuzz/fuzz_targets/key_template.rs`, and the
/// corpus replay in the tests below): any bytes as a template, rendered
/// when they parse. Must never panic.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn fuzz_one(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lit = LitStr::new(text, proc_macro2::Span::call_site());
    if let Ok(segments) = parse(&lit) {
        let _ = separators(&segments);
        let _ = render(&segments, &lit);
    }
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
    fn identifiers_are_rust_identifiers() {
        // U+06D6 is alphabetic but not XID_Start: Ident::new would panic.
        assert!(parse(&lit("{\u{6d6}lf}")).is_err());
        assert!(parse(&lit("{user.\u{6d6}x}")).is_err());
        assert!(parse(&lit("{user.fn}")).is_err(), "a keyword");
        assert!(parse(&lit("{self.id}")).is_ok());
        assert!(
            parse(&lit("{café}")).is_ok(),
            "non-ASCII identifiers are fine"
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
    fn separators_are_the_characters_that_end_a_value() {
        let seps = |t: &str| separators(&parse(&lit(t)).unwrap());
        assert_eq!(seps("user:{id}"), "");
        assert_eq!(seps("user:{id}:posts:{page}"), "");
        assert_eq!(seps("{a}-{b}"), "-");
        assert_eq!(seps("{a}.{b}/{c}.json"), "./");
        assert_eq!(seps("{a}-{b}-{c}"), "-");
        assert_eq!(seps("{a}->{b}"), "-");
        assert_eq!(
            seps("pre-fix.{a}"),
            "",
            "text before every placeholder is fixed"
        );
        assert_eq!(seps("{a|hash}-{b}"), "", "a hash has a fixed width");
        assert_eq!(seps("{a|lower}é{b}"), "é");
        assert_eq!(seps("{a}{{{b}}}"), "", "`{{` is escaped already");
    }

    #[test]
    fn touching_placeholders_are_rejected() {
        for (t, first, second) in [
            ("{a}{b}", "{a}", "{b}"),
            ("k:{a|lower}{b}", "{a|lower}", "{b}"),
            ("{self.id}{b|hash}", "{self.id}", "{b|hash}"),
        ] {
            let err = parse(&lit(t)).unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{first}` and `{second}` touch")),
                "{t}: {err}"
            );
            assert!(err.contains("would render the same key"), "{t}: {err}");
            assert!(err.contains(&format!("`{first}:{second}`")), "{t}: {err}");
        }
        for ok in ["{a|hash}{b}", "{a|hash}{b|hash}", "{a}:{b}", "{a}{{{b}}}"] {
            assert!(parse(&lit(ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn percent_right_after_a_placeholder_is_rejected() {
        for t in ["{a}%{b}", "{a}%", "k:{a|lower}%2F{b}"] {
            let err = parse(&lit(t)).unwrap_err().to_string();
            assert!(err.contains("`%` right after"), "{t}: {err}");
        }
        for ok in ["%{a}", "{a}:%{b}", "{a|hash}%{b}", "{a}{{%{b}"] {
            assert!(parse(&lit(ok)).is_ok(), "{ok}");
        }
    }

    #[test]
    fn escaping_call_only_when_a_template_needs_it() {
        let code = |t: &str| {
            let l = lit(t);
            render(&parse(&l).unwrap(), &l).to_string()
        };
        let plain = code("user:{id}");
        assert!(
            plain.contains(":: push_part (& mut __larder_key , & id)"),
            "{plain}"
        );
        assert!(!plain.contains("escaping"), "{plain}");
        let dashed = code("{a}-{b}");
        assert!(
            dashed.contains("push_part_escaping (& mut __larder_key , & a , \"-\")"),
            "{dashed}"
        );
        assert!(
            dashed.contains("push_part_escaping (& mut __larder_key , & b , \"-\")"),
            "{dashed}"
        );
        // `/` follows a hash, which has a fixed width: no value escapes it.
        let mixed = code("{a|lower}.{b|hash}/{c}");
        assert!(
            mixed.contains("push_part_escaping_lower (& mut __larder_key , & a , \".\")"),
            "{mixed}"
        );
        assert!(
            mixed.contains("push_part_hash (& mut __larder_key , & b)"),
            "{mixed}"
        );
        assert!(
            mixed.contains("push_part_escaping (& mut __larder_key , & c , \".\")"),
            "{mixed}"
        );
        let lower = code("doc:{owner}:{title|lower}");
        assert!(
            lower.contains(":: push_part_lower (& mut __larder_key , & title)"),
            "{lower}"
        );
        assert!(!lower.contains("escaping"), "{lower}");
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

    /// Every committed fuzz input and regression of `key_template`, as a
    /// test (`cargo xtask fuzz` explores further).
    #[test]
    fn fuzz_corpus_replays() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
        let mut seen = 0;
        for dir in ["corpus/key_template", "regressions/key_template"] {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                fuzz_one(&std::fs::read(&path).unwrap());
                seen += 1;
            }
        }
        assert!(seen > 0, "fuzz/corpus/key_template has no seed inputs");
    }
}
