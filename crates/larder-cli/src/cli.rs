//! The command line's grammar (clap derive): global target options and one
//! subcommand per operation.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use clap_complete::Shell;

use crate::exit::EXIT_CODES_HELP;

/// Inspect, edit, warm, migrate, benchmark and monitor larder caches.
#[derive(Debug, Parser)]
#[command(name = "larder", version, after_help = EXIT_CODES_HELP)]
pub(crate) struct Cli {
    /// Which cache to talk to.
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The cache a command works on. Without `--url` the URL comes from
/// `LARDER_URL` (then `CACHE_URL`, `REDIS_URL`), the config file, or
/// `mem://`.
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    /// Backend URL (redis://host:6379/0, memcached://h:11211, sqlite://file.db, sled://dir, mem://).
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// Config file (default: $LARDER_CONFIG, else ./larder.toml when present).
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
    /// Namespace as PREFIX or PREFIX:VERSION (default larder:v1).
    #[arg(long, global = true, value_name = "PREFIX[:VERSION]")]
    pub(crate) namespace: Option<String>,
    /// Key prefix (the first part of the namespace).
    #[arg(
        long,
        global = true,
        value_name = "PREFIX",
        conflicts_with = "namespace"
    )]
    pub(crate) prefix: Option<String>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check that the backend answers; prints the round trip.
    Ping,
    /// The backend's health report; exits 1 when it is unhealthy.
    Health(FormatArgs),
    /// Backend figures (server counters, hit rate, memory), once or every N seconds.
    Stats(StatsArgs),
    /// List keys of the namespace.
    List(ListArgs),
    /// Show a key's value, remaining TTL and tags; exits 1 when it is missing.
    Get(GetArgs),
    /// Store a value.
    Set(SetArgs),
    /// Delete keys.
    Delete(DeleteArgs),
    /// Invalidate by tag or by pattern.
    Invalidate(InvalidateArgs),
    /// Delete in bulk (all, a pattern, a tag or keys); asks for confirmation.
    Flush(FlushArgs),
    /// Fuzzy search over keys.
    Search(SearchArgs),
    /// Write the entries of a TOML file.
    Warm(WarmArgs),
    /// Print the effective configuration as TOML, secrets masked.
    ExportConfig,
    /// Copy entries (values, TTLs, tags) from one backend to another.
    Migrate(MigrateArgs),
    /// Load generator: ops/s and latency percentiles of get, set or mixed.
    Bench(BenchArgs),
    /// Full-screen live view of health, latency, hit rate and ops/s.
    Monitor(MonitorArgs),
    /// Shell completion script.
    Completions(CompletionsArgs),
}

/// Output format of commands that print a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// For people.
    Human,
    /// One JSON document (JSON lines with `--watch`).
    Json,
    /// Comma-separated values with a header line.
    Csv,
}

/// Output format of listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ListFormat {
    /// For people.
    Human,
    /// JSON.
    Json,
}

/// `--format human|json`.
#[derive(Debug, Args)]
pub(crate) struct FormatArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub(crate) format: ListFormat,
}

/// `larder stats`.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub(crate) format: Format,
    /// Print again every SECONDS, with rates since the previous sample (Ctrl-C stops).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) watch: Option<u64>,
    /// Write to FILE instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
}

/// `larder list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Glob over keys (without the namespace): `*`, `?`, `[abc]`.
    #[arg(long, default_value = "*")]
    pub(crate) pattern: String,
    /// Most keys listed.
    #[arg(long, default_value_t = 1000)]
    pub(crate) limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub(crate) format: ListFormat,
}

/// `larder get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The key (without the namespace).
    pub(crate) key: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub(crate) format: ListFormat,
}

/// `larder set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The key (without the namespace).
    pub(crate) key: String,
    /// The value: stored as a JSON string, or as the JSON document it is with `--json`.
    pub(crate) value: String,
    /// Time to live (300, 5m, 1h30m); default: the configured default TTL.
    #[arg(long)]
    pub(crate) ttl: Option<String>,
    /// Tags, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub(crate) tags: Vec<String>,
    /// Parse VALUE as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `larder delete`.
#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// The keys.
    #[arg(required = true)]
    pub(crate) keys: Vec<String>,
}

/// `larder invalidate`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["tag", "pattern"])))]
pub(crate) struct InvalidateArgs {
    /// Tags (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub(crate) tag: Vec<String>,
    /// Glob over keys (without the namespace).
    #[arg(long)]
    pub(crate) pattern: Option<String>,
}

/// `larder flush`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["all", "pattern", "tag", "key"])))]
pub(crate) struct FlushArgs {
    /// Every key and tag of the namespace (and only of the namespace).
    #[arg(long)]
    pub(crate) all: bool,
    /// Keys matching a glob.
    #[arg(long)]
    pub(crate) pattern: Option<String>,
    /// Keys carrying these tags (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub(crate) tag: Vec<String>,
    /// These keys (repeat or comma-separate).
    #[arg(long, value_delimiter = ',')]
    pub(crate) key: Vec<String>,
    /// Do not ask; required when stdin is not a terminal.
    #[arg(long, short = 'y')]
    pub(crate) yes: bool,
}

/// `larder search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// What to look for in keys.
    pub(crate) query: String,
    /// Lowest similarity kept, 0 to 1.
    #[arg(long, default_value_t = 0.6)]
    pub(crate) threshold: f64,
    /// Most matches.
    #[arg(long, default_value_t = 10)]
    pub(crate) limit: usize,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ListFormat::Human)]
    pub(crate) format: ListFormat,
}

/// `larder warm`.
#[derive(Debug, Args)]
pub(crate) struct WarmArgs {
    /// TOML file of `[[entry]]` tables: key, value, ttl, tags.
    #[arg(long)]
    pub(crate) file: PathBuf,
}

/// `larder migrate`.
#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// Source backend URL.
    #[arg(long)]
    pub(crate) from: String,
    /// Target backend URL.
    #[arg(long)]
    pub(crate) to: String,
    /// Glob over keys of the namespace (default: every key).
    #[arg(long, default_value = "*")]
    pub(crate) pattern: String,
    /// TTL for entries whose remaining life the source cannot tell (Memcached).
    #[arg(long)]
    pub(crate) ttl_when_unknown: Option<String>,
}

/// A bench workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Workload {
    /// Reads of keys written beforehand.
    Get,
    /// Writes.
    Set,
    /// 90% reads, 10% writes.
    Mixed,
    /// get, set and mixed in turn.
    All,
}

/// `larder bench`.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Workloads (repeat or comma-separate): get, set, mixed, all.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "get,set")]
    pub(crate) workload: Vec<Workload>,
    /// Operations per workload.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) ops: u64,
    /// Operations in flight at once (tokio tasks).
    #[arg(long, default_value_t = 50)]
    pub(crate) concurrency: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    pub(crate) value_size: usize,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub(crate) keys: usize,
    /// One JSON object per workload (JSON lines).
    #[arg(long)]
    pub(crate) json: bool,
}

/// `larder monitor`.
#[derive(Debug, Args)]
pub(crate) struct MonitorArgs {
    /// Time between probes (500ms, 1s, 5s).
    #[arg(long, default_value = "1s")]
    pub(crate) interval: String,
    /// Serve the figures as Prometheus metrics on ADDR (127.0.0.1:9187).
    #[arg(long, value_name = "ADDR")]
    pub(crate) prometheus: Option<std::net::SocketAddr>,
}

/// `larder completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub(crate) shell: Shell,
}
