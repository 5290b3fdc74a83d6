//! Exit codes and the one error type of the command line.

use std::fmt;
use std::process::ExitCode;

/// What `larder --help` says about exit codes (also in `docs/cli.md`).
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  the operation failed (a write refused, a key not found, a backend
     unhealthy, entries that failed to warm or migrate)
  2  usage error (bad option or value, invalid configuration, a flush
     refused without --yes when stdin is not a terminal)
  3  backend unreachable (the message names the host)";

/// How the process ends when a command fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The operation failed: 1.
    Failed,
    /// The invocation or configuration is wrong: 2.
    Usage,
    /// The backend could not be reached: 3.
    Unreachable,
}

impl Exit {
    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::Unreachable => 3,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// A failed command: the exit code and the message printed on stderr.
#[derive(Debug)]
pub(crate) struct CliError {
    /// The exit code.
    pub(crate) exit: Exit,
    /// What went wrong, for a person.
    pub(crate) message: String,
}

/// Result of a command.
pub(crate) type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// The operation failed (exit 1).
    pub(crate) fn failed(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Failed,
            message: message.into(),
        }
    }

    /// A usage error (exit 2).
    pub(crate) fn usage(message: impl Into<String>) -> Self {
        CliError {
            exit: Exit::Usage,
            message: message.into(),
        }
    }

    /// The backend at `host` could not be reached (exit 3).
    pub(crate) fn unreachable(host: &str, error: impl fmt::Display) -> Self {
        CliError {
            exit: Exit::Unreachable,
            message: format!("cannot reach {host}: {error}"),
        }
    }

    /// A library error met while talking to the backend at `host`: a
    /// connection failure or timeout is exit 3, a configuration error exit
    /// 2, anything else exit 1.
    pub(crate) fn from_larder(host: &str, context: &str, error: larder::Error) -> Self {
        if error.is_transient() {
            return CliError::unreachable(host, error);
        }
        let message = if context.is_empty() {
            error.to_string()
        } else {
            format!("{context}: {error}")
        };
        match error {
            larder::Error::Config { .. } => CliError::usage(message),
            _ => CliError::failed(message),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<std::io::Error> for CliError {
    fn from(error: std::io::Error) -> Self {
        CliError::failed(error.to_string())
    }
}
