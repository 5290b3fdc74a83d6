//! Each server (a plain one, one with TLS, one with ACL users, a Sentinel set,
//! a Cluster) runs on free loopback ports with its own temporary directory,
//! and is stopped and removed on drop.
//!
//! Everything here blocks the calling thread while it waits for servers to
//! come up; call it before entering an async runtime, or accept that the
//! worker thread waits. Every server listens on 127.0.0.1 only.
//!
//! The servers need `redis-server` and `redis-cli` (and `openssl` for TLS).
//! When one is missing, starting a server panics with a message that says to
//! run `cargo xtask setup`: a test never skips silently.
//!
//! Each server runs in its own process group under a small `sh` watchdog that
//! kills it (and removes its directory) within a second when the test process
//! goes away without dropping it, for example when the test binary is killed
//! or the server lives in a `static`.

use std::collections::hash_map::RandomState;
use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long a single server may take to answer PING after it is spawned.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a Sentinel set or a Cluster may take to settle.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Poll interval while waiting for a server to reach some state.
const POLL: Duration = Duration::from_millis(50);
/// How many fresh ports a server tries when its port was taken in the
/// meantime (by another process) before it gives up.
const START_ATTEMPTS: usize = 5;
/// The name the Sentinel set monitors.
const SENTINEL_MASTER: &str = "mymaster";
/// The ACL user [`RedisServer::cli`] uses on an ACL server.
const ADMIN_USER: &str = "admin";

/// `sh` script that runs `"$@"` (the server) in place of the shell, after
/// forking a watchdog that kills the server and removes its directory when
/// the test process (`$1`) disappears. Arguments: parent pid, directory,
/// program, program arguments.
const WATCHDOG: &str = r#"parent=$1; dir=$2; shift 2
self=$$
(
  while kill -0 "$parent" 2>/dev/null && kill -0 "$self" 2>/dev/null; do sleep 1; done
  if ! kill -0 "$parent" 2>/dev/null; then
    kill -s KILL "$self" 2>/dev/null
    rm -rf "$dir"
  fi
) </dev/null >/dev/null 2>&1 &
exec "$@""#;

/// Find `binary` on `PATH` (or in `/usr/bin`, `/usr/sbin`, `/usr/local/bin`)
/// and return its path.
///
/// # Panics
///
/// When it is not found, with a message that says to run `cargo xtask
/// setup`. Tests that need a server must fail, not skip, when it is missing.
pub fn require(binary: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let fixed = ["/usr/bin", "/usr/sbin", "/usr/local/bin"].map(PathBuf::from);
    std::env::split_paths(&path)
        .chain(fixed)
        .map(|dir| dir.join(binary))
        .find(|candidate| {
            fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .unwrap_or_else(|| {
            panic!(
                "{binary} not found: run `cargo xtask setup` (it installs redis-server, \
                 redis-tools and memcached), or install it with your package manager"
            )
        })
}

/// A free loopback TCP port whose cluster bus port (`port + 10000`) is free
/// as well.
///
/// Ports come from a process-wide cursor that starts at a pseudo-random
/// point in 20000..50000 (seeded from the process id and the clock) and
/// walks up to 55000 before wrapping, so parallel tests in one process never
/// get the same port and parallel test processes rarely meet. A port is
/// handed out only if both it and its bus port can be bound right now; a
/// server that still loses the race to another process retries on a fresh
/// port.
///
/// # Panics
///
/// When no port in the range is free.
pub fn free_port() -> u16 {
    const LOW: u16 = 20_000;
    const HIGH: u16 = 55_000;
    static SEED: OnceLock<u16> = OnceLock::new();
    static CURSOR: AtomicU16 = AtomicU16::new(0);

    let seed = *SEED.get_or_init(|| {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u128(nanos_since_epoch());
        LOW + u16::try_from(hasher.finish() % 30_000).unwrap()
    });
    let next = |c: u16| {
        if c == 0 {
            seed
        } else if c >= HIGH {
            LOW
        } else {
            c + 1
        }
    };
    for _ in LOW..=HIGH {
        let previous = CURSOR
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(next(c)))
            .unwrap();
        let port = next(previous);
        if bindable(port) && bindable(port + 10_000) {
            return port;
        }
    }
    panic!("no free loopback port in {LOW}..={HIGH}");
}

/// `redis-cli`, looked up once.
fn redis_cli() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| require("redis-cli"))
}

fn bindable(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn nanos_since_epoch() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// 128 random bits as hex, for passwords and directory names.
fn random_hex() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut out = String::new();
    for _ in 0..2 {
        let mut hasher = RandomState::new().build_hasher();
        hasher.write_u32(std::process::id());
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(nanos_since_epoch());
        write!(out, "{:016x}", hasher.finish()).unwrap();
    }
    out
}

/// Percent-encode everything but RFC 3986 unreserved characters, for the
/// user-info part of a URL.
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

/// Check that `value` can go into a config line unquoted.
fn config_word<'a>(what: &str, value: &'a str) -> &'a str {
    assert!(
        !value.is_empty()
            && !value
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\''),
        "{what} {value:?} must be non-empty, without whitespace or quotes"
    );
    value
}

/// A path quoted for a Redis config file.
fn config_path(path: &Path) -> String {
    let s = path.to_str().expect("temporary directory path is UTF-8");
    assert!(
        !s.contains(['"', '\\', '\n']),
        "temporary directory path {s:?} cannot go into a Redis config file"
    );
    format!("\"{s}\"")
}

/// The last `lines` lines of a file, or a note that it cannot be read.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A directory under the system temp dir, removed with everything in it on
/// drop.
#[derive(Debug)]
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(kind: &str) -> TempDir {
        loop {
            let path = std::env::temp_dir().join(format!(
                "larder-{kind}-{}-{}",
                std::process::id(),
                &random_hex()[..12]
            ));
            match fs::create_dir(&path) {
                Ok(()) => return TempDir(path),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A server process: the leader of its own process group (the server, with
/// its watchdog and any forked children in the same group).
#[derive(Debug)]
pub(crate) struct Process {
    child: Child,
    /// Set once the child has been waited for: its pid (and so its process
    /// group id) may then belong to someone else.
    reaped: bool,
}

impl Process {
    /// Spawn `program args…` under the watchdog, in a new process group,
    /// with stdout and stderr going to files in `dir`.
    pub(crate) fn spawn(dir: &TempDir, program: &Path, args: &[&OsStr]) -> Process {
        let stdout = fs::File::create(dir.join("stdout.log")).unwrap();
        let stderr = fs::File::create(dir.join("stderr.log")).unwrap();
        let child = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sh")
            .arg(std::process::id().to_string())
            .arg(dir.path())
            .arg(program)
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Process {
            child,
            reaped: false,
        }
    }

    /// Whether the server has exited (it is then reaped).
    pub(crate) fn exited(&mut self) -> bool {
        if self.reaped {
            return true;
        }
        let done = matches!(self.child.try_wait(), Ok(Some(_)));
        self.reaped = done;
        done
    }

    /// Send `signal` (`STOP`, `CONT`) to the server process only (the
    /// watchdog execs into it, so the child is the server).
    fn signal(&self, signal: &str) {
        if self.reaped {
            return;
        }
        let _ = Command::new("kill")
            .args(["-s", signal, &self.child.id().to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }

    /// Kill the whole process group and wait for the server. Idempotent.
    pub(crate) fn kill(&mut self) {
        if self.reaped {
            return;
        }
        // The leader is not reaped yet, so the group id is still ours.
        let _ = Command::new("sh")
            .arg("-c")
            .arg(r#"kill -s KILL -- "-$1" 2>/dev/null"#)
            .arg("sh")
            .arg(self.child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reaped = true;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// TLS material generated for one server.
#[derive(Debug)]
struct Tls {
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    /// A client certificate signed by the same CA, and its key.
    client_cert: PathBuf,
    client_key: PathBuf,
    /// Whether the server requires client certificates
    /// (`tls-auth-clients yes`).
    auth_clients: bool,
}

/// Generate a CA and a server certificate for 127.0.0.1 / localhost in
/// `dir`: RSA 2048, valid for a day, with the extensions a strict client
/// (rustls / webpki) wants.
fn make_certs(dir: &TempDir) -> Tls {
    let openssl = require("openssl");
    fs::write(
        dir.join("ca.cnf"),
        "[req]\n\
         distinguished_name = dn\n\
         x509_extensions = v3_ca\n\
         prompt = no\n\
         [dn]\n\
         CN = larder test CA\n\
         [v3_ca]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid:always\n",
    )
    .unwrap();
    fs::write(
        dir.join("server.cnf"),
        "[req]\n\
         distinguished_name = dn\n\
         prompt = no\n\
         [dn]\n\
         CN = localhost\n\
         [server]\n\
         basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage = serverAuth\n\
         subjectAltName = IP:127.0.0.1,DNS:localhost\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid,issuer\n",
    )
    .unwrap();
    fs::write(
        dir.join("client.cnf"),
        "[req]\n\
         distinguished_name = dn\n\
         prompt = no\n\
         [dn]\n\
         CN = larder test client\n\
         [client]\n\
         basicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature,keyEncipherment\n\
         extendedKeyUsage = clientAuth\n\
         subjectKeyIdentifier = hash\n\
         authorityKeyIdentifier = keyid,issuer\n",
    )
    .unwrap();
    // openssl runs in `dir`, so file names are relative to it.
    let steps = [
        "req -x509 -new -newkey rsa:2048 -nodes -sha256 -days 1 -config ca.cnf \
         -keyout ca.key -out ca.crt",
        "req -new -newkey rsa:2048 -nodes -sha256 -config server.cnf \
         -keyout server.key -out server.csr",
        "x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -CAserial ca.srl \
         -days 1 -sha256 -extfile server.cnf -extensions server -out server.crt",
        "req -new -newkey rsa:2048 -nodes -sha256 -config client.cnf \
         -keyout client.key -out client.csr",
        "x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAserial ca.srl \
         -days 1 -sha256 -extfile client.cnf -extensions client -out client.crt",
    ];
    for args in steps {
        let out = Command::new(&openssl)
            .args(args.split_whitespace())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
        assert!(
            out.status.success(),
            "openssl {args} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Tls {
        ca_cert: dir.join("ca.crt"),
        cert: dir.join("server.crt"),
        key: dir.join("server.key"),
        client_cert: dir.join("client.crt"),
        client_key: dir.join("client.key"),
        auth_clients: false,
    }
}

/// ACL setup of a server: the admin [`RedisServer::cli`] uses, and the user
/// the URL names.
#[derive(Debug)]
struct Acl {
    admin_password: String,
    user: String,
    password: String,
}

/// How to reach a server with `redis-cli`.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    port: u16,
    ca_cert: Option<&'a Path>,
    /// A client certificate and key, for a server that requires one.
    client: Option<(&'a Path, &'a Path)>,
    auth: Option<(&'a str, &'a str)>,
    cluster: bool,
}

impl Target<'_> {
    /// Run `redis-cli` with `args`: `Ok(stdout)` without trailing line
    /// breaks, or `Err` with the error reply or the failure.
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(redis_cli());
        cmd.args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-e"]);
        if self.cluster {
            cmd.arg("-c");
        }
        if let Some(ca) = self.ca_cert {
            cmd.arg("--tls").arg("--cacert").arg(ca);
        }
        if let Some((cert, key)) = self.client {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((user, password)) = self.auth {
            cmd.args(["--user", user, "--pass", password, "--no-auth-warning"]);
        }
        cmd.args(args).stdin(Stdio::null());
        let Output {
            status,
            stdout,
            stderr,
        } = cmd
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
        let stdout = String::from_utf8_lossy(&stdout)
            .trim_end_matches(['\r', '\n'])
            .to_owned();
        let stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
        if status.success() {
            Ok(stdout)
        } else if stderr.is_empty() {
            Err(format!("redis-cli exited with {status}: {stdout}"))
        } else {
            Err(stderr)
        }
    }

    /// Wait until the server answers PING, or `process` exits.
    fn wait_ready(&self, process: &mut Process) -> Result<(), Startup> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if process.exited() {
                return Err(Startup::Exited);
            }
            if self.run(&["PING"]).is_ok_and(|r| r == "PONG") {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Startup::Timeout);
            }
            sleep(POLL);
        }
    }
}

/// Why a server did not come up.
#[derive(Debug)]
enum Startup {
    Exited,
    Timeout,
}

/// Write `config` (for `port`) into `dir/conf_name`, start `redis-server`
/// on it (with `extra_args`, e.g. `--sentinel`) and wait until it answers
/// PING; if the port was taken meanwhile, try again on a fresh one.
fn launch<'a>(
    dir: &TempDir,
    conf_name: &str,
    extra_args: &[&str],
    config: &dyn Fn(u16) -> String,
    target: &dyn Fn(u16) -> Target<'a>,
) -> (Process, u16) {
    let server = require("redis-server");
    redis_cli();
    let conf = dir.join(conf_name);
    let log = dir.join("redis.log");
    for attempt in 1..=START_ATTEMPTS {
        let port = free_port();
        // Leftovers of a failed attempt.
        let _ = fs::remove_file(&log);
        let _ = fs::remove_file(dir.join("nodes.conf"));
        fs::write(&conf, config(port)).unwrap();
        let mut args: Vec<OsString> = vec![conf.clone().into()];
        args.extend(extra_args.iter().map(OsString::from));
        let args: Vec<&OsStr> = args.iter().map(OsString::as_os_str).collect();
        let mut process = Process::spawn(dir, &server, &args);
        let why = match target(port).wait_ready(&mut process) {
            Ok(()) => return (process, port),
            Err(why) => why,
        };
        process.kill();
        let log_tail = tail(&log, 30);
        let stderr_tail = tail(&dir.join("stderr.log"), 30);
        let port_taken = log_tail.contains("in use") || stderr_tail.contains("in use");
        if matches!(why, Startup::Exited) && port_taken && attempt < START_ATTEMPTS {
            continue;
        }
        panic!(
            "redis-server ({}) on port {port} {}:\n--- redis.log ---\n{log_tail}\n\
             --- stderr ---\n{stderr_tail}",
            conf.display(),
            match why {
                Startup::Exited => "exited during startup",
                Startup::Timeout => "did not answer PING within 10 s",
            },
        );
    }
    unreachable!("the last attempt returns or panics")
}

/// One `redis-server` process on a free loopback port, with its own
/// temporary directory. Dropping it kills the server and removes the
/// directory.
#[derive(Debug)]
pub struct RedisServer {
    // Fields drop in order: the process dies before its directory goes.
    process: Process,
    dir: TempDir,
    port: u16,
    tls: Option<Tls>,
    acl: Option<Acl>,
}

impl RedisServer {
    /// Start a plain server (no TLS, no authentication).
    ///
    /// # Panics
    ///
    /// When `redis-server` or `redis-cli` is missing, or the server does not
    /// come up within 10 s (with the tail of its log).
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Start a plain server with `extra_config` lines appended to its
    /// config file, such as `"maxmemory 2mb"` or
    /// `"maxmemory-policy allkeys-lru"`.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`], and when Redis rejects a config line.
    pub fn start_with(extra_config: &[&str]) -> RedisServer {
        RedisServer::launch(TempDir::new("redis"), None, None, extra_config)
    }

    /// Start a server that speaks TLS only, with a CA and a server
    /// certificate (for `127.0.0.1` and `localhost`) generated for it; see
    /// [`RedisServer::ca_cert_path`]. Clients are not asked for
    /// certificates.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`], and when `openssl` is missing or fails.
    pub fn start_tls() -> RedisServer {
        let dir = TempDir::new("redis-tls");
        let tls = make_certs(&dir);
        RedisServer::launch(dir, Some(tls), None, &[])
    }

    /// Start a TLS server that requires client certificates
    /// (`tls-auth-clients yes`, mutual TLS): a client must present one
    /// signed by the server's CA, such as [`RedisServer::client_cert_path`]
    /// with [`RedisServer::client_key_path`].
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start_tls`].
    pub fn start_mtls() -> RedisServer {
        let dir = TempDir::new("redis-mtls");
        let tls = Tls {
            auth_clients: true,
            ..make_certs(&dir)
        };
        RedisServer::launch(dir, Some(tls), None, &[])
    }

    /// The PEM file of a client certificate signed by a TLS server's CA;
    /// `None` for a server without TLS.
    pub fn client_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.client_cert.as_path())
    }

    /// The PEM file of the private key of
    /// [`RedisServer::client_cert_path`]; `None` without TLS.
    pub fn client_key_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.client_key.as_path())
    }

    /// Start a server with ACL users: the `default` user is off, an `admin`
    /// user with a random password has every right (used by
    /// [`RedisServer::cli`] and [`RedisServer::admin_url`]), and `user` with
    /// `password` may only touch keys matching `key_pattern` (no channels)
    /// and run only `commands`.
    ///
    /// Commands are written as Redis ACL rules without the sign: `"get"`,
    /// `"script|load"` (a subcommand) or `"@read"` (a category) each become
    /// `+…`; a command that already starts with `+` or `-` is passed as is.
    /// [`RedisServer::url`] carries the user's credentials.
    ///
    /// # Panics
    ///
    /// As [`RedisServer::start`]; when `user` is `default` or `admin`; when
    /// a value is empty or holds whitespace or quotes.
    pub fn start_acl(
        user: &str,
        password: &str,
        key_pattern: &str,
        commands: &[&str],
    ) -> RedisServer {
        let user = config_word("ACL user", user);
        assert!(
            user != "default" && user != ADMIN_USER,
            "the ACL user cannot be `default` or `{ADMIN_USER}`"
        );
        let password = config_word("ACL password", password);
        let key_pattern = config_word("ACL key pattern", key_pattern);
        let acl = Acl {
            admin_password: random_hex(),
            user: user.to_owned(),
            password: password.to_owned(),
        };
        RedisServer::launch_acl(acl, key_pattern, commands)
    }

    fn launch_acl(acl: Acl, key_pattern: &str, commands: &[&str]) -> RedisServer {
        let mut user_rule = format!(
            "user {} on >{} resetkeys ~{key_pattern} resetchannels -@all",
            acl.user, acl.password
        );
        for command in commands {
            let command = config_word("ACL command", command);
            if command.starts_with(['+', '-']) {
                write!(user_rule, " {command}").unwrap();
            } else {
                write!(user_rule, " +{command}").unwrap();
            }
        }
        let lines = [
            "user default off".to_owned(),
            format!("user {ADMIN_USER} on >{} ~* &* +@all", acl.admin_password),
            user_rule,
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        RedisServer::launch(TempDir::new("redis-acl"), None, Some(acl), &lines)
    }

    fn launch(
        dir: TempDir,
        tls: Option<Tls>,
        acl: Option<Acl>,
        extra_config: &[&str],
    ) -> RedisServer {
        let config = |port: u16| {
            let mut c = String::new();
            writeln!(c, "bind 127.0.0.1").unwrap();
            writeln!(c, "protected-mode yes").unwrap();
            writeln!(c, "daemonize no").unwrap();
            writeln!(c, "save \"\"").unwrap();
            writeln!(c, "appendonly no").unwrap();
            writeln!(c, "dir {}", config_path(dir.path())).unwrap();
            writeln!(c, "logfile {}", config_path(&dir.join("redis.log"))).unwrap();
            match &tls {
                None => writeln!(c, "port {port}").unwrap(),
                Some(tls) => {
                    writeln!(c, "port 0").unwrap();
                    writeln!(c, "tls-port {port}").unwrap();
                    writeln!(c, "tls-cert-file {}", config_path(&tls.cert)).unwrap();
                    writeln!(c, "tls-key-file {}", config_path(&tls.key)).unwrap();
                    writeln!(c, "tls-ca-cert-file {}", config_path(&tls.ca_cert)).unwrap();
                    let auth = if tls.auth_clients { "yes" } else { "no" };
                    writeln!(c, "tls-auth-clients {auth}").unwrap();
                }
            }
            for line in extra_config {
                writeln!(c, "{line}").unwrap();
            }
            c
        };
        let target = |port: u16| admin_target(port, tls.as_ref(), acl.as_ref());
        let (process, port) = launch(&dir, "redis.conf", &[], &config, &target);
        RedisServer {
            process,
            dir,
            port,
            tls,
            acl,
        }
    }

    /// The port the server listens on (the TLS port for a TLS server).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL a client connects with: `redis://127.0.0.1:<port>/0`,
    /// `rediss://…` for a TLS server, and with the ACL user's credentials
    /// (percent-encoded) for an ACL server.
    pub fn url(&self) -> String {
        let credentials = self
            .acl
            .as_ref()
            .map(|acl| (acl.user.as_str(), acl.password.as_str()));
        self.url_as(credentials)
    }

    /// A URL with every right: the admin's credentials on an ACL server,
    /// otherwise the same as [`RedisServer::url`].
    pub fn admin_url(&self) -> String {
        let credentials = self
            .acl
            .as_ref()
            .map(|acl| (ADMIN_USER, acl.admin_password.as_str()));
        self.url_as(credentials)
    }

    fn url_as(&self, credentials: Option<(&str, &str)>) -> String {
        let scheme = if self.tls.is_some() {
            "rediss"
        } else {
            "redis"
        };
        let userinfo = credentials.map_or_else(String::new, |(user, password)| {
            format!("{}:{}@", url_encode(user), url_encode(password))
        });
        format!("{scheme}://{userinfo}127.0.0.1:{}/0", self.port)
    }

    /// The PEM file of the CA that signed a TLS server's certificate, for a
    /// client to trust; `None` for a server without TLS.
    pub fn ca_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.ca_cert.as_path())
    }

    /// The PEM file of a TLS server's own certificate; `None` without TLS.
    pub fn server_cert_path(&self) -> Option<&Path> {
        self.tls.as_ref().map(|tls| tls.cert.as_path())
    }

    /// The server's temporary directory (config, log, certificates).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The tail of the server's log, for assertion messages.
    pub fn log_tail(&self, lines: usize) -> String {
        tail(&self.dir.join("redis.log"), lines)
    }

    /// Run `redis-cli` against this server with full rights (over TLS and
    /// as the admin when the server needs it) and return its output without
    /// trailing line breaks. Replies come in `redis-cli`'s raw format: one
    /// line per element, `nil` as an empty line.
    ///
    /// # Panics
    ///
    /// When the server answers with an error, or `redis-cli` fails.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| panic!("redis-cli {args:?} on port {}: {e}", self.port))
    }

    /// As [`RedisServer::cli`], but an error reply (or failure) is returned
    /// as `Err` with its text, e.g. `"NOPERM …"`.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        admin_target(self.port, self.tls.as_ref(), self.acl.as_ref()).run(args)
    }

    /// Run `redis-cli` against this server authenticated as `user` with
    /// `password` (over TLS when the server needs it): `Ok(output)`, or
    /// `Err` with the error reply, e.g. `"NOPERM …"` or `"WRONGPASS …"`.
    pub fn cli_as(&self, user: &str, password: &str, args: &[&str]) -> Result<String, String> {
        Target {
            port: self.port,
            ca_cert: self.ca_cert_path(),
            client: self
                .tls
                .as_ref()
                .filter(|tls| tls.auth_clients)
                .map(|tls| (tls.client_cert.as_path(), tls.client_key.as_path())),
            auth: Some((user, password)),
            cluster: false,
        }
        .run(args)
    }

    /// Kill the server now (for failover tests); its directory stays until
    /// drop. Calling it again does nothing.
    pub fn stop(&mut self) {
        self.process.kill();
    }

    /// Start the server again after [`RedisServer::stop`], on the same port
    /// and directory with the same configuration: it loads `dump.rdb` if a
    /// `SAVE` wrote one (persistence is otherwise off), as a server
    /// restarted with the data it had.
    ///
    /// # Panics
    ///
    /// When the server does not come back within 10 s (another process may
    /// have taken the port), with the tail of its log.
    pub fn restart(&mut self) {
        self.process.kill();
        let conf = self.dir.join("redis.conf");
        let args = [conf.as_os_str()];
        let mut process = Process::spawn(&self.dir, &require("redis-server"), &args);
        let target = admin_target(self.port, self.tls.as_ref(), self.acl.as_ref());
        if let Err(why) = target.wait_ready(&mut process) {
            process.kill();
            panic!(
                "redis-server did not come back on port {} ({why:?}):\n{}",
                self.port,
                tail(&self.dir.join("redis.log"), 30)
            );
        }
        self.process = process;
    }

    /// Freeze the server (`SIGSTOP`): connections stay open but nothing is
    /// answered, as with a stalled host. [`RedisServer::resume`] undoes it;
    /// drop kills a paused server as well.
    pub fn pause(&self) {
        self.process.signal("STOP");
    }

    /// Let a paused server run again (`SIGCONT`).
    pub fn resume(&self) {
        self.process.signal("CONT");
    }
}

/// How [`RedisServer::cli`] reaches a server.
fn admin_target<'a>(port: u16, tls: Option<&'a Tls>, acl: Option<&'a Acl>) -> Target<'a> {
    Target {
        port,
        ca_cert: tls.map(|tls| tls.ca_cert.as_path()),
        client: tls
            .filter(|tls| tls.auth_clients)
            .map(|tls| (tls.client_cert.as_path(), tls.client_key.as_path())),
        auth: acl.map(|acl| (ADMIN_USER, acl.admin_password.as_str())),
        cluster: false,
    }
}

/// Parse `redis-cli` raw output of `INFO` (or `CLUSTER INFO`) for `field`.
fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines().find_map(|line| {
        line.trim_end()
            .strip_prefix(field)
            .and_then(|rest| rest.strip_prefix(':'))
    })
}

/// In a flat `key value key value…` reply (one item a line), the value
/// after `key`.
fn flat_value<'a>(lines: &[&'a str], key: &str) -> Option<&'a str> {
    lines
        .iter()
        .position(|l| *l == key)
        .and_then(|i| lines.get(i + 1).copied())
}

/// Poll `check` until it returns `Some` or `timeout` passes; then panic with
/// `what` and the result of `context`.
fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
    context: impl FnOnce() -> String,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("{what} within {timeout:?}:\n{}", context());
        }
        sleep(POLL);
    }
}

/// One Sentinel process.
#[derive(Debug)]
struct SentinelNode {
    // Kept for its drop, which kills the sentinel before its directory goes.
    _process: Process,
    dir: TempDir,
    port: u16,
}

impl SentinelNode {
    fn start(master_port: u16) -> SentinelNode {
        let dir = TempDir::new("sentinel");
        let config = |port: u16| {
            let mut c = String::new();
            writeln!(c, "port {port}").unwrap();
            writeln!(c, "bind 127.0.0.1").unwrap();
            writeln!(c, "protected-mode yes").unwrap();
            writeln!(c, "daemonize no").unwrap();
            writeln!(c, "dir {}", config_path(dir.path())).unwrap();
            writeln!(c, "logfile {}", config_path(&dir.join("redis.log"))).unwrap();
            writeln!(c, "sentinel resolve-hostnames no").unwrap();
            writeln!(c, "sentinel announce-ip 127.0.0.1").unwrap();
            let m = SENTINEL_MASTER;
            writeln!(c, "sentinel monitor {m} 127.0.0.1 {master_port} 2").unwrap();
            writeln!(c, "sentinel down-after-milliseconds {m} 1000").unwrap();
            writeln!(c, "sentinel failover-timeout {m} 5000").unwrap();
            writeln!(c, "sentinel parallel-syncs {m} 1").unwrap();
            c
        };
        let target = |port: u16| plain_target(port);
        let (process, port) = launch(&dir, "sentinel.conf", &["--sentinel"], &config, &target);
        SentinelNode {
            _process: process,
            dir,
            port,
        }
    }

    fn cli(&self, args: &[&str]) -> Result<String, String> {
        plain_target(self.port).run(args)
    }

    /// The master address this sentinel reports, if it answers.
    fn master_port(&self) -> Option<u16> {
        let reply = self
            .cli(&["SENTINEL", "get-master-addr-by-name", SENTINEL_MASTER])
            .ok()?;
        let mut lines = reply.lines();
        (lines.next()? == "127.0.0.1")
            .then(|| lines.next()?.parse().ok())
            .flatten()
    }

    /// Whether this sentinel knows the master at `master_port`, sees
    /// `replica_port` as a healthy replica and knows `others` other
    /// sentinels.
    fn settled(&self, master_port: u16, replica_port: u16, others: usize) -> bool {
        if self.master_port() != Some(master_port) {
            return false;
        }
        let Ok(master) = self.cli(&["SENTINEL", "master", SENTINEL_MASTER]) else {
            return false;
        };
        let master: Vec<&str> = master.lines().collect();
        if flat_value(&master, "flags") != Some("master")
            || flat_value(&master, "num-other-sentinels") != Some(&others.to_string())
        {
            return false;
        }
        let Ok(replicas) = self.cli(&["SENTINEL", "replicas", SENTINEL_MASTER]) else {
            return false;
        };
        let replicas: Vec<&str> = replicas.lines().collect();
        flat_value(&replicas, "port") == Some(&replica_port.to_string())
            && flat_value(&replicas, "flags") == Some("slave")
    }
}

fn plain_target(port: u16) -> Target<'static> {
    Target {
        port,
        ca_cert: None,
        client: None,
        auth: None,
        cluster: false,
    }
}

/// A Sentinel set: a master, one replica and three sentinels monitoring
/// them as `mymaster` (quorum 2, down after 1 s). Dropping it stops
/// everything.
#[derive(Debug)]
pub struct RedisSentinel {
    sentinels: Vec<SentinelNode>,
    replica: RedisServer,
    master: RedisServer,
}

impl RedisSentinel {
    /// Start the master, the replica and the sentinels, and wait until the
    /// replica is in sync and every sentinel knows the master, the replica
    /// and the other sentinels.
    ///
    /// # Panics
    ///
    /// When a server is missing or the set does not settle within 30 s.
    pub fn start() -> RedisSentinel {
        let master = RedisServer::start();
        let replicaof = format!("replicaof 127.0.0.1 {}", master.port());
        let replica = RedisServer::start_with(&[&replicaof, "replica-announce-ip 127.0.0.1"]);
        wait_for(
            SETTLE_TIMEOUT,
            "the replica did not reach master_link_status:up",
            || {
                let info = replica.try_cli(&["INFO", "replication"]).ok()?;
                (info_field(&info, "master_link_status") == Some("up")).then_some(())
            },
            || replica.log_tail(30),
        );
        let sentinels: Vec<SentinelNode> =
            (0..3).map(|_| SentinelNode::start(master.port())).collect();
        let set = RedisSentinel {
            sentinels,
            replica,
            master,
        };
        wait_for(
            SETTLE_TIMEOUT,
            "the sentinels did not all learn the master, the replica and each other",
            || {
                set.sentinels
                    .iter()
                    .all(|s| s.settled(set.master.port(), set.replica.port(), 2))
                    .then_some(())
            },
            || set.sentinel_logs(),
        );
        set
    }

    /// `redis+sentinel://127.0.0.1:<s1>,127.0.0.1:<s2>,127.0.0.1:<s3>/mymaster/0`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        format!("redis+sentinel://{}/{SENTINEL_MASTER}/0", hosts.join(","))
    }

    /// The name the sentinels monitor: `mymaster`.
    pub fn master_name(&self) -> &str {
        SENTINEL_MASTER
    }

    /// The port of the master the set started with (it stays the same
    /// after a failover; see [`RedisSentinel::wait_for_failover`]).
    pub fn master_port(&self) -> u16 {
        self.master.port()
    }

    /// The port of the replica the set started with.
    pub fn replica_port(&self) -> u16 {
        self.replica.port()
    }

    /// The sentinels' ports.
    pub fn sentinel_ports(&self) -> Vec<u16> {
        self.sentinels.iter().map(|s| s.port).collect()
    }

    /// The master the set started with.
    pub fn master(&self) -> &RedisServer {
        &self.master
    }

    /// The replica the set started with.
    pub fn replica(&self) -> &RedisServer {
        &self.replica
    }

    /// Run `redis-cli` against the first sentinel, e.g.
    /// `["SENTINEL", "get-master-addr-by-name", "mymaster"]`.
    ///
    /// # Panics
    ///
    /// When the sentinel answers with an error, or `redis-cli` fails.
    pub fn sentinel_cli(&self, args: &[&str]) -> String {
        let sentinel = &self.sentinels[0];
        sentinel
            .cli(args)
            .unwrap_or_else(|e| panic!("redis-cli {args:?} on sentinel {}: {e}", sentinel.port))
    }

    /// Kill the master now, so that the sentinels fail over to the replica.
    pub fn stop_master(&mut self) {
        self.master.stop();
    }

    /// Wait until every sentinel reports a master other than the one the
    /// set started with and that server says it is a master; return its
    /// port.
    ///
    /// # Panics
    ///
    /// When that does not happen within `timeout` (with the sentinels'
    /// logs).
    pub fn wait_for_failover(&self, timeout: Duration) -> u16 {
        let old = self.master.port();
        wait_for(
            timeout,
            "the sentinels did not fail over to a new master",
            || {
                let first = self.sentinels[0].master_port()?;
                let agreed = first != old
                    && self
                        .sentinels
                        .iter()
                        .all(|s| s.master_port() == Some(first));
                if !agreed {
                    return None;
                }
                let role = plain_target(first).run(&["ROLE"]).ok()?;
                (role.lines().next() == Some("master")).then_some(first)
            },
            || self.sentinel_logs(),
        )
    }

    fn sentinel_logs(&self) -> String {
        self.sentinels
            .iter()
            .map(|s| {
                format!(
                    "--- sentinel {} ---\n{}",
                    s.port,
                    tail(&s.dir.join("redis.log"), 20)
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A Redis Cluster of three masters (no replicas) covering all 16384 slots.
/// Dropping it stops every node.
#[derive(Debug)]
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Start three cluster-enabled servers, join them with
    /// `redis-cli --cluster create`, and wait until every node reports
    /// `cluster_state:ok` with all slots assigned and every node known.
    ///
    /// # Panics
    ///
    /// When a server is missing, cluster creation fails, or the cluster is
    /// not ok within 30 s.
    pub fn start() -> RedisCluster {
        let nodes: Vec<RedisServer> = (0..3)
            .map(|_| {
                RedisServer::start_with(&[
                    "cluster-enabled yes",
                    "cluster-config-file nodes.conf",
                    "cluster-node-timeout 2000",
                    "cluster-announce-ip 127.0.0.1",
                ])
            })
            .collect();
        let cluster = RedisCluster { nodes };
        let addresses: Vec<String> = cluster
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let out = Command::new(redis_cli())
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run redis-cli: {e}"));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        wait_for(
            SETTLE_TIMEOUT,
            "the cluster did not reach cluster_state:ok on every node",
            || cluster.nodes.iter().all(node_ok).then_some(()),
            || {
                cluster
                    .nodes
                    .iter()
                    .map(|n| {
                        format!(
                            "--- node {} ---\n{}\n{}",
                            n.port(),
                            n.try_cli(&["CLUSTER", "INFO"]).unwrap_or_else(|e| e),
                            n.log_tail(20)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            },
        );
        cluster
    }

    /// `redis+cluster://127.0.0.1:<p1>,127.0.0.1:<p2>,127.0.0.1:<p3>`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .ports()
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(RedisServer::port).collect()
    }

    /// The nodes, e.g. to look at what one of them holds with
    /// [`RedisServer::cli`].
    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// Run `redis-cli -c` (following redirections) against the first node
    /// and return its output, as [`RedisServer::cli`].
    ///
    /// # Panics
    ///
    /// When the cluster answers with an error, or `redis-cli` fails.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| panic!("redis-cli -c {args:?} on the cluster: {e}"))
    }

    /// As [`RedisCluster::cli`], but an error reply is returned as `Err`.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        Target {
            port: self.nodes[0].port(),
            ca_cert: None,
            client: None,
            auth: None,
            cluster: true,
        }
        .run(args)
    }
}

/// Whether a cluster node is ok, has every slot assigned and ok, and knows
/// all three nodes.
fn node_ok(node: &RedisServer) -> bool {
    node.try_cli(&["CLUSTER", "INFO"]).is_ok_and(|info| {
        info_field(&info, "cluster_state") == Some("ok")
            && info_field(&info, "cluster_slots_assigned") == Some("16384")
            && info_field(&info, "cluster_slots_ok") == Some("16384")
            && info_field(&info, "cluster_known_nodes") == Some("3")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encode_keeps_unreserved_only() {
        assert_eq!(url_encode("app-1_x.y~z"), "app-1_x.y~z");
        assert_eq!(url_encode("p@ss:w/rd%"), "p%40ss%3Aw%2Frd%25");
    }

    #[test]
    fn info_and_flat_replies_parse() {
        let info = "# Replication\r\nrole:slave\r\nmaster_link_status:up\r\n";
        assert_eq!(info_field(info, "master_link_status"), Some("up"));
        assert_eq!(info_field(info, "role"), Some("slave"));
        assert_eq!(info_field(info, "master"), None);
        let flat = [
            "name",
            "mymaster",
            "flags",
            "master",
            "num-other-sentinels",
            "2",
        ];
        assert_eq!(flat_value(&flat, "flags"), Some("master"));
        assert_eq!(flat_value(&flat, "num-other-sentinels"), Some("2"));
        assert_eq!(flat_value(&flat, "missing"), None);
    }

    #[test]
    #[should_panic(expected = "without whitespace or quotes")]
    fn acl_values_with_spaces_are_refused() {
        config_word("ACL password", "two words");
    }
}
