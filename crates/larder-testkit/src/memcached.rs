//! Each server runs on a free loopback port (127.0.0.1 only) with its own
//! temporary directory, in its own process group under the same watchdog
//! as the Redis servers (see [`crate::redis`]): it is killed when it is
//! dropped, and within a second when the test process goes away without
//! dropping it.
//!
//! Starting a server blocks the calling thread until it answers `version`.
//! `memcached` must be installed (`cargo xtask setup` does it); when it is
//! missing, starting a server panics with a message that says so.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::redis::{Process, TempDir, free_port, require, tail};

/// How long a server may take to answer after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Poll interval while waiting for a server.
const POLL: Duration = Duration::from_millis(25);
/// Fresh ports a server tries when its port was taken meanwhile.
const START_ATTEMPTS: usize = 5;

/// The user memcached runs as: it refuses to run as root without `-u`,
/// and ignores `-u` otherwise. The current user, so nothing changes owner.
fn user() -> &'static str {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        Command::new("id")
            .arg("-un")
            .stdin(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .filter(|u| !u.is_empty())
            .unwrap_or_else(|| "nobody".to_owned())
    })
}

fn memcached() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| require("memcached"))
}

/// One `memcached` process on a free loopback port. Dropping it kills the
/// server.
#[derive(Debug)]
pub struct MemcachedServer {
    // Fields drop in order: the process dies before its directory goes.
    process: Option<Process>,
    dir: TempDir,
    port: u16,
    extra: Vec<String>,
}

impl MemcachedServer {
    /// Start a server with 64 MiB of memory and the default 1 MiB items.
    ///
    /// # Panics
    ///
    /// When `memcached` is missing or does not answer within 10 s.
    pub fn start() -> MemcachedServer {
        MemcachedServer::start_with(&[])
    }

    /// Start a server with `extra` command-line arguments after the
    /// defaults (later ones win): `&["-I", "2m"]` for 2 MiB items,
    /// `&["-m", "2"]` for a server that evicts early.
    ///
    /// # Panics
    ///
    /// As [`MemcachedServer::start`], and when memcached refuses an
    /// argument.
    pub fn start_with(extra: &[&str]) -> MemcachedServer {
        let dir = TempDir::new("memcached");
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        for attempt in 1..=START_ATTEMPTS {
            let port = free_port();
            match launch(&dir, port, &extra) {
                Ok(process) => {
                    return MemcachedServer {
                        process: Some(process),
                        dir,
                        port,
                        extra,
                    };
                }
                Err(why) if why.contains("in use") && attempt < START_ATTEMPTS => {}
                Err(why) => panic!("memcached on port {port} {why}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Start `n` servers with the same `extra` arguments, for ring tests.
    pub fn start_many(n: usize, extra: &[&str]) -> Vec<MemcachedServer> {
        (0..n).map(|_| MemcachedServer::start_with(extra)).collect()
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:<port>`: the server's name in larder's labels and on
    /// its ring.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `memcached://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("memcached://{}", self.address())
    }

    /// Kill the server (its data is lost, as on a crash). Idempotent.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&mut self) -> bool {
        self.process.as_mut().is_some_and(|p| !p.exited())
    }

    /// Start the server again on the same port with the same arguments
    /// (empty, as memcached always starts), after [`MemcachedServer::stop`].
    ///
    /// # Panics
    ///
    /// When it does not come back within 10 s (the port may have been taken
    /// by another process meanwhile).
    pub fn restart(&mut self) {
        self.stop();
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            match launch(&self.dir, self.port, &self.extra) {
                Ok(process) => {
                    self.process = Some(process);
                    return;
                }
                Err(why) if why.contains("in use") && Instant::now() < deadline => {
                    sleep(Duration::from_millis(200));
                }
                Err(why) => panic!("memcached restart on port {} {why}", self.port),
            }
        }
    }

    /// Send one ASCII command (with its data block, if any, after `\r\n`)
    /// and read the reply: up to `END` for `stats` and retrievals, one line
    /// otherwise.
    ///
    /// # Panics
    ///
    /// When the server cannot be reached.
    pub fn command(&self, command: &str) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))
            .unwrap_or_else(|e| panic!("cannot reach memcached on {}: {e}", self.port));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        stream
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        let mut reply = Vec::new();
        let mut buf = [0u8; 8192];
        // `stats` and retrievals end with `END`; everything else is one line.
        let listing = ["stats", "get", "gets", "gat", "gats"]
            .contains(&command.split_whitespace().next().unwrap_or(""));
        let done = |r: &[u8]| {
            r.ends_with(b"END\r\n")
                || r.ends_with(b"ERROR\r\n")
                || (!listing && r.ends_with(b"\r\n"))
        };
        while !done(&reply) {
            let n = stream
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("memcached on {} did not answer: {e}", self.port));
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&reply).into_owned()
    }

    /// `stats` (or `stats <group>`) as name → value.
    pub fn stats(&self, group: &str) -> HashMap<String, String> {
        let command = if group.is_empty() {
            "stats".to_owned()
        } else {
            format!("stats {group}")
        };
        self.command(&command)
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some("STAT"), Some(name), Some(value)) => {
                        Some((name.to_owned(), value.to_owned()))
                    }
                    _ => None,
                }
            })
            .collect()
    }

    /// One number from `stats`: `stat("cmd_set")`, `stat("curr_items")`.
    ///
    /// # Panics
    ///
    /// When the server has no such statistic.
    pub fn stat(&self, name: &str) -> u64 {
        self.stats("")
            .get(name)
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("memcached has no numeric stat {name}"))
    }

    /// Drop every item (`flush_all`).
    pub fn flush(&self) {
        let reply = self.command("flush_all");
        assert!(reply.starts_with("OK"), "flush_all: {reply}");
    }

    /// The last lines the server wrote to stderr.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("stderr.log"), lines)
    }
}

/// `memcached://a,b,c` for several servers.
pub fn url_of(servers: &[MemcachedServer]) -> String {
    let addresses: Vec<String> = servers.iter().map(MemcachedServer::address).collect();
    format!("memcached://{}", addresses.join(","))
}

/// Spawn memcached on `port` and wait until it answers; why not otherwise.
fn launch(dir: &TempDir, port: u16, extra: &[String]) -> Result<Process, String> {
    let mut args: Vec<OsString> = [
        "-l",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "0",
        "-u",
        user(),
        "-m",
        "64",
        "-t",
        "2",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.extend(extra.iter().map(OsString::from));
    let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
    let mut process = Process::spawn(dir, memcached(), &args);
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if process.exited() {
            return Err(format!(
                "exited during startup:\n{}",
                tail(&dir.join("stderr.log"), 20)
            ));
        }
        if answers(port) {
            return Ok(process);
        }
        if Instant::now() > deadline {
            process.kill();
            return Err(format!(
                "did not answer within 10 s:\n{}",
                tail(&dir.join("stderr.log"), 20)
            ));
        }
        sleep(POLL);
    }
}

/// Whether a server on `port` answers `version`.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"version\r\n").is_err() {
        return false;
    }
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(n) if buf[..n].starts_with(b"VERSION"))
}
