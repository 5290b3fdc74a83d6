//! The `larder` command line: see `docs/cli.md`, or `larder --help`.

use std::process::ExitCode;

use clap::Parser;

mod cli;
mod commands;
mod exit;
mod output;
mod probe;
mod server;
mod target;

fn main() -> ExitCode {
    // Usage errors exit 2 and --help 0, from clap.
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("larder: cannot start the async runtime: {e}");
            return exit::Exit::Failed.into();
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("larder: {error}");
            error.exit.into()
        }
    }
}
