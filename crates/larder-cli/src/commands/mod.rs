//! One module per group of commands; [`run`] dispatches.

mod bench;
mod config;
mod keys;
mod migrate;
mod monitor;
mod purge;
mod status;
mod warm;

use clap::CommandFactory;

use crate::cli::{Cli, Command};
use crate::exit::CliResult;
use crate::target;

/// Run the command `cli` names.
pub(crate) async fn run(cli: Cli) -> CliResult {
    let args = &cli.target;
    match cli.command {
        Command::Completions(c) => {
            let mut command = Cli::command();
            clap_complete::generate(c.shell, &mut command, "larder", &mut std::io::stdout());
            Ok(())
        }
        Command::ExportConfig => config::export(&target::config(args)?),
        Command::Migrate(m) => migrate::run(&target::config(args)?, &m).await,
        Command::Monitor(m) => monitor::run(&target::config(args)?, &m).await,
        command => {
            let target = target::open(args).await?;
            let result = match command {
                Command::Ping => status::ping(&target).await,
                Command::Health(f) => status::health(&target, f.format).await,
                Command::Stats(s) => status::stats(&target, &s).await,
                Command::List(l) => keys::list(&target, &l).await,
                Command::Get(g) => keys::get(&target, &g).await,
                Command::Set(s) => keys::set(&target, &s).await,
                Command::Delete(d) => keys::delete(&target, &d.keys).await,
                Command::Search(s) => keys::search(&target, &s).await,
                Command::Invalidate(i) => purge::invalidate(&target, &i).await,
                Command::Flush(f) => purge::flush(&target, &f).await,
                Command::Warm(w) => warm::run(&target, &w).await,
                Command::Bench(b) => bench::run(&target, &b).await,
                Command::Completions(_)
                | Command::ExportConfig
                | Command::Migrate(_)
                | Command::Monitor(_) => Ok(()),
            };
            // Close even after a failure; the command's error comes first.
            let closed = target.cache.close().await;
            result?;
            closed.map_err(|e| target.error("closing the cache", e))
        }
    }
}
