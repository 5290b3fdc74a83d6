//! Output formatting shared by the commands: durations, latencies, aligned
//! tables, CSV fields and JSON lines.

use std::io::Write;
use std::time::Duration;

use larder::Expiry;

/// `1h2m3s`, `45s`, `250ms`.
pub(crate) fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// A latency in microseconds for people: `350 us`, `1.25 ms`, `2.10 s`.
pub(crate) fn micros(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} us"),
        1_000..1_000_000 => format!("{:.2} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

/// A remaining life for people: `59s`, `never`, `unknown`.
pub(crate) fn expiry(e: Expiry) -> String {
    match e {
        Expiry::Never => "never".to_owned(),
        Expiry::After(d) => duration(d),
        _ => "unknown".to_owned(),
    }
}

/// A remaining life in JSON: seconds, `null` for no expiry, `"unknown"`.
pub(crate) fn expiry_json(e: Expiry) -> serde_json::Value {
    match e {
        Expiry::Never => serde_json::Value::Null,
        Expiry::After(d) => serde_json::json!(d.as_secs_f64()),
        _ => serde_json::json!("unknown"),
    }
}

/// A fraction as a percentage, `-` when absent.
pub(crate) fn percent(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0))
}

/// Rows as left-aligned columns separated by two spaces.
pub(crate) fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i].saturating_sub(cell.chars().count()) + 2;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
    }
    out
}

/// One CSV field, quoted when it needs to be.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One CSV line.
pub(crate) fn csv_line<S: AsRef<str>>(fields: &[S]) -> String {
    let fields: Vec<String> = fields.iter().map(|f| csv_field(f.as_ref())).collect();
    format!("{}\n", fields.join(","))
}

/// Write `value` as one JSON line to `out`.
pub(crate) fn json_line(out: &mut dyn Write, value: &serde_json::Value) -> std::io::Result<()> {
    writeln!(out, "{value}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_latencies() {
        assert_eq!(duration(Duration::from_secs(3723)), "1h2m3s");
        assert_eq!(duration(Duration::from_secs(60)), "1m");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(micros(350), "350 us");
        assert_eq!(micros(1250), "1.25 ms");
        assert_eq!(expiry(Expiry::Unknown), "unknown");
    }

    #[test]
    fn tables_and_csv() {
        let t = table(&[
            vec!["a".into(), "bb".into()],
            vec!["ccc".into(), "d".into()],
        ]);
        assert_eq!(t, "a    bb\nccc  d\n");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_line(&["x", "y\"z"]), "x,\"y\"\"z\"\n");
    }
}
