//! `ping`, `health` and `stats`: what the backend says about itself.

use std::fs::File;
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use larder::HealthReport;
use serde_json::{Map, Value, json};

use crate::cli::{Format, ListFormat, StatsArgs};
use crate::exit::{CliError, CliResult};
use crate::output;
use crate::probe;
use crate::server::{Rates, ServerCounters};
use crate::target::Target;

/// Why a report is not healthy, in one line.
fn failure(report: &HealthReport) -> String {
    if report.reasons.is_empty() {
        report.status.name().to_owned()
    } else {
        report.reasons.join("; ")
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// `larder ping`: exit 3 when the backend does not answer.
pub(crate) async fn ping(target: &Target) -> CliResult {
    let report = probe::report(&target.cache).await;
    if !report.is_healthy() {
        return Err(CliError::unreachable(&target.host, failure(&report)));
    }
    println!(
        "PONG from {} in {}",
        report.label,
        output::micros(micros(report.latency))
    );
    Ok(())
}

/// `larder health`: exit 1 when the backend is unhealthy.
pub(crate) async fn health(target: &Target, format: ListFormat) -> CliResult {
    let report = probe::report(&target.cache).await;
    match format {
        ListFormat::Json => println!("{}", report.to_json()),
        ListFormat::Human => {
            let mut rows = vec![
                row("status", report.status.name()),
                row("backend", report.backend),
                row("label", &report.label),
                row("latency", &output::micros(micros(report.latency))),
            ];
            rows.extend(report.reasons.iter().map(|r| row("reason", r)));
            rows.extend(report.details.iter().map(|(n, v)| row(n, v)));
            for route in &report.routes {
                let r = &route.report;
                let what = format!(
                    "{} ({}, {})",
                    r.status,
                    r.label,
                    output::micros(micros(r.latency))
                );
                rows.push(row(
                    &format!("route {} {:?}", route.name, route.prefix),
                    &what,
                ));
            }
            print!("{}", output::table(&rows));
        }
    }
    if report.is_healthy() {
        Ok(())
    } else {
        Err(CliError::failed(format!(
            "{} is unhealthy: {}",
            target.host,
            failure(&report)
        )))
    }
}

fn row(name: &str, value: &str) -> Vec<String> {
    vec![name.to_owned(), value.to_owned()]
}

fn details_json(report: &HealthReport) -> Value {
    let map: Map<String, Value> = report
        .details
        .iter()
        .map(|(n, v)| (n.clone(), Value::String(v.clone())))
        .collect();
    Value::Object(map)
}

/// One reading for `stats`.
struct Sample {
    at: Instant,
    unix: u64,
    report: HealthReport,
    server: ServerCounters,
    errors: u64,
}

async fn sample(target: &Target) -> Sample {
    let report = probe::report(&target.cache).await;
    Sample {
        at: Instant::now(),
        unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        server: ServerCounters::from_details(&report.details),
        report,
        errors: probe::counters(&target.cache).errors,
    }
}

const CSV_HEADER: [&str; 13] = [
    "timestamp",
    "backend",
    "label",
    "healthy",
    "latency_us",
    "hits",
    "misses",
    "hit_rate",
    "commands",
    "ops_per_s",
    "interval_hit_rate",
    "keys",
    "memory_bytes",
];

/// `larder stats`: once, or every `--watch` seconds with rates.
pub(crate) async fn stats(target: &Target, args: &StatsArgs) -> CliResult {
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            File::create(path)
                .map_err(|e| CliError::failed(format!("cannot write {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout()),
    };
    if args.format == Format::Csv {
        out.write_all(output::csv_line(&CSV_HEADER).as_bytes())?;
    }
    let mut previous: Option<Sample> = None;
    loop {
        let now = sample(target).await;
        let rates = previous
            .as_ref()
            .map(|p| now.server.rates_since(&p.server, now.at - p.at));
        write_sample(&mut *out, args.format, &now, rates)?;
        out.flush()?;
        let Some(seconds) = args.watch else {
            return if now.report.is_healthy() {
                Ok(())
            } else {
                Err(CliError::failed(format!(
                    "{} is unhealthy: {}",
                    target.host,
                    failure(&now.report)
                )))
            };
        };
        previous = Some(now);
        tokio::time::sleep(Duration::from_secs(seconds.max(1))).await;
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn write_sample(
    out: &mut dyn Write,
    format: Format,
    s: &Sample,
    rates: Option<Rates>,
) -> std::io::Result<()> {
    let r = &s.report;
    let c = &s.server;
    let rates = rates.unwrap_or_default();
    match format {
        Format::Json => {
            let value = json!({
                "timestamp": s.unix,
                "backend": r.backend,
                "label": r.label,
                "healthy": r.is_healthy(),
                "status": r.status.name(),
                "latency_us": micros(r.latency),
                "hits": c.hits,
                "misses": c.misses,
                "hit_rate": c.hit_rate(),
                "commands": c.commands,
                "ops_per_s": rates.ops_per_s,
                "interval_hit_rate": rates.hit_rate,
                "keys": c.keys,
                "memory_bytes": c.memory,
                "probe_errors": s.errors,
                "details": details_json(r),
            });
            output::json_line(out, &value)
        }
        Format::Csv => {
            let fields = [
                s.unix.to_string(),
                r.backend.to_owned(),
                r.label.clone(),
                r.is_healthy().to_string(),
                micros(r.latency).to_string(),
                opt(c.hits),
                opt(c.misses),
                opt(c.hit_rate().map(|h| format!("{h:.4}"))),
                opt(c.commands),
                opt(rates.ops_per_s.map(|o| format!("{o:.1}"))),
                opt(rates.hit_rate.map(|h| format!("{h:.4}"))),
                opt(c.keys),
                opt(c.memory),
            ];
            out.write_all(output::csv_line(&fields).as_bytes())
        }
        Format::Human => {
            let status = r.status.name();
            let mut rows = vec![
                row("backend", &format!("{} ({})", r.backend, r.label)),
                row("status", status),
                row("latency", &output::micros(micros(r.latency))),
            ];
            if let (Some(h), Some(m)) = (c.hits, c.misses) {
                let rate = output::percent(c.hit_rate());
                rows.push(row("hit rate", &format!("{rate} ({h} hits, {m} misses)")));
            }
            if let Some(ops) = rates.ops_per_s {
                rows.push(row("ops/s", &format!("{ops:.1}")));
                rows.push(row("hit rate (interval)", &output::percent(rates.hit_rate)));
            }
            rows.extend(r.details.iter().map(|(n, v)| row(n, v)));
            writeln!(out, "{}", output::table(&rows))
        }
    }
}
