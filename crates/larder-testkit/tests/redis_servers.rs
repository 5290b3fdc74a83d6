//! The Redis test servers start, answer, and enforce what they promise.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use larder_testkit::redis::{RedisCluster, RedisSentinel, RedisServer, free_port, require};

#[test]
fn free_ports_differ() {
    let ports: HashSet<u16> = (0..50).map(|_| free_port()).collect();
    assert_eq!(ports.len(), 50);
    assert!(ports.iter().all(|p| (20_000..=55_000).contains(p)));
}

#[test]
#[should_panic(expected = "run `cargo xtask setup`")]
fn missing_binary_says_how_to_install() {
    require("larder-no-such-server");
}

#[test]
fn plain_server() {
    let server = RedisServer::start();
    assert_eq!(
        server.url(),
        format!("redis://127.0.0.1:{}/0", server.port())
    );
    assert_eq!(server.admin_url(), server.url());
    assert_eq!(server.ca_cert_path(), None);
    assert_eq!(server.cli(&["PING"]), "PONG");
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(server.cli(&["GET", "k"]), "v");
    assert_eq!(server.cli(&["GET", "missing"]), "");
    let err = server.try_cli(&["INCR", "k"]).unwrap_err();
    assert!(err.contains("not an integer"), "{err}");
    assert_eq!(server.cli(&["CONFIG", "GET", "bind"]), "bind\n127.0.0.1");
    assert_eq!(server.cli(&["CONFIG", "GET", "save"]), "save");

    let dir = server.dir().to_owned();
    assert!(dir.join("redis.log").exists());
    let mut server = server;
    server.stop();
    server.stop();
    assert!(server.try_cli(&["PING"]).is_err());
    drop(server);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[test]
fn server_with_extra_config() {
    let server = RedisServer::start_with(&["maxmemory 2mb", "maxmemory-policy allkeys-lru"]);
    assert_eq!(
        server.cli(&["CONFIG", "GET", "maxmemory"]),
        "maxmemory\n2097152"
    );
    assert_eq!(
        server.cli(&["CONFIG", "GET", "maxmemory-policy"]),
        "maxmemory-policy\nallkeys-lru"
    );
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(server.cli(&["GET", "k"]), "v");
}

#[test]
fn tls_server() {
    let server = RedisServer::start_tls();
    assert_eq!(
        server.url(),
        format!("rediss://127.0.0.1:{}/0", server.port())
    );
    let ca = server.ca_cert_path().unwrap();
    let cert = server.server_cert_path().unwrap();
    assert!(ca.starts_with(server.dir()));

    let verify = Command::new(require("openssl"))
        .args(["verify", "-x509_strict", "-purpose", "sslserver"])
        .args(["-verify_ip", "127.0.0.1", "-verify_hostname", "localhost"])
        .arg("-CAfile")
        .arg(ca)
        .arg(cert)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // The CA is a CA, the server certificate is not, and says what it is for.
    let text = |path| {
        let out = Command::new(require("openssl"))
            .args(["x509", "-noout", "-text", "-in"])
            .arg(path)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    let ca_text = text(ca);
    assert!(ca_text.contains("CA:TRUE"), "{ca_text}");
    assert!(ca_text.contains("Certificate Sign"), "{ca_text}");
    let cert_text = text(cert);
    for expected in [
        "CA:FALSE",
        "Digital Signature, Key Encipherment",
        "TLS Web Server Authentication",
        "IP Address:127.0.0.1",
        "DNS:localhost",
    ] {
        assert!(cert_text.contains(expected), "{expected}: {cert_text}");
    }

    assert_eq!(server.cli(&["PING"]), "PONG");
    assert_eq!(server.cli(&["SET", "k", "v"]), "OK");
    assert_eq!(server.cli(&["GET", "k"]), "v");
    assert_eq!(server.cli(&["CONFIG", "GET", "port"]), "port\n0");

    // Without TLS the server does not answer.
    let plain = Command::new(require("redis-cli"))
        .args(["-h", "127.0.0.1", "-p", &server.port().to_string(), "PING"])
        .output()
        .unwrap();
    assert_ne!(String::from_utf8_lossy(&plain.stdout).trim(), "PONG");
}

#[test]
fn acl_server() {
    let server = RedisServer::start_acl(
        "app",
        "s3cret-pass",
        "app:*",
        &["get", "set", "del", "ping", "evalsha", "script|load"],
    );
    assert_eq!(
        server.url(),
        format!("redis://app:s3cret-pass@127.0.0.1:{}/0", server.port())
    );
    assert!(server.admin_url().starts_with("redis://admin:"));
    assert_eq!(server.cli(&["PING"]), "PONG");

    let app = |args: &[&str]| server.cli_as("app", "s3cret-pass", args);
    assert_eq!(app(&["PING"]).unwrap(), "PONG");
    assert_eq!(app(&["SET", "app:k", "v"]).unwrap(), "OK");
    assert_eq!(app(&["GET", "app:k"]).unwrap(), "v");
    let sha = app(&["SCRIPT", "LOAD", "return 1"]).unwrap();
    assert_eq!(sha.len(), 40, "{sha}");
    assert_eq!(app(&["EVALSHA", &sha, "0"]).unwrap(), "1");

    let err = app(&["SET", "other:k", "v"]).unwrap_err();
    assert!(err.starts_with("NOPERM"), "{err}");
    let err = app(&["FLUSHALL"]).unwrap_err();
    assert!(err.starts_with("NOPERM"), "{err}");
    let err = app(&["SCRIPT", "FLUSH"]).unwrap_err();
    assert!(err.starts_with("NOPERM"), "{err}");
    let err = app(&["PUBLISH", "app:c", "m"]).unwrap_err();
    assert!(err.starts_with("NOPERM"), "{err}");
    let err = server.cli_as("app", "wrong", &["PING"]).unwrap_err();
    assert!(err.contains("WRONGPASS"), "{err}");

    // The default user is off: no access without credentials.
    let anonymous = Command::new(require("redis-cli"))
        .args([
            "-e",
            "-h",
            "127.0.0.1",
            "-p",
            &server.port().to_string(),
            "PING",
        ])
        .output()
        .unwrap();
    assert!(!anonymous.status.success());
    assert!(
        String::from_utf8_lossy(&anonymous.stderr).contains("NOAUTH"),
        "{anonymous:?}"
    );
    assert!(server.cli_as("default", "", &["PING"]).is_err());

    // The admin writes anywhere.
    assert_eq!(server.cli(&["SET", "other:k", "v"]), "OK");
}

#[test]
fn sentinel_fails_over() {
    let mut set = RedisSentinel::start();
    let ports = set.sentinel_ports();
    assert_eq!(ports.len(), 3);
    assert_eq!(
        set.url(),
        format!(
            "redis+sentinel://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}/mymaster/0",
            ports[0], ports[1], ports[2]
        )
    );
    assert_eq!(
        set.sentinel_cli(&["SENTINEL", "get-master-addr-by-name", "mymaster"]),
        format!("127.0.0.1\n{}", set.master_port())
    );
    assert_eq!(set.master().cli(&["SET", "k", "v"]), "OK");
    assert_eq!(set.master().cli(&["WAIT", "1", "5000"]), "1");
    assert_eq!(set.replica().cli(&["GET", "k"]), "v");

    let old = set.master_port();
    set.stop_master();
    let new = set.wait_for_failover(Duration::from_secs(30));
    assert_ne!(new, old);
    assert_eq!(new, set.replica_port());
    assert_eq!(set.replica().cli(&["SET", "k2", "v2"]), "OK");
    assert_eq!(set.replica().cli(&["GET", "k"]), "v");
}

#[test]
fn cluster() {
    let cluster = RedisCluster::start();
    let ports = cluster.ports();
    assert_eq!(ports.len(), 3);
    assert_eq!(
        cluster.url(),
        format!(
            "redis+cluster://127.0.0.1:{},127.0.0.1:{},127.0.0.1:{}",
            ports[0], ports[1], ports[2]
        )
    );
    let info = cluster.cli(&["CLUSTER", "INFO"]);
    assert!(info.contains("cluster_state:ok"), "{info}");
    assert!(info.contains("cluster_slots_assigned:16384"), "{info}");

    for i in 0..30 {
        let key = format!("key-{i}");
        assert_eq!(cluster.cli(&["SET", &key, &i.to_string()]), "OK");
        assert_eq!(cluster.cli(&["GET", &key]), i.to_string());
    }
    let sizes: Vec<u64> = cluster
        .nodes()
        .iter()
        .map(|n| n.cli(&["DBSIZE"]).parse().unwrap())
        .collect();
    assert_eq!(sizes.iter().sum::<u64>(), 30);
    assert!(
        sizes.iter().all(|&n| n > 0),
        "keys all on some nodes: {sizes:?}"
    );

    // A node refuses a key it does not own; `cli` follows the redirection.
    let owner_of = |key: &str| {
        cluster
            .nodes()
            .iter()
            .position(|n| n.try_cli(&["EXISTS", key]).is_ok_and(|r| r == "1"))
    };
    let owner = owner_of("key-0").unwrap();
    let other = &cluster.nodes()[(owner + 1) % 3];
    let err = other.try_cli(&["GET", "key-0"]).unwrap_err();
    assert!(err.contains("MOVED"), "{err}");
}

#[test]
#[should_panic(expected = "Bad directive or wrong number of arguments")]
fn bad_config_panics_with_the_server_output() {
    RedisServer::start_with(&["no-such-directive yes"]);
}
