//! End-to-end tests of the `larder` binary against a real Redis server,
//! Memcached server and SQLite files: exit codes, round trips, flush
//! confirmation, warm files, migration, config export, bench output,
//! completions and help.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

mod common;

use common::{assert_code, json, larder, run, stderr, stdout};
use larder_testkit::memcached::MemcachedServer;
use larder_testkit::redis::{RedisServer, free_port};

#[test]
fn exit_codes_0_1_2_3() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let url = redis.url();

    let ok = run(dir.path(), &url, &["ping"]);
    assert_code(&ok, 0);
    assert!(stdout(&ok).starts_with("PONG"), "{}", stdout(&ok));

    let missing = run(dir.path(), &url, &["get", "no-such-key"]);
    assert_code(&missing, 1);
    assert!(
        stderr(&missing).contains("not found"),
        "{}",
        stderr(&missing)
    );

    let usage = run(dir.path(), &url, &["get", "--no-such-option", "k"]);
    assert_code(&usage, 2);
    let bad_ttl = run(dir.path(), &url, &["set", "k", "v", "--ttl", "soon"]);
    assert_code(&bad_ttl, 2);

    let closed = free_port();
    let unreachable_url = format!("redis://127.0.0.1:{closed}/0");
    for args in [&["ping"][..], &["get", "k"], &["set", "k", "v"], &["stats"]] {
        let down = run(dir.path(), &unreachable_url, args);
        assert_code(&down, 3);
        assert!(
            stderr(&down).contains(&format!("127.0.0.1:{closed}")),
            "{args:?}: {}",
            stderr(&down)
        );
    }
}

#[test]
fn set_get_list_search_invalidate_delete_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let url = redis.url();
    let ns = ["--namespace", "app:v2"];
    let cmd = |args: &[&str]| {
        let mut all = ns.to_vec();
        all.extend_from_slice(args);
        run(dir.path(), &url, &all)
    };

    assert_code(
        &cmd(&[
            "set",
            "user:1",
            r#"{"name":"Ada"}"#,
            "--json",
            "--ttl",
            "1m",
            "--tags",
            "users,admins",
        ]),
        0,
    );
    assert_code(&cmd(&["set", "user:2", "Grace", "--tags", "users"]), 0);
    assert_code(&cmd(&["set", "page:home", "<html>"]), 0);

    let got = json(&cmd(&["get", "user:1", "--format", "json"]));
    assert_eq!(got["value"], serde_json::json!({"name": "Ada"}));
    let ttl = got["ttl_s"].as_f64().unwrap();
    assert!(ttl > 0.0 && ttl <= 66.0, "{ttl}");
    assert_eq!(got["tags"], serde_json::json!(["users", "admins"]));
    let human = cmd(&["get", "user:2"]);
    assert_code(&human, 0);
    assert!(stdout(&human).contains("Grace") && stdout(&human).contains("users"));

    // The namespace keeps other namespaces out.
    let other = run(dir.path(), &url, &["get", "user:1"]);
    assert_code(&other, 1);

    let mut keys: Vec<String> = serde_json::from_value(json(&cmd(&[
        "list",
        "--pattern",
        "user:*",
        "--format",
        "json",
    ])))
    .unwrap();
    keys.sort();
    assert_eq!(keys, ["user:1", "user:2"]);
    let limited = json(&cmd(&["list", "--limit", "1", "--format", "json"]));
    assert_eq!(limited.as_array().unwrap().len(), 1);

    // Fuzzy over keys: a near miss of "user" finds both users first.
    let found = json(&cmd(&["search", "usr", "--format", "json"]));
    let keys: Vec<&str> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap())
        .collect();
    assert!(
        keys.len() >= 2 && keys[..2].iter().all(|k| k.starts_with("user:")),
        "{found}"
    );
    let strict = json(&cmd(&[
        "search",
        "usr",
        "--format",
        "json",
        "--threshold",
        "0.99",
    ]));
    assert_eq!(strict, serde_json::json!([]));
    let exact = json(&cmd(&["search", "home", "--format", "json"]));
    assert_eq!(exact[0]["key"], "page:home");
    assert_eq!(exact[0]["value"], "<html>");

    let invalidated = cmd(&["invalidate", "--tag", "admins"]);
    assert_code(&invalidated, 0);
    assert!(
        stdout(&invalidated).contains("invalidated 1 key"),
        "{}",
        stdout(&invalidated)
    );
    assert_code(&cmd(&["get", "user:1"]), 1);
    assert_code(&cmd(&["get", "user:2"]), 0);

    let by_pattern = cmd(&["invalidate", "--pattern", "page:*"]);
    assert!(
        stdout(&by_pattern).contains("invalidated 1 key"),
        "{}",
        stdout(&by_pattern)
    );
    assert_code(&cmd(&["get", "page:home"]), 1);

    let deleted = cmd(&["delete", "user:2", "user:9"]);
    assert_code(&deleted, 0);
    assert!(
        stdout(&deleted).contains("deleted 1 of 2"),
        "{}",
        stdout(&deleted)
    );
    assert_code(&cmd(&["get", "user:2"]), 1);
}

#[test]
fn invalidate_reports_unknown_counts_honestly() {
    let dir = tempfile::tempdir().unwrap();
    let memcached = MemcachedServer::start();
    let url = memcached.url();
    assert_code(&run(dir.path(), &url, &["set", "a", "1", "--tags", "t"]), 0);
    let out = run(dir.path(), &url, &["invalidate", "--tag", "t"]);
    assert_code(&out, 0);
    assert!(stdout(&out).contains("unknown"), "{}", stdout(&out));
    assert_code(&run(dir.path(), &url, &["get", "a"]), 1);
}

#[test]
fn flush_refuses_without_yes_when_stdin_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let url = redis.url();
    assert_code(&run(dir.path(), &url, &["set", "k", "v"]), 0);

    let refused = run(dir.path(), &url, &["flush", "--all"]);
    assert_code(&refused, 2);
    assert!(stderr(&refused).contains("--yes"), "{}", stderr(&refused));
    assert_code(&run(dir.path(), &url, &["get", "k"]), 0);

    let missing_what = run(dir.path(), &url, &["flush", "--yes"]);
    assert_code(&missing_what, 2);

    let flushed = run(dir.path(), &url, &["flush", "--all", "--yes"]);
    assert_code(&flushed, 0);
    assert_code(&run(dir.path(), &url, &["get", "k"]), 1);
}

#[test]
fn warm_writes_a_file_and_names_the_bad_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("cache.db");
    let url = format!("sqlite://{}", db.display());
    let good = dir.path().join("warm.toml");
    std::fs::write(
        &good,
        "[[entry]]\nkey = \"user:1\"\nvalue = { name = \"Ada\" }\nttl = \"10m\"\ntags = [\"users\"]\n\n\
         [[entry]]\nkey = \"count\"\nvalue = 42\n",
    )
    .unwrap();
    let out = run(
        dir.path(),
        &url,
        &["warm", "--file", good.to_str().unwrap()],
    );
    assert_code(&out, 0);
    assert!(stdout(&out).contains("wrote 2 of 2"), "{}", stdout(&out));
    let got = json(&run(
        dir.path(),
        &url,
        &["get", "user:1", "--format", "json"],
    ));
    assert_eq!(got["value"]["name"], "Ada");
    assert_eq!(got["tags"], serde_json::json!(["users"]));
    assert!(got["ttl_s"].as_f64().unwrap() > 500.0);

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[entry]]\nkey = \"a\"\nvalue = 1\n\n[[entry]]\nkey = \"b\"\nvalue = \n",
    )
    .unwrap();
    let out = run(dir.path(), &url, &["warm", "--file", bad.to_str().unwrap()]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("bad.toml line 7"), "{}", stderr(&out));
    let no_key = dir.path().join("nokey.toml");
    std::fs::write(&no_key, "[[entry]]\nvalue = 1\nttl = \"5m\"\n").unwrap();
    let out = run(
        dir.path(),
        &url,
        &["warm", "--file", no_key.to_str().unwrap()],
    );
    assert_code(&out, 2);
    assert!(
        stderr(&out).contains("line 1") && stderr(&out).contains("key"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn migrate_sqlite_to_redis_keeps_values_ttls_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let sqlite = format!("sqlite://{}", dir.path().join("from.db").display());
    for i in 0..30 {
        let key = format!("item:{i}");
        assert_code(
            &run(
                dir.path(),
                &sqlite,
                &[
                    "set",
                    &key,
                    &format!("value {i}"),
                    "--ttl",
                    "1h",
                    "--tags",
                    "items",
                ],
            ),
            0,
        );
    }
    assert_code(
        &run(dir.path(), &sqlite, &["set", "other", "x", "--ttl", "1h"]),
        0,
    );

    let out = larder(dir.path())
        .args([
            "migrate",
            "--from",
            &sqlite,
            "--to",
            &redis.url(),
            "--pattern",
            "item:*",
        ])
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(
        stdout(&out).contains("30 of 30 keys copied"),
        "{}",
        stdout(&out)
    );
    // Not a terminal: plain progress lines.
    assert!(
        stderr(&out).contains("migrate: 30/30 keys"),
        "{}",
        stderr(&out)
    );

    let got = json(&run(
        dir.path(),
        &redis.url(),
        &["get", "item:7", "--format", "json"],
    ));
    assert_eq!(got["value"], "value 7");
    assert_eq!(got["tags"], serde_json::json!(["items"]));
    let ttl = got["ttl_s"].as_f64().unwrap();
    assert!(ttl > 3000.0 && ttl <= 3960.0, "{ttl}");
    assert_code(&run(dir.path(), &redis.url(), &["get", "other"]), 1);
    // Tags work at the target.
    let inv = run(dir.path(), &redis.url(), &["invalidate", "--tag", "items"]);
    assert!(
        stdout(&inv).contains("invalidated 30 keys"),
        "{}",
        stdout(&inv)
    );

    let closed = format!("redis://127.0.0.1:{}/0", free_port());
    let out = larder(dir.path())
        .args(["migrate", "--from", &sqlite, "--to", &closed])
        .output()
        .unwrap();
    assert_code(&out, 3);
}

#[test]
fn export_config_masks_passwords() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("larder.toml"),
        "prefix = \"svc\"\ndefault_ttl = \"5m\"\n[[route]]\nprefix = \"session:\"\nurl = \"redis://:routepw@127.0.0.1:1/0\"\n",
    )
    .unwrap();
    let out = larder(dir.path())
        .args([
            "--url",
            "redis://app:hunter2@127.0.0.1:1/0",
            "export-config",
        ])
        .output()
        .unwrap();
    assert_code(&out, 0);
    let text = stdout(&out);
    assert!(
        !text.contains("hunter2") && !text.contains("routepw"),
        "{text}"
    );
    assert!(text.contains("***"), "{text}");
    assert!(
        text.contains("prefix = \"svc\"") && text.contains("default_ttl = 300"),
        "{text}"
    );
    assert!(text.contains("[[route]]"), "{text}");
    // The environment's fallbacks apply too.
    let out = larder(dir.path())
        .env("CACHE_URL", "redis://:envpw@127.0.0.1:2/0")
        .env("CACHE_PREFIX", "infra")
        .arg("export-config")
        .output()
        .unwrap();
    assert_code(&out, 0);
    assert!(stdout(&out).contains("127.0.0.1:2") && !stdout(&out).contains("envpw"));
    // A broken config file is a usage error.
    std::fs::write(dir.path().join("larder.toml"), "default_ttl = \"soon\"\n").unwrap();
    assert_code(
        &larder(dir.path()).arg("export-config").output().unwrap(),
        2,
    );
}

#[test]
fn bench_json_has_exactly_the_documented_fields() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let out = run(
        dir.path(),
        &redis.url(),
        &[
            "bench",
            "--workload",
            "all",
            "--ops",
            "2000",
            "--concurrency",
            "8",
            "--value-size",
            "64",
            "--keys",
            "100",
            "--json",
        ],
    );
    assert_code(&out, 0);
    let lines: Vec<serde_json::Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let workloads: Vec<&str> = lines
        .iter()
        .map(|l| l["workload"].as_str().unwrap())
        .collect();
    assert_eq!(workloads, ["get", "set", "mixed"]);
    let mut expected = [
        "backend",
        "workload",
        "ops",
        "concurrency",
        "value_size",
        "ops_per_s",
        "p50_us",
        "p99_us",
        "max_us",
    ];
    expected.sort_unstable();
    for line in &lines {
        let mut fields: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(fields, expected);
        assert_eq!(line["backend"], "redis");
        assert_eq!(line["ops"], 2000);
        assert_eq!(line["concurrency"], 8);
        assert_eq!(line["value_size"], 64);
        assert!(line["ops_per_s"].as_f64().unwrap() > 0.0);
        let (p50, p99, max) = (
            line["p50_us"].as_u64().unwrap(),
            line["p99_us"].as_u64().unwrap(),
            line["max_us"].as_u64().unwrap(),
        );
        assert!(p50 <= p99 && p99 <= max, "{line}");
    }
    // The bench cleans up after itself.
    assert_eq!(
        json(&run(
            dir.path(),
            &redis.url(),
            &["list", "--format", "json"]
        )),
        serde_json::json!([])
    );
    assert_code(&run(dir.path(), &redis.url(), &["bench", "--ops", "0"]), 2);
}

#[test]
fn stats_show_server_counters_and_hit_rate() {
    let dir = tempfile::tempdir().unwrap();
    let redis = RedisServer::start();
    let url = redis.url();
    assert_code(&run(dir.path(), &url, &["set", "k", "v"]), 0);
    assert_code(&run(dir.path(), &url, &["get", "k"]), 0);
    assert_code(&run(dir.path(), &url, &["get", "missing"]), 1);
    let stats = json(&run(dir.path(), &url, &["stats", "--format", "json"]));
    assert!(stats["hits"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["misses"].as_u64().unwrap() >= 1, "{stats}");
    let rate = stats["hit_rate"].as_f64().unwrap();
    assert!(rate > 0.0 && rate < 1.0, "{stats}");
    assert!(stats["keys"].as_u64().unwrap() >= 1, "{stats}");

    let csv_file = dir.path().join("stats.csv");
    let out = run(
        dir.path(),
        &url,
        &[
            "stats",
            "--format",
            "csv",
            "--output",
            csv_file.to_str().unwrap(),
        ],
    );
    assert_code(&out, 0);
    let csv = std::fs::read_to_string(&csv_file).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 2, "{csv}");
    assert!(lines[0].starts_with("timestamp,backend,label,healthy"));
    assert!(lines[1].contains(",redis,"), "{csv}");

    let memcached = MemcachedServer::start();
    assert_code(&run(dir.path(), &memcached.url(), &["set", "k", "v"]), 0);
    assert_code(&run(dir.path(), &memcached.url(), &["get", "k"]), 0);
    let stats = json(&run(
        dir.path(),
        &memcached.url(),
        &["stats", "--format", "json"],
    ));
    assert!(stats["hits"].as_u64().unwrap() >= 1, "{stats}");
    assert!(stats["commands"].as_u64().unwrap() >= 2, "{stats}");
    let human = run(dir.path(), &memcached.url(), &["health"]);
    assert_code(&human, 0);
    assert!(stdout(&human).contains("healthy"));
}

#[test]
fn completions_and_every_help_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish"] {
        let out = larder(dir.path())
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_code(&out, 0);
        assert!(stdout(&out).contains("larder"), "{shell}");
        assert!(stdout(&out).len() > 500, "{shell}");
    }
    let top = larder(dir.path()).arg("--help").output().unwrap();
    assert_code(&top, 0);
    assert!(
        stdout(&top).contains("Exit codes:") && stdout(&top).contains("3  backend unreachable")
    );
    let subcommands = [
        "ping",
        "health",
        "stats",
        "list",
        "get",
        "set",
        "delete",
        "invalidate",
        "flush",
        "search",
        "warm",
        "export-config",
        "migrate",
        "bench",
        "monitor",
        "completions",
    ];
    for sub in subcommands {
        let out = larder(dir.path()).args([sub, "--help"]).output().unwrap();
        assert_code(&out, 0);
        assert!(stdout(&out).contains("Usage: larder"), "{sub}");
    }
    assert_code(
        &larder(dir.path()).arg("no-such-command").output().unwrap(),
        2,
    );
}
