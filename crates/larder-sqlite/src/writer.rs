//! The one writer: a thread that owns the read-write connection and runs
//! every write.
//!
//! Callers send a job over a channel and wait for its answer (an async
//! caller without holding a thread). The thread takes the jobs queued at
//! that moment (up to [`MAX_BATCH`]) and runs them in one `BEGIN
//! IMMEDIATE` transaction, each inside its own savepoint so that a job that
//! fails (`incr` of a non-integer) leaves no trace while the others stand.
//! Answers go out only after `COMMIT` returns: an acknowledged write is
//! committed. One writer per backend and `IMMEDIATE` transactions mean no
//! transaction ever upgrades a read lock to a write lock, the usual cause
//! of `database is locked`; other processes' writers wait for each other
//! through the busy timeout.
//!
//! Between batches, every `sweep_interval`, the thread sweeps expired
//! entries, their tag rows, expired locks and old fill stamps in small
//! transactions ([`SWEEP_BATCH`] rows each), interleaved with queued jobs.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use larder_core::sync::lock;
use larder_core::{Error, Result};
use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::connection::now_ms;
use crate::error::{KIND, Place};
use crate::{fill, tags};

/// Most jobs in one transaction.
pub(crate) const MAX_BATCH: usize = 256;

/// Rows one sweep transaction deletes at most.
pub(crate) const SWEEP_BATCH: usize = 500;

/// What a job sees: the connection inside the open transaction, the
/// transaction's clock reading and the writer's state.
pub(crate) struct Tx<'c> {
    /// The writer connection, inside `BEGIN IMMEDIATE`.
    pub(crate) conn: &'c Connection,
    /// Milliseconds since the epoch, read when the transaction began.
    pub(crate) now: i64,
    /// For error messages.
    pub(crate) place: &'c Place,
    /// Entry count and bounds.
    pub(crate) state: &'c mut State,
}

impl Tx<'_> {
    /// Map an SQLite error.
    pub(crate) fn map(&self, e: rusqlite::Error) -> Error {
        self.place.map(e)
    }
}

/// What the writer keeps between transactions.
#[derive(Debug)]
pub(crate) struct State {
    /// Evict beyond this many entries.
    pub(crate) max_entries: Option<u64>,
    /// The number of rows in `entries`, tracked when bounded (recounted at
    /// each sweep, since other processes may write too).
    pub(crate) count: i64,
    /// Entries evicted so far.
    pub(crate) evictions: Arc<AtomicU64>,
}

impl State {
    /// A row was added to `entries`.
    pub(crate) fn added(&mut self) {
        self.count += 1;
    }

    /// `n` rows were removed from `entries`.
    pub(crate) fn removed(&mut self, n: u64) {
        self.count -= i64::try_from(n).unwrap_or(i64::MAX);
    }
}

/// A unit of work for the writer.
trait Job: Send {
    /// Run inside the batch's transaction; the answer is held until the
    /// transaction ends. Returns whether the job succeeded.
    fn run(self: Box<Self>, tx: &mut Tx<'_>) -> (bool, Box<dyn Answer>);

    /// Answer `error` without running (the transaction could not start, or
    /// was lost before this job's turn).
    fn refuse(self: Box<Self>, error: Error);
}

/// A job's answer, sent once the transaction's fate is known.
trait Answer: Send {
    /// `committed` is the batch's outcome.
    fn send(self: Box<Self>, committed: &Result<()>);
}

struct Call<T, F> {
    work: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<T, F> Job for Call<T, F>
where
    T: Send + 'static,
    F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
{
    fn run(self: Box<Self>, tx: &mut Tx<'_>) -> (bool, Box<dyn Answer>) {
        let Call { work, reply } = *self;
        let result = catch_unwind(AssertUnwindSafe(|| work(tx))).unwrap_or_else(|_| {
            Err(tx
                .place
                .backend("a write panicked inside the sqlite backend"))
        });
        (result.is_ok(), Box::new(Reply { result, reply }))
    }

    fn refuse(self: Box<Self>, error: Error) {
        let _ = self.reply.send(Err(error));
    }
}

struct Reply<T> {
    result: Result<T>,
    reply: oneshot::Sender<Result<T>>,
}

impl<T: Send> Answer for Reply<T> {
    fn send(self: Box<Self>, committed: &Result<()>) {
        let answer = match committed {
            Ok(()) => self.result,
            Err(e) => Err(copy(e)),
        };
        // The caller may have gone (a dropped future): nothing to do.
        let _ = self.reply.send(answer);
    }
}

/// The same error for another waiter of a failed batch.
fn copy(e: &Error) -> Error {
    match e {
        Error::Unavailable { backend, message } => Error::Unavailable {
            backend,
            message: message.clone(),
        },
        other => Error::Backend {
            backend: KIND,
            message: other.to_string(),
        },
    }
}

enum Msg {
    Job(Box<dyn Job>),
    Sweep(oneshot::Sender<Result<u64>>),
    Close(oneshot::Sender<Result<()>>),
}

/// The handle on the writer thread.
#[derive(Debug)]
pub(crate) struct Writer {
    sender: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    place: Place,
}

impl Writer {
    /// Start the writer thread on `conn`.
    pub(crate) fn start(
        conn: Connection,
        place: Place,
        state: State,
        sweep_interval: Duration,
    ) -> Result<Self> {
        let (sender, receiver) = mpsc::channel();
        let thread_place = place.clone();
        let thread = std::thread::Builder::new()
            .name("larder-sqlite-writer".to_owned())
            .spawn(move || {
                let mut thread = Thread {
                    conn,
                    place: thread_place,
                    state,
                    sweep_interval,
                };
                thread.run(&receiver);
            })
            .map_err(|e| place.backend(format!("cannot start the writer thread: {e}")))?;
        Ok(Writer {
            sender: Mutex::new(Some(sender)),
            thread: Mutex::new(Some(thread)),
            place,
        })
    }

    fn send(&self, operation: &'static str, msg: Msg) -> Result<()> {
        let sender = lock(&self.sender);
        let Some(sender) = sender.as_ref() else {
            return Err(self.place.closed(operation));
        };
        sender.send(msg).map_err(|_| self.stopped(operation))
    }

    fn stopped(&self, operation: &'static str) -> Error {
        Error::Unavailable {
            backend: KIND,
            message: format!(
                "{}: {operation}: the writer thread has stopped",
                self.place.name
            ),
        }
    }

    /// Run `work` in the writer's next transaction and wait for the
    /// answer, which comes after the commit.
    pub(crate) async fn call<T, F>(&self, operation: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(operation, Msg::Job(Box::new(Call { work, reply })))?;
        answer.await.map_err(|_| self.stopped(operation))?
    }

    /// [`Writer::call`], blocking the calling thread (never an async
    /// worker's).
    pub(crate) fn call_blocking<T, F>(&self, operation: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        self.send(operation, Msg::Job(Box::new(Call { work, reply })))?;
        answer
            .blocking_recv()
            .map_err(|_| self.stopped(operation))?
    }

    /// Sweep every expired row now; returns how many entries went.
    pub(crate) async fn sweep(&self) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        self.send("purge_expired", Msg::Sweep(reply))?;
        answer.await.map_err(|_| self.stopped("purge_expired"))?
    }

    /// Finish the queued jobs, checkpoint the WAL into the database file,
    /// close the connection and stop the thread. Later calls fail; a second
    /// close does nothing.
    pub(crate) async fn close(&self) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let sender = lock(&self.sender).take();
        let Some(sender) = sender else {
            return Ok(());
        };
        if sender.send(Msg::Close(reply)).is_err() {
            return Err(self.stopped("close"));
        }
        drop(sender);
        let closed = answer.await.map_err(|_| self.stopped("close"))?;
        if let Some(thread) = lock(&self.thread).take() {
            // The thread has answered and is returning: this does not block
            // for long.
            let _ = thread.join();
        }
        closed
    }
}

/// The writer thread's own data.
struct Thread {
    conn: Connection,
    place: Place,
    state: State,
    sweep_interval: Duration,
}

impl Thread {
    fn run(&mut self, receiver: &mpsc::Receiver<Msg>) {
        let mut next_sweep = Instant::now() + self.sweep_interval;
        let mut closing = None;
        'outer: loop {
            // Sweep when due, even under a steady stream of writes.
            if Instant::now() >= next_sweep {
                let removed = self.sweep_once().unwrap_or_else(|e| {
                    tracing::warn!(database = %self.place.name, error = %e, "sqlite expiry sweep failed");
                    0
                });
                // A full batch means more is waiting: go on right after the
                // queued jobs.
                next_sweep = Instant::now()
                    + if removed >= SWEEP_BATCH {
                        Duration::ZERO
                    } else {
                        self.sweep_interval
                    };
            }
            let wait = next_sweep.saturating_duration_since(Instant::now());
            let first = match receiver.recv_timeout(wait) {
                Ok(msg) => msg,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut jobs = Vec::new();
            let mut sweeps = Vec::new();
            let mut next = Some(first);
            while let Some(msg) = next.take() {
                match msg {
                    Msg::Job(job) => jobs.push(job),
                    Msg::Sweep(reply) => sweeps.push(reply),
                    Msg::Close(reply) => {
                        closing = Some(reply);
                        break;
                    }
                }
                if jobs.len() < MAX_BATCH {
                    next = receiver.try_recv().ok();
                }
            }
            if !jobs.is_empty() {
                self.run_batch(jobs);
            }
            for reply in sweeps {
                let _ = reply.send(self.sweep_all());
            }
            if closing.is_some() {
                break 'outer;
            }
        }
        let closed = self.finish();
        if let Some(reply) = closing {
            let _ = reply.send(closed);
        }
    }

    /// Run `jobs` in one transaction and answer each.
    fn run_batch(&mut self, jobs: Vec<Box<dyn Job>>) {
        let conn = &self.conn;
        let place = &self.place;
        if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
            let e = place.map(e);
            for job in jobs {
                job.refuse(copy(&e));
            }
            return;
        }
        let mut tx = Tx {
            conn,
            now: now_ms(),
            place,
            state: &mut self.state,
        };
        let mut answers = Vec::with_capacity(jobs.len());
        let mut aborted: Option<Error> = None;
        for job in jobs {
            if let Some(e) = &aborted {
                job.refuse(copy(e));
                continue;
            }
            if let Err(e) = tx.conn.execute_batch("SAVEPOINT job") {
                let e = tx.map(e);
                job.refuse(copy(&e));
                aborted = Some(e);
                continue;
            }
            let (ok, answer) = job.run(&mut tx);
            answers.push(answer);
            let end = if ok {
                tx.conn.execute_batch("RELEASE job")
            } else {
                tx.conn.execute_batch("ROLLBACK TO job; RELEASE job")
            };
            if let Err(e) = end {
                aborted = Some(tx.map(e));
            } else if tx.conn.is_autocommit() {
                // SQLite rolled the whole transaction back (disk full, I/O
                // error): what the earlier jobs did is gone.
                aborted = Some(
                    tx.place
                        .backend("the write transaction was rolled back by SQLite after an error"),
                );
            }
        }
        if aborted.is_none()
            && let Err(e) = tags::enforce_bound(&mut tx)
        {
            aborted = Some(e);
        }
        let outcome = match aborted {
            None => tx.conn.execute_batch("COMMIT").map_err(|e| tx.map(e)),
            Some(e) => Err(e),
        };
        if outcome.is_err() && !tx.conn.is_autocommit() {
            let _ = tx.conn.execute_batch("ROLLBACK");
        }
        if outcome.is_err() && tx.state.max_entries.is_some() {
            // The tracked count may be off: recount.
            let _ = recount(tx.conn, tx.state);
        }
        for answer in answers {
            answer.send(&outcome);
        }
    }

    /// One sweep transaction: up to [`SWEEP_BATCH`] expired entries (with
    /// their tag rows), expired locks and stamps older than
    /// `MAX_FILL_AGE`. Returns the most rows any one table lost.
    fn sweep_once(&mut self) -> Result<usize> {
        let conn = &self.conn;
        conn.execute_batch("BEGIN IMMEDIATE")
            .map_err(|e| self.place.map(e))?;
        let mut tx = Tx {
            conn,
            now: now_ms(),
            place: &self.place,
            state: &mut self.state,
        };
        let swept = sweep_tables(&mut tx);
        let outcome = swept.and_then(|n| {
            tx.conn
                .execute_batch("COMMIT")
                .map(|()| n)
                .map_err(|e| tx.map(e))
        });
        if outcome.is_err() && !tx.conn.is_autocommit() {
            let _ = tx.conn.execute_batch("ROLLBACK");
        }
        if tx.state.max_entries.is_some() {
            recount(tx.conn, tx.state).map_err(|e| self.place.map(e))?;
        }
        outcome
    }

    /// Sweep until nothing expired is left.
    fn sweep_all(&mut self) -> Result<u64> {
        let mut total = 0u64;
        loop {
            let before = self.state.count;
            let n = self.sweep_once()?;
            total += u64::try_from(before - self.state.count).unwrap_or(0);
            if n < SWEEP_BATCH {
                return Ok(total);
            }
        }
    }

    /// Checkpoint the WAL into the database file and truncate it.
    fn finish(&mut self) -> Result<()> {
        let checkpoint = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(|e| self.place.map(e))?;
        if checkpoint != 0 {
            // Busy: a reader (another process) still needs old pages. The
            // WAL keeps the data; the next opener checkpoints it.
            tracing::debug!(database = %self.place.name, "sqlite close: checkpoint incomplete");
        }
        Ok(())
    }
}

/// What one sweep transaction does; returns the largest row count removed
/// from one table.
fn sweep_tables(tx: &mut Tx<'_>) -> Result<usize> {
    let entries = tags::sweep_expired(tx, SWEEP_BATCH)?;
    let locks = crate::locks::sweep(tx)?;
    let stamps = fill::sweep_stamps(tx, SWEEP_BATCH)?;
    Ok(entries.max(locks).max(stamps))
}

/// Count `entries` again (when bounded).
pub(crate) fn recount(conn: &Connection, state: &mut State) -> rusqlite::Result<()> {
    state.count = conn.query_row("SELECT count(*) FROM entries", [], |row| row.get(0))?;
    Ok(())
}
