//! The fault proxy forwards, and injects each fault it promises, against a
//! real Redis server spoken to in raw RESP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use larder_testkit::proxy::FaultProxy;
use larder_testkit::redis::RedisServer;

/// Generous bound for anything that should happen promptly.
const PROMPT: Duration = Duration::from_secs(5);
/// How long a read waits before a held request counts as stalled.
const STALL: Duration = Duration::from_millis(300);

fn upstream(server: &RedisServer) -> SocketAddr {
    ([127, 0, 0, 1], server.port()).into()
}

fn start() -> (RedisServer, FaultProxy) {
    let server = RedisServer::start();
    let proxy = FaultProxy::start(upstream(&server));
    (server, proxy)
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let stream = TcpStream::connect(proxy.addr()).unwrap();
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    stream
}

/// A command in RESP.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend(format!("${}\r\n{arg}\r\n", arg.len()).into_bytes());
    }
    out
}

/// Read exactly `n` bytes; panics on EOF, an error or a timeout.
fn read_exact(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    stream.read_exact(&mut buf).unwrap();
    buf
}

/// Read one line, including its `\r\n`.
fn read_line(stream: &mut TcpStream) -> String {
    let mut line = Vec::new();
    while !line.ends_with(b"\r\n") {
        line.extend(read_exact(stream, 1));
    }
    String::from_utf8(line).unwrap()
}

/// Send a command and read a one-line reply (`+OK`, `:1`, `-ERR …`).
fn call(stream: &mut TcpStream, args: &[&str]) -> String {
    stream.write_all(&resp(args)).unwrap();
    read_line(stream)
}

/// How a read on a stream ended.
#[derive(Debug, PartialEq)]
enum Ending {
    /// End of stream or a reset: the connection is gone.
    Closed,
    /// The read timed out: the connection is open but nothing came.
    TimedOut,
    /// Bytes arrived.
    Data(Vec<u8>),
}

fn read_some(stream: &mut TcpStream) -> Ending {
    let mut buf = [0; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Ending::Closed,
            Ok(n) => return Ending::Data(buf[..n].to_vec()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ending::TimedOut;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset
                        | ErrorKind::ConnectionAborted
                        | ErrorKind::BrokenPipe
                ) =>
            {
                return Ending::Closed;
            }
            Err(e) => panic!("unexpected read error: {e}"),
        }
    }
}

/// Assert that the connection is closed without a byte of reply.
fn assert_closed(stream: &mut TcpStream) {
    stream.set_read_timeout(Some(PROMPT)).unwrap();
    assert_eq!(read_some(stream), Ending::Closed);
}

/// Poll `check` until it holds, or panic after [`PROMPT`].
fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + PROMPT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn forwards_both_ways() {
    let (server, proxy) = start();
    assert_eq!(
        proxy.addr(),
        SocketAddr::from(([127, 0, 0, 1], proxy.port()))
    );
    assert_eq!(proxy.upstream(), upstream(&server));
    assert_ne!(proxy.port(), server.port());
    assert_eq!(proxy.connections(), 0);

    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    assert_eq!(call(&mut a, &["PING"]), "+PONG\r\n");
    assert_eq!(call(&mut b, &["INCR", "k"]), ":1\r\n");
    assert_eq!(call(&mut a, &["INCR", "k"]), ":2\r\n");
    assert_eq!(proxy.connections(), 2);
    assert_eq!(proxy.open_connections(), 2);

    // A value larger than the copy buffers, both ways.
    let big = "x".repeat(300_000);
    assert_eq!(call(&mut a, &["SET", "big", &big]), "+OK\r\n");
    b.write_all(&resp(&["GET", "big"])).unwrap();
    assert_eq!(read_line(&mut b), format!("${}\r\n", big.len()));
    assert_eq!(
        read_exact(&mut b, big.len() + 2),
        format!("{big}\r\n").as_bytes()
    );
    assert_eq!(server.cli(&["STRLEN", "big"]), "300000");

    // A client that goes away is cleaned up.
    drop(a);
    drop(b);
    wait_until("closed connections to be forgotten", || {
        proxy.open_connections() == 0
    });
}

#[test]
fn drop_reply_after_runs_the_command_and_loses_the_reply() {
    let (server, proxy) = start();
    let mut a = connect(&proxy);
    let mut other = connect(&proxy);
    assert_eq!(call(&mut a, &["SET", "k", "5"]), "+OK\r\n");

    // Lowercase needle, uppercase command: matched case-insensitively.
    proxy.drop_reply_after(b"incr");
    assert!(proxy.armed());
    assert_eq!(call(&mut a, &["PING"]), "+PONG\r\n");
    a.write_all(&resp(&["INCR", "k"])).unwrap();
    assert_closed(&mut a);
    assert!(!proxy.armed(), "the fault fires once");
    // The command ran.
    assert_eq!(server.cli(&["GET", "k"]), "6");

    // Other connections and new ones are unaffected.
    assert_eq!(call(&mut other, &["INCR", "k"]), ":7\r\n");
    let mut b = connect(&proxy);
    assert_eq!(call(&mut b, &["INCR", "k"]), ":8\r\n");

    // The needle is found when it straddles two writes as well.
    proxy.drop_reply_after(b"INCRBY");
    let command = resp(&["INCRBY", "k", "10"]);
    let (first, second) = command.split_at(11); // `*3\r\n$6\r\nINC` | `RBY\r\n…`
    b.write_all(first).unwrap();
    thread::sleep(Duration::from_millis(20)); // only makes a split read likely
    b.write_all(second).unwrap();
    assert_closed(&mut b);
    assert_eq!(server.cli(&["GET", "k"]), "18");

    // Disarming before it fires.
    proxy.drop_reply_after(b"DECR");
    assert!(proxy.disarm());
    assert!(!proxy.disarm());
    assert_eq!(call(&mut other, &["DECR", "k"]), ":17\r\n");
}

#[test]
fn drop_reply_closes_after_the_grace_period_without_a_reply() {
    let (server, proxy) = start();
    let mut a = connect(&proxy);
    // From here on the server answers nothing on this connection.
    a.write_all(&resp(&["CLIENT", "REPLY", "OFF"])).unwrap();
    proxy.drop_reply_after(b"grace-key");
    let started = Instant::now();
    a.write_all(&resp(&["SET", "grace-key", "v"])).unwrap();
    assert_closed(&mut a);
    let waited = started.elapsed();
    assert!(
        waited >= larder_testkit::proxy::REPLY_GRACE && waited < PROMPT,
        "closed after {waited:?}"
    );
    // The command ran.
    assert_eq!(server.cli(&["GET", "grace-key"]), "v");
}

#[test]
fn cut_all_closes_open_connections_and_allows_new_ones() {
    let (_server, proxy) = start();
    let mut a = connect(&proxy);
    let mut b = connect(&proxy);
    assert_eq!(call(&mut a, &["PING"]), "+PONG\r\n");
    assert_eq!(call(&mut b, &["PING"]), "+PONG\r\n");

    proxy.cut_all();
    assert_closed(&mut a);
    assert_closed(&mut b);
    wait_until("cut connections to be forgotten", || {
        proxy.open_connections() == 0
    });

    let mut c = connect(&proxy);
    assert_eq!(call(&mut c, &["PING"]), "+PONG\r\n");
    assert_eq!(proxy.connections(), 3);

    // With `refuse`, the server stays away.
    proxy.refuse(true);
    proxy.cut_all();
    assert_closed(&mut c);
    let mut d = connect(&proxy);
    assert_closed(&mut d);
}

#[test]
fn blackhole_holds_requests_until_released() {
    let (server, proxy) = start();
    let mut a = connect(&proxy);
    assert_eq!(call(&mut a, &["PING"]), "+PONG\r\n");

    proxy.blackhole(true);
    a.write_all(&resp(&["INCR", "k"])).unwrap();
    a.set_read_timeout(Some(STALL)).unwrap();
    assert_eq!(read_some(&mut a), Ending::TimedOut);
    // Held, not forwarded.
    assert_eq!(server.cli(&["GET", "k"]), "");

    // New connections are accepted but stall too.
    let mut b = connect(&proxy);
    b.write_all(&resp(&["PING"])).unwrap();
    b.set_read_timeout(Some(STALL)).unwrap();
    assert_eq!(read_some(&mut b), Ending::TimedOut);

    proxy.blackhole(false);
    a.set_read_timeout(Some(PROMPT)).unwrap();
    b.set_read_timeout(Some(PROMPT)).unwrap();
    assert_eq!(read_line(&mut a), ":1\r\n");
    assert_eq!(read_line(&mut b), "+PONG\r\n");
    assert_eq!(call(&mut a, &["INCR", "k"]), ":2\r\n");
}

#[test]
fn blackhole_holds_replies_until_released() {
    let (server, proxy) = start();
    let mut a = connect(&proxy);
    a.write_all(&resp(&["BLPOP", "list", "10"])).unwrap();
    wait_until("BLPOP to block on the server", || {
        server
            .cli(&["INFO", "clients"])
            .contains("blocked_clients:1")
    });

    proxy.blackhole(true);
    assert_eq!(server.cli(&["RPUSH", "list", "x"]), "1");
    // The server answered the BLPOP (the list is empty again)...
    wait_until("BLPOP to take the element", || {
        server.cli(&["LLEN", "list"]) == "0"
    });
    // ...but the reply is held.
    a.set_read_timeout(Some(STALL)).unwrap();
    assert_eq!(read_some(&mut a), Ending::TimedOut);

    proxy.blackhole(false);
    a.set_read_timeout(Some(PROMPT)).unwrap();
    let reply = b"*2\r\n$4\r\nlist\r\n$1\r\nx\r\n";
    assert_eq!(read_exact(&mut a, reply.len()), reply);
}

#[test]
fn refuse_closes_new_connections_only() {
    let (_server, proxy) = start();
    let mut open = connect(&proxy);
    assert_eq!(call(&mut open, &["PING"]), "+PONG\r\n");

    proxy.refuse(true);
    let mut refused = connect(&proxy);
    // Writing may fail once the proxy has closed its side.
    let _ = refused.write_all(&resp(&["PING"]));
    assert_closed(&mut refused);
    assert_eq!(proxy.connections(), 2, "refused connections are counted");
    assert_eq!(call(&mut open, &["PING"]), "+PONG\r\n");

    proxy.refuse(false);
    let mut again = connect(&proxy);
    assert_eq!(call(&mut again, &["PING"]), "+PONG\r\n");
}

#[test]
fn drop_stops_the_listener_and_closes_connections() {
    let (_server, proxy) = start();
    let addr = proxy.addr();
    let mut a = connect(&proxy);
    assert_eq!(call(&mut a, &["PING"]), "+PONG\r\n");
    // A stalled connection does not keep the proxy alive.
    proxy.blackhole(true);
    a.write_all(&resp(&["PING"])).unwrap();

    drop(proxy);
    assert_closed(&mut a);
    let err = TcpStream::connect_timeout(&addr, PROMPT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn upstream_down_closes_the_client() {
    let (mut server, proxy) = start();
    server.stop();
    let mut a = connect(&proxy);
    assert_closed(&mut a);
}

/// The proxy does not run on the test's runtime: a current-thread runtime
/// blocked in synchronous I/O through the proxy still gets answers, and the
/// proxy can be dropped inside it.
#[tokio::test(flavor = "current_thread")]
async fn independent_of_the_tests_runtime() {
    let (_server, proxy) = start();
    let mut a = connect(&proxy);
    assert_eq!(call(&mut a, &["PING"]), "+PONG\r\n");
    proxy.drop_reply_after(b"PING");
    a.write_all(&resp(&["PING"])).unwrap();
    assert_closed(&mut a);
    drop(proxy);
}
