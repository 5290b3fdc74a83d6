//! A fault-injecting TCP proxy to put between a client and a test server:
//! lost replies, cut connections, stalls and refused connections.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1` on a free port and forwards
//! every connection to an upstream address (a [`RedisServer`] or another
//! server the testkit started). Faults are switched on and off from the test
//! while traffic flows:
//!
//! - [`FaultProxy::drop_reply_after`]: a command reaches the server and runs,
//!   but its reply is lost and the connection closes;
//! - [`FaultProxy::cut_all`]: every open connection closes, as when the
//!   server process dies;
//! - [`FaultProxy::blackhole`]: bytes stop flowing in both directions but
//!   connections stay open, as with a stalled network or a paused server;
//! - [`FaultProxy::refuse`]: new connections close right after they are
//!   accepted, as with a server that is not there.
//!
//! The proxy runs on its own threads (plain `std::net`, no async runtime),
//! so it works the same from a synchronous test and from a test on any
//! tokio runtime, including a current-thread one that blocks. Dropping it
//! stops the listener, closes every connection and joins its threads.
//!
//! ```no_run
//! use larder_testkit::proxy::FaultProxy;
//! use larder_testkit::redis::RedisServer;
//!
//! let server = RedisServer::start();
//! let proxy = FaultProxy::start(([127, 0, 0, 1], server.port()).into());
//! let url = format!("redis://{}/0", proxy.addr());
//! // ... connect the cache to `url`, then:
//! proxy.drop_reply_after(b"INCRBY");
//! ```
//!
//! [`RedisServer`]: crate::redis::RedisServer

use std::collections::HashMap;
use std::fmt;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::redis::free_port;

/// How long a connection armed by [`FaultProxy::drop_reply_after`] waits
/// for the server's first reply byte before it is closed anyway.
pub const REPLY_GRACE: Duration = Duration::from_secs(1);
/// How many fresh ports [`FaultProxy::start`] tries before it gives up.
const BIND_ATTEMPTS: usize = 5;
/// Size of each direction's copy buffer.
const BUFFER: usize = 16 * 1024;
/// Pause after a failed `accept` (for example when out of descriptors), so
/// the accept loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(10);

/// A TCP proxy from `127.0.0.1:<free port>` to an upstream server that
/// injects faults on demand; see the [module documentation](self).
///
/// Every fault applies to all connections, whichever test code or client
/// pool opened them. Dropping the proxy stops it: the listener closes (so
/// connecting to [`FaultProxy::addr`] then fails), every open connection
/// closes, and its threads are joined.
pub struct FaultProxy {
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// Start forwarding `127.0.0.1:<free port>` to `upstream`.
    ///
    /// A connection to the proxy connects to `upstream` in turn; when that
    /// fails, the client's connection is closed.
    ///
    /// # Panics
    ///
    /// When no free loopback port can be bound, or a thread cannot be
    /// spawned.
    pub fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = bind();
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fault proxy: local address of the listener: {e}"));
        let shared = Arc::new(Shared {
            addr,
            upstream,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            accepted: AtomicUsize::new(0),
        });
        let accept = {
            let shared = shared.clone();
            thread::Builder::new()
                .name(format!("fault-proxy-{}", addr.port()))
                .spawn(move || accept_loop(&listener, &shared))
                .unwrap_or_else(|e| panic!("fault proxy: cannot spawn the accept thread: {e}"))
        };
        FaultProxy {
            shared,
            accept: Some(accept),
        }
    }

    /// The port the proxy listens on (on `127.0.0.1`).
    pub fn port(&self) -> u16 {
        self.shared.addr.port()
    }

    /// The address the proxy listens on: `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.shared.addr
    }

    /// The address the proxy forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.shared.upstream
    }

    /// Arm a one-shot fault: "the command ran but the reply was lost".
    ///
    /// The next time the client-to-server byte stream of any connection
    /// contains `needle` (compared ASCII case-insensitively, also when it
    /// straddles two reads), that connection is doomed: the bytes are still
    /// forwarded to the server (and so is anything the client sends after
    /// them), but the first bytes the server sends back afterwards are
    /// dropped, and both sides of the connection are closed instead. If the
    /// server sends nothing within [`REPLY_GRACE`], the connection is closed
    /// anyway. The client sees end of stream (or a reset) and no reply.
    ///
    /// Matching happens as bytes are forwarded, so bytes already forwarded
    /// before arming do not count. Only one connection is hit: the fault
    /// disarms itself when it fires. Arming again replaces a
    /// needle that has not fired yet. Other connections are not affected.
    ///
    /// Note that everything the server sends on the doomed connection after
    /// the match is dropped, including replies to commands the client
    /// pipelined before the matching one.
    ///
    /// # Panics
    ///
    /// When `needle` is empty.
    pub fn drop_reply_after(&self, needle: &[u8]) {
        assert!(
            !needle.is_empty(),
            "fault proxy: drop_reply_after needs a non-empty needle"
        );
        self.shared.lock().needle = Some(needle.to_ascii_lowercase());
    }

    /// Disarm a [`FaultProxy::drop_reply_after`] fault that has not fired;
    /// returns whether one was armed.
    pub fn disarm(&self) -> bool {
        self.shared.lock().needle.take().is_some()
    }

    /// Whether a [`FaultProxy::drop_reply_after`] fault is armed and has not
    /// fired yet.
    pub fn armed(&self) -> bool {
        self.shared.lock().needle.is_some()
    }

    /// Close every open connection, both sides, as when the server process
    /// dies: the client reads end of stream (or gets a reset), and bytes in
    /// flight are lost.
    ///
    /// The listener stays open: connections made afterwards are forwarded
    /// again, so a client can reconnect. For a server that stays away, call
    /// [`FaultProxy::refuse`] with `true` first.
    pub fn cut_all(&self) {
        let open: Vec<Arc<Conn>> = self.shared.lock().conns.values().cloned().collect();
        for conn in open {
            conn.close(&self.shared);
        }
    }

    /// While `on`, bytes in both directions are held: read from one side
    /// but not forwarded to the other, and no connection is closed (a
    /// stalled network, or a paused server). New connections are still
    /// accepted and connected upstream, but nothing flows on them.
    ///
    /// `blackhole(false)` releases the held bytes, in order, and traffic
    /// flows again. A pending [`FaultProxy::drop_reply_after`] reply-loss
    /// waits for the release as well.
    pub fn blackhole(&self, on: bool) {
        self.shared.lock().blackhole = on;
        self.shared.changed.notify_all();
    }

    /// While `on`, every new connection is closed right after it is
    /// accepted (the client's connect succeeds, then it reads end of
    /// stream). Open connections are not affected; see
    /// [`FaultProxy::cut_all`].
    pub fn refuse(&self, on: bool) {
        self.shared.lock().refuse = on;
    }

    /// How many connections were accepted so far, including those closed
    /// at once because of [`FaultProxy::refuse`].
    pub fn connections(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// How many connections are open right now (accepted and not yet
    /// closed on both sides).
    pub fn open_connections(&self) -> usize {
        self.shared.lock().conns.len()
    }
}

impl fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.shared.addr)
            .field("upstream", &self.shared.upstream)
            .field("connections", &self.connections())
            .finish_non_exhaustive()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        // Wake the accept loop, which is blocked in `accept`: it sees
        // `stopping` and returns, closing the listener.
        let _ = TcpStream::connect_timeout(&self.shared.addr, Duration::from_secs(5));
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        // No connection is accepted any more: close the open ones and wait
        // for their threads.
        self.cut_all();
        self.shared.changed.notify_all();
        let threads = std::mem::take(&mut self.shared.lock().threads);
        for thread in threads {
            let _ = thread.join();
        }
    }
}

/// Bind `127.0.0.1` on a port from [`free_port`], so the proxy never takes
/// a port just handed to a test server that is still starting.
fn bind() -> TcpListener {
    let mut last = None;
    for _ in 0..BIND_ATTEMPTS {
        let port = free_port();
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(listener) => return listener,
            Err(e) => last = Some((port, e)),
        }
    }
    match last {
        Some((port, e)) => panic!("fault proxy: cannot bind 127.0.0.1:{port}: {e}"),
        None => unreachable!("BIND_ATTEMPTS is not zero"),
    }
}

/// What the proxy's threads share with the handle.
struct Shared {
    addr: SocketAddr,
    upstream: SocketAddr,
    state: Mutex<State>,
    /// Signalled when `blackhole` is switched, when a connection closes and
    /// when the proxy stops.
    changed: Condvar,
    accepted: AtomicUsize,
}

#[derive(Default)]
struct State {
    stopping: bool,
    blackhole: bool,
    refuse: bool,
    /// The armed drop-reply needle, lowercased.
    needle: Option<Vec<u8>>,
    conns: HashMap<u64, Arc<Conn>>,
    next_id: u64,
    /// One thread per connection (it joins that connection's other
    /// threads); joined on drop.
    threads: Vec<JoinHandle<()>>,
}

impl Shared {
    /// The state, even if a thread panicked while holding it: the flags stay
    /// meaningful.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait while the proxy is blackholed; `None` if `conn` closed
    /// meanwhile (or already was), otherwise the state, still locked.
    fn hold(&self, conn: &Conn) -> Option<MutexGuard<'_, State>> {
        let state = self
            .changed
            .wait_while(self.lock(), |s| s.blackhole && !conn.is_closed())
            .unwrap_or_else(PoisonError::into_inner);
        (!conn.is_closed()).then_some(state)
    }
}

/// One proxied connection, as seen from the outside: enough to close it.
struct Conn {
    id: u64,
    /// A handle on the client's socket, to shut it down.
    client: TcpStream,
    inner: Mutex<ConnInner>,
    /// Set when a drop-reply fault fired on this connection.
    doomed: AtomicBool,
}

struct ConnInner {
    closed: bool,
    /// A handle on the upstream socket once connected, to shut it down.
    server: Option<TcpStream>,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, ConnInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_closed(&self) -> bool {
        self.lock().closed
    }

    fn is_doomed(&self) -> bool {
        self.doomed.load(Ordering::SeqCst)
    }

    /// Record the upstream socket; if the connection was closed meanwhile,
    /// shut it down instead and return `false`.
    fn attach(&self, server: TcpStream) -> bool {
        let mut inner = self.lock();
        if inner.closed {
            let _ = server.shutdown(Shutdown::Both);
            return false;
        }
        inner.server = Some(server);
        true
    }

    /// Shut down both sockets (which wakes this connection's threads out of
    /// blocking reads and writes) and wake anything waiting on `shared`.
    /// Idempotent.
    fn close(&self, shared: &Shared) {
        {
            let mut inner = self.lock();
            if inner.closed {
                return;
            }
            inner.closed = true;
            let _ = self.client.shutdown(Shutdown::Both);
            if let Some(server) = &inner.server {
                let _ = server.shutdown(Shutdown::Both);
            }
        }
        // Take the lock so a thread between checking `closed` and waiting
        // cannot miss the wake-up.
        drop(shared.lock());
        shared.changed.notify_all();
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    loop {
        let accepted = listener.accept();
        let mut state = shared.lock();
        if state.stopping {
            return;
        }
        let client = match accepted {
            Ok((client, _)) => client,
            Err(_) => {
                drop(state);
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if state.refuse {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(handle) = client.try_clone() else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let id = state.next_id;
        state.next_id += 1;
        let conn = Arc::new(Conn {
            id,
            client: handle,
            inner: Mutex::new(ConnInner {
                closed: false,
                server: None,
            }),
            doomed: AtomicBool::new(false),
        });
        state.conns.insert(id, conn.clone());
        let spawned = {
            let shared = shared.clone();
            let conn = conn.clone();
            thread::Builder::new()
                .name(format!("fault-proxy-conn-{id}"))
                .spawn(move || serve(&shared, &conn, client))
        };
        match spawned {
            Ok(thread) => {
                state.threads.retain(|t| !t.is_finished());
                state.threads.push(thread);
            }
            Err(_) => {
                state.conns.remove(&id);
                drop(state);
                conn.close(shared);
            }
        }
    }
}

/// Run one connection: connect upstream, copy server-to-client on a second
/// thread and client-to-server on this one, then clean up.
fn serve(shared: &Arc<Shared>, conn: &Arc<Conn>, client: TcpStream) {
    let mut threads = Vec::new();
    if let Some(server) = connect_upstream(shared, conn) {
        let down = client.try_clone().and_then(|to_client| {
            let from_server = server.try_clone()?;
            let shared = shared.clone();
            let conn = conn.clone();
            thread::Builder::new()
                .name(format!("fault-proxy-conn-{}-down", conn.id))
                .spawn(move || server_to_client(&shared, &conn, from_server, to_client))
        });
        if let Ok(down) = down {
            threads.push(down);
            threads.extend(client_to_server(shared, conn, client, server));
        }
    }
    conn.close(shared);
    for thread in threads {
        let _ = thread.join();
    }
    shared.lock().conns.remove(&conn.id);
}

/// Connect to the upstream server and attach the socket to `conn`; `None`
/// (with `conn` left to be closed) when that fails or `conn` closed
/// meanwhile.
fn connect_upstream(shared: &Shared, conn: &Conn) -> Option<TcpStream> {
    let server = TcpStream::connect(shared.upstream).ok()?;
    let _ = server.set_nodelay(true);
    let handle = server.try_clone().ok()?;
    conn.attach(handle).then_some(server)
}

/// Copy client-to-server bytes, watching for the drop-reply needle. Returns
/// the reaper thread if the fault fired on this connection.
fn client_to_server(
    shared: &Arc<Shared>,
    conn: &Arc<Conn>,
    mut from: TcpStream,
    mut to: TcpStream,
) -> Option<JoinHandle<()>> {
    let mut buf = vec![0; BUFFER];
    // The last bytes seen (lowercased), so a needle split across two reads
    // still matches.
    let mut tail = Vec::new();
    let mut reaper = None;
    loop {
        let n = match from.read(&mut buf) {
            // The client is done sending: pass the half-close on and let the
            // other direction finish.
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return reaper;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.close(shared);
                return reaper;
            }
        };
        let chunk = &buf[..n];
        {
            let Some(mut state) = shared.hold(conn) else {
                return reaper;
            };
            match state.needle.as_deref() {
                Some(needle) if !conn.is_doomed() => {
                    if contains_needle(&mut tail, chunk, needle) {
                        state.needle = None;
                        // Before the bytes go out: whatever the server sends
                        // from now on is (or follows) the reply to lose.
                        conn.doomed.store(true, Ordering::SeqCst);
                        reaper = spawn_reaper(shared, conn);
                    }
                }
                _ => tail.clear(),
            }
        }
        if to.write_all(chunk).is_err() {
            conn.close(shared);
            return reaper;
        }
    }
}

/// Copy server-to-client bytes; on a doomed connection, drop the first
/// bytes that come back and close the connection instead.
fn server_to_client(shared: &Shared, conn: &Conn, mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0; BUFFER];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) if !conn.is_doomed() => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(0) => {
                conn.close(shared);
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => {
                conn.close(shared);
                return;
            }
        };
        if shared.hold(conn).is_none() {
            return;
        }
        if conn.is_doomed() {
            // The server answered: the command ran. Lose the reply.
            conn.close(shared);
            return;
        }
        if to.write_all(&buf[..n]).is_err() {
            conn.close(shared);
            return;
        }
    }
}

/// A thread that closes a doomed `conn` after [`REPLY_GRACE`] if the server
/// has not answered by then (and the connection is not closed otherwise);
/// the grace period does not run while the proxy is blackholed.
/// If the thread cannot be spawned, the connection is closed at once.
fn spawn_reaper(shared: &Arc<Shared>, conn: &Arc<Conn>) -> Option<JoinHandle<()>> {
    let spawned = {
        let shared = shared.clone();
        let conn = conn.clone();
        thread::Builder::new()
            .name(format!("fault-proxy-conn-{}-reaper", conn.id))
            .spawn(move || {
                let mut state = shared.lock();
                let mut deadline = Instant::now() + REPLY_GRACE;
                while !conn.is_closed() {
                    if state.blackhole {
                        // The blackhole holds the reply (or the request):
                        // the grace period starts again on release.
                        state = shared
                            .changed
                            .wait(state)
                            .unwrap_or_else(PoisonError::into_inner);
                        deadline = Instant::now() + REPLY_GRACE;
                        continue;
                    }
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    state = shared
                        .changed
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                drop(state);
                conn.close(&shared);
            })
    };
    match spawned {
        Ok(thread) => Some(thread),
        Err(_) => {
            conn.close(shared);
            None
        }
    }
}

/// Append `chunk` (lowercased) to `tail`, report whether `tail` now holds
/// `needle` (lowercase, non-empty), and keep only the last
/// `needle.len() - 1` bytes in `tail`.
fn contains_needle(tail: &mut Vec<u8>, chunk: &[u8], needle: &[u8]) -> bool {
    tail.extend(chunk.iter().map(u8::to_ascii_lowercase));
    let found = tail.windows(needle.len()).any(|w| w == needle);
    let keep = needle.len() - 1;
    tail.drain(..tail.len().saturating_sub(keep));
    found
}

#[cfg(test)]
mod tests {
    use super::contains_needle;

    #[test]
    fn needle_matches_case_insensitively_across_reads() {
        let mut tail = Vec::new();
        assert!(!contains_needle(&mut tail, b"*2\r\n$4\r\nIN", b"incr"));
        assert_eq!(tail, b"\nin");
        assert!(contains_needle(&mut tail, b"Cr\r\n$1\r\nk\r\n", b"incr"));
        let mut tail = Vec::new();
        assert!(contains_needle(&mut tail, b"incrby", b"incr"));
        assert!(!contains_needle(&mut Vec::new(), b"INC", b"incr"));
        assert!(contains_needle(&mut Vec::new(), b"x", b"x"));
    }
}
