//! Bulk removal: `invalidate` (tags or a pattern) and `flush` (with
//! confirmation).

use std::io::{BufRead, IsTerminal, Write};

use larder::Count;

use crate::cli::{FlushArgs, InvalidateArgs};
use crate::exit::{CliError, CliResult};
use crate::target::Target;

/// "3 keys", or an honest "an unknown number of keys".
fn keys(count: Count) -> String {
    match count.exact() {
        Some(1) => "1 key".to_owned(),
        Some(n) => format!("{n} keys"),
        None => "an unknown number of keys (the backend cannot count them)".to_owned(),
    }
}

/// `larder invalidate`.
pub(crate) async fn invalidate(target: &Target, args: &InvalidateArgs) -> CliResult {
    let count = match &args.pattern {
        Some(pattern) => target.cache.invalidate_pattern(pattern).await,
        None => target.cache.invalidate_tags(&args.tag).await,
    }
    .map_err(|e| target.error("invalidate", e))?;
    println!("invalidated {}", keys(count));
    Ok(())
}

/// What a flush removes, for the confirmation question.
fn describe(args: &FlushArgs) -> String {
    if args.all {
        "every key of the namespace".to_owned()
    } else if let Some(p) = &args.pattern {
        format!("every key matching {p:?}")
    } else if !args.tag.is_empty() {
        format!("every key tagged {}", args.tag.join(", "))
    } else {
        format!("the keys {}", args.key.join(", "))
    }
}

/// Ask on the terminal; `false` unless the answer is yes.
fn confirm(question: &str) -> CliResult<bool> {
    eprint!("{question} [y/N] ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// `larder flush`: asks first on a terminal, refuses without `--yes`
/// elsewhere (exit 2).
pub(crate) async fn flush(target: &Target, args: &FlushArgs) -> CliResult {
    let what = describe(args);
    let namespace = target
        .cache
        .namespace()
        .head()
        .trim_end_matches(':')
        .to_owned();
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::usage(format!(
                "refusing to flush {what} in {namespace} on {} without --yes (stdin is not a \
                 terminal, so there is no one to ask)",
                target.host
            )));
        }
        if !confirm(&format!("Flush {what} in {namespace} on {}?", target.host))? {
            return Err(CliError::failed("flush cancelled"));
        }
    }
    let cache = &target.cache;
    let count = if args.all {
        cache.clear().await
    } else if let Some(p) = &args.pattern {
        cache.invalidate_pattern(p).await
    } else if !args.tag.is_empty() {
        cache.invalidate_tags(&args.tag).await
    } else {
        cache.delete_many(&args.key).await.map(Count::Exact)
    }
    .map_err(|e| target.error("flush", e))?;
    println!("flushed {}", keys(count));
    Ok(())
}
