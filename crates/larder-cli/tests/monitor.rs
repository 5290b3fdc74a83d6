//! `larder monitor` on a real terminal: run under tmux, read the screen,
//! scrape the Prometheus endpoint, press `q`, and check that the process
//! exited 0 and gave the terminal back.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use larder_testkit::redis::{RedisServer, free_port};

/// A tmux server of our own (its own socket), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn new() -> Tmux {
        let found = Command::new("tmux").arg("-V").output();
        assert!(
            found.is_ok_and(|o| o.status.success()),
            "tmux is not installed: the monitor test runs the screen under tmux; run `cargo xtask setup` \
             (it installs tmux with apt-get)"
        );
        Tmux {
            socket: format!("larder-cli-test-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap()
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", "monitor"]).stdout)
            .into_owned()
    }

    /// Wait until the screen satisfies `ok`; the last screen otherwise.
    fn wait_for(&self, what: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let screen = self.screen();
            if ok(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "waited for {what}; the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    stream.read_to_string(&mut body).unwrap();
    body
}

#[test]
fn monitor_draws_serves_prometheus_and_quits_on_q() {
    let tmux = Tmux::new();
    let redis = RedisServer::start();
    let prometheus = free_port();
    let dir = tempfile::tempdir().unwrap();
    let command = format!(
        "cd {dir} && {bin} --url {url} monitor --interval 200ms --prometheus 127.0.0.1:{prometheus}; \
         echo monitor-exited-$?; sleep 30",
        dir = dir.path().display(),
        bin = env!("CARGO_BIN_EXE_larder"),
        url = redis.url(),
    );
    let started = tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "monitor",
        "-x",
        "120",
        "-y",
        "40",
        &command,
    ]);
    assert!(
        started.status.success(),
        "{}",
        String::from_utf8_lossy(&started.stderr)
    );

    let host = format!("redis at 127.0.0.1:{}", redis.port());
    let screen = tmux.wait_for("a healthy route with ops/s", |s| {
        s.contains("larder monitor")
            && s.contains("healthy")
            && s.contains(&host)
            && s.contains("ops/s")
    });
    assert!(screen.contains("default"), "{screen}");
    assert!(
        screen.contains("rtt p99") && screen.contains("hit rate"),
        "{screen}"
    );
    assert!(screen.contains("q quits"), "{screen}");

    let metrics = scrape(prometheus);
    assert!(metrics.contains("200 OK"), "{metrics}");
    assert!(
        metrics.lines().any(|l| l.starts_with("larder_monitor_up{")
            && l.contains("route=\"default\"")
            && l.ends_with(" 1")),
        "{metrics}"
    );
    assert!(
        metrics.contains("larder_monitor_probe_latency_seconds{"),
        "{metrics}"
    );

    tmux.run(&["send-keys", "-t", "monitor", "q"]);
    let after = tmux.wait_for("the monitor to exit", |s| s.contains("monitor-exited-"));
    assert!(after.contains("monitor-exited-0"), "{after}");
    // The alternate screen is gone: the monitor's table is no longer shown.
    assert!(
        !after.contains("rtt p99"),
        "the terminal was not restored:\n{after}"
    );
}
