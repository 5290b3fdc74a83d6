//! `bench`: a load generator for any backend URL. Operations are spread
//! over `--concurrency` tokio tasks on the multi-thread runtime; each task
//! records its latencies (microseconds) into its own vector, merged and
//! sorted once at the end, so measuring costs a push per operation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder::Cache;
use serde::Serialize;
use tokio::task::JoinSet;

use crate::cli::{BenchArgs, Workload};
use crate::exit::{CliError, CliResult};
use crate::output;
use crate::target::Target;

/// TTL of the keys the bench writes: they clean themselves up.
const BENCH_TTL: Duration = Duration::from_secs(120);
/// Keys the bench writes start with this (under the namespace).
const KEY_PREFIX: &str = "bench:";

/// The figures of one workload; the JSON form (one object per line) is
/// documented in `docs/cli.md` and stable.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BenchResult {
    /// Backend kind (`redis`, `memcached`, ...).
    pub(crate) backend: &'static str,
    /// `get`, `set` or `mixed`.
    pub(crate) workload: &'static str,
    /// Operations run.
    pub(crate) ops: u64,
    /// Tasks running them.
    pub(crate) concurrency: usize,
    /// Value size in bytes.
    pub(crate) value_size: usize,
    /// Operations per second over the whole run.
    pub(crate) ops_per_s: f64,
    /// Median latency.
    pub(crate) p50_us: u64,
    /// 99th percentile latency.
    pub(crate) p99_us: u64,
    /// Slowest operation.
    pub(crate) max_us: u64,
}

/// The workloads asked for, `all` expanded, each once, in order.
fn expand(asked: &[Workload]) -> Vec<Workload> {
    let mut out = Vec::new();
    for w in asked {
        let each: &[Workload] = match w {
            Workload::All => &[Workload::Get, Workload::Set, Workload::Mixed],
            one => std::slice::from_ref(one),
        };
        for w in each {
            if !out.contains(w) {
                out.push(*w);
            }
        }
    }
    out
}

fn name(w: Workload) -> &'static str {
    match w {
        Workload::Get => "get",
        Workload::Set => "set",
        Workload::Mixed => "mixed",
        Workload::All => "all",
    }
}

/// A small, fast generator for key choice (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// What every task shares.
struct Plan {
    cache: Cache,
    keys: Vec<String>,
    value: Bytes,
}

/// What one task measured.
struct TaskOutcome {
    latencies: Vec<u32>,
    first_error: Option<larder::Error>,
    errors: u64,
}

async fn task(plan: Arc<Plan>, workload: Workload, ops: u64, seed: u64) -> TaskOutcome {
    let mut latencies = Vec::with_capacity(usize::try_from(ops).unwrap_or(0));
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let (mut errors, mut first_error) = (0, None);
    let n = plan.keys.len() as u64;
    for _ in 0..ops {
        let r = rng.next();
        let key = &plan.keys[usize::try_from(r % n).unwrap_or(0)];
        let read = match workload {
            Workload::Get => true,
            Workload::Set => false,
            // 90% reads, 10% writes.
            Workload::Mixed | Workload::All => !(r >> 32).is_multiple_of(10),
        };
        let started = Instant::now();
        let result = if read {
            plan.cache.get_raw(key).await.map(drop)
        } else {
            plan.cache
                .set_raw(key, plan.value.clone())
                .ttl(BENCH_TTL)
                .await
                .map(drop)
        };
        latencies.push(u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX));
        if let Err(e) = result {
            errors += 1;
            first_error.get_or_insert(e);
        }
    }
    TaskOutcome {
        latencies,
        first_error,
        errors,
    }
}

/// Run `ops` operations of `workload` over `concurrency` tasks.
async fn measure(
    target: &Target,
    plan: &Arc<Plan>,
    workload: Workload,
    ops: u64,
    concurrency: usize,
) -> CliResult<BenchResult> {
    let tasks = concurrency as u64;
    let mut set = JoinSet::new();
    let started = Instant::now();
    for t in 0..tasks {
        let share = ops / tasks + u64::from(t < ops % tasks);
        set.spawn(task(Arc::clone(plan), workload, share, t + 1));
    }
    let mut latencies = Vec::with_capacity(usize::try_from(ops).unwrap_or(0));
    let (mut errors, mut first_error) = (0, None);
    while let Some(joined) = set.join_next().await {
        let outcome = joined.map_err(|e| CliError::failed(format!("a bench task failed: {e}")))?;
        latencies.extend_from_slice(&outcome.latencies);
        errors += outcome.errors;
        if first_error.is_none() {
            first_error = outcome.first_error;
        }
    }
    let elapsed = started.elapsed();
    if let Some(e) = first_error {
        let context = format!(
            "bench {}: {errors} of {ops} operations failed",
            name(workload)
        );
        return Err(target.error(&context, e));
    }
    latencies.sort_unstable();
    let at = |q: usize| {
        let i = (latencies.len().saturating_sub(1)) * q / 100;
        latencies.get(i).map_or(0, |&us| u64::from(us))
    };
    Ok(BenchResult {
        backend: plan.cache.backend().kind(),
        workload: name(workload),
        ops,
        concurrency,
        value_size: plan.value.len(),
        ops_per_s: ops as f64 / elapsed.as_secs_f64().max(1e-9),
        p50_us: at(50),
        p99_us: at(99),
        max_us: at(100),
    })
}

/// Write every key once so that reads hit.
async fn fill(target: &Target, plan: &Arc<Plan>, concurrency: usize) -> CliResult {
    let mut set = JoinSet::new();
    let chunk = plan.keys.len().div_ceil(concurrency.max(1));
    for part in 0..concurrency {
        let plan = Arc::clone(plan);
        set.spawn(async move {
            let from = (part * chunk).min(plan.keys.len());
            let to = ((part + 1) * chunk).min(plan.keys.len());
            for key in &plan.keys[from..to] {
                plan.cache
                    .set_raw(key, plan.value.clone())
                    .ttl(BENCH_TTL)
                    .await?;
            }
            Ok::<(), larder::Error>(())
        });
    }
    while let Some(joined) = set.join_next().await {
        joined
            .map_err(|e| CliError::failed(format!("a bench task failed: {e}")))?
            .map_err(|e| target.error("bench: writing the keys to read", e))?;
    }
    Ok(())
}

fn print_human(results: &[BenchResult]) {
    let mut rows = vec![
        [
            "backend",
            "workload",
            "ops",
            "concurrency",
            "value",
            "ops/s",
            "p50",
            "p99",
            "max",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for r in results {
        rows.push(vec![
            r.backend.to_owned(),
            r.workload.to_owned(),
            r.ops.to_string(),
            r.concurrency.to_string(),
            format!("{} B", r.value_size),
            format!("{:.0}", r.ops_per_s),
            output::micros(r.p50_us),
            output::micros(r.p99_us),
            output::micros(r.max_us),
        ]);
    }
    print!("{}", output::table(&rows));
}

/// `larder bench`.
pub(crate) async fn run(target: &Target, args: &BenchArgs) -> CliResult {
    if args.ops == 0 || args.concurrency == 0 || args.keys == 0 {
        return Err(CliError::usage(
            "--ops, --concurrency and --keys must be at least 1",
        ));
    }
    let workloads = expand(&args.workload);
    let plan = Arc::new(Plan {
        cache: target.cache.clone(),
        keys: (0..args.keys).map(|i| format!("{KEY_PREFIX}{i}")).collect(),
        value: Bytes::from(vec![b'x'; args.value_size]),
    });
    if workloads
        .iter()
        .any(|w| matches!(w, Workload::Get | Workload::Mixed))
    {
        fill(target, &plan, args.concurrency).await?;
    }
    let mut results = Vec::new();
    for workload in workloads {
        let result = measure(target, &plan, workload, args.ops, args.concurrency).await?;
        if args.json {
            let line = serde_json::to_string(&result)
                .map_err(|e| CliError::failed(format!("cannot write JSON: {e}")))?;
            println!("{line}");
        }
        results.push(result);
    }
    if !args.json {
        print_human(&results);
    }
    // The keys expire on their own; deleting them now leaves nothing behind.
    for chunk in plan.keys.chunks(1000) {
        target
            .cache
            .delete_many(chunk)
            .await
            .map_err(|e| target.error("bench: deleting its keys", e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_expands_once() {
        let got = expand(&[Workload::Set, Workload::All]);
        assert_eq!(got, [Workload::Set, Workload::Get, Workload::Mixed]);
    }
}
