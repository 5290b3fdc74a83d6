//! The Memcached test servers start on loopback, take arguments, stop,
//! restart on the same port, and go away on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpStream;

use larder_testkit::memcached::{MemcachedServer, url_of};

#[test]
fn a_server_answers_on_loopback() {
    let server = MemcachedServer::start();
    assert_eq!(
        server.url(),
        format!("memcached://127.0.0.1:{}", server.port())
    );
    assert!(server.command("version").starts_with("VERSION 1."));
    assert_eq!(
        server.command("set k 0 0 1\r\nv").trim_end(),
        "STORED",
        "ASCII commands pass through"
    );
    assert_eq!(server.stat("curr_items"), 1);
    assert_eq!(
        server.stats("settings")["tcpport"],
        server.port().to_string()
    );
    assert_eq!(server.stats("settings")["udpport"], "0");
    server.flush();
}

#[test]
fn arguments_and_several_servers() {
    let servers = MemcachedServer::start_many(3, &["-I", "2m", "-m", "16"]);
    let ports: std::collections::HashSet<u16> = servers.iter().map(MemcachedServer::port).collect();
    assert_eq!(ports.len(), 3);
    for s in &servers {
        assert_eq!(
            s.stats("settings")["item_size_max"],
            (2 * 1024 * 1024).to_string()
        );
        assert_eq!(
            s.stats("settings")["maxbytes"],
            (16 * 1024 * 1024).to_string()
        );
    }
    let url = url_of(&servers);
    assert_eq!(url.matches("127.0.0.1:").count(), 3, "{url}");
}

#[test]
fn stop_restart_and_drop() {
    let mut server = MemcachedServer::start();
    let port = server.port();
    server.command("set k 0 0 1\r\nv");
    server.stop();
    assert!(!server.is_running());
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "stopped");
    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port, "same port");
    assert_eq!(server.stat("curr_items"), 0, "a restart starts empty");
    drop(server);
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err(), "dropped");
}
