//! Near-cache coherence: every write, delete, tag or pattern invalidation
//! and clear is published on its namespace's channel
//! (`larder:inv:svc:v1:`, see [`larder_core::near::wire`]) right after the
//! command returns and before the caller gets its answer; a dedicated
//! subscriber connection (a fred `SubscriberClient` with a reconnect
//! policy, subscribed to `larder:inv:*`) turns what it receives into the
//! backend's [`InvalidationStream`].
//!
//! Never stale by accident: when the subscriber's connection fails the
//! stream says [`Invalidation::Disconnected`] (near caches flush and stop
//! serving); once it is connected and subscribed again it says
//! [`Invalidation::Connected`]. A message that does not parse, or messages
//! lost to a lagging channel, come out as [`Invalidation::Reset`].
//! `PUBLISH` reaches every node of a cluster, so one subscription per
//! process covers every shard.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use fred::clients::SubscriberClient;
use fred::interfaces::{ClientLike, EventInterface, PubsubInterface};
use fred::prelude::{Builder, ReconnectPolicy};
use fred::types::Value;
use larder_core::near::wire;
use larder_core::{Invalidation, InvalidationEvent, InvalidationStream};
use tokio::sync::broadcast;

use crate::config::RedisConfig;
use crate::connection::{Connection, fred_config};

/// Events kept for slow near caches before they lag (and flush).
const CAPACITY: usize = 4096;

/// The publishing side and the stream of one backend.
pub(crate) struct Invalidations {
    /// Channel prefix; `None`: off.
    prefix: Option<String>,
    /// Who publishes: random per backend instance.
    origin: String,
    seq: AtomicU64,
    tx: broadcast::Sender<InvalidationEvent>,
    subscribed: AtomicBool,
}

impl Invalidations {
    pub(crate) fn new(config: &RedisConfig) -> Self {
        use std::hash::{BuildHasher, RandomState};
        let origin = format!(
            "{:016x}",
            RandomState::new().hash_one((std::process::id(), std::time::SystemTime::now()))
        );
        Invalidations {
            prefix: config.invalidation_channel.clone(),
            origin,
            seq: AtomicU64::new(0),
            tx: broadcast::channel(CAPACITY).0,
            subscribed: AtomicBool::new(false),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.prefix.is_some()
    }
}

impl Connection {
    /// Publish `invalidation` on the channel of each namespace it touches.
    /// A failure is logged, not returned: the write itself succeeded, and a
    /// server that cannot take a `PUBLISH` has also cut the subscribers,
    /// which flush.
    pub(crate) async fn publish(&self, invalidation: Invalidation) {
        let inv = &self.invalidations;
        let Some(prefix) = &inv.prefix else {
            return;
        };
        // One message per namespace, on its channel.
        let mut groups: Vec<(String, Invalidation)> = Vec::new();
        let mut group = |stored: &str, item: Invalidation| {
            let channel = wire::channel(prefix, stored);
            match groups.iter_mut().find(|(c, _)| *c == channel) {
                Some((_, Invalidation::Keys(keys))) => {
                    if let Invalidation::Keys(more) = item {
                        keys.extend(more);
                    }
                }
                Some((_, Invalidation::Tags(tags))) => {
                    if let Invalidation::Tags(more) = item {
                        tags.extend(more);
                    }
                }
                _ => groups.push((channel, item)),
            }
        };
        match invalidation {
            Invalidation::Keys(keys) => {
                for k in keys {
                    group(&k.clone(), Invalidation::Keys(vec![k]));
                }
            }
            Invalidation::Tags(tags) => {
                for t in tags {
                    group(&t.clone(), Invalidation::Tags(vec![t]));
                }
            }
            Invalidation::Pattern(p) => group(&p.clone(), Invalidation::Pattern(p)),
            Invalidation::Flush { prefix } => {
                group(&prefix.clone(), Invalidation::Flush { prefix });
            }
            _ => {}
        }
        for (channel, item) in groups {
            let seq = inv.seq.fetch_add(1, Ordering::Relaxed);
            let Some(message) = wire::encode(&inv.origin, seq, &item) else {
                continue;
            };
            let sent = self
                .call::<i64>(
                    "PUBLISH",
                    vec![Value::from(channel.as_str()), message.into()],
                )
                .await;
            if let Err(e) = sent {
                tracing::warn!(
                    channel,
                    "larder: publishing a near-cache invalidation failed ({e}); near caches of \
                     other processes may keep the old value until their TTL (grant the channel \
                     in the ACL: &{prefix}*)"
                );
            }
        }
    }

    /// [`Connection::publish`] of keys.
    pub(crate) async fn publish_keys(&self, keys: &[&str]) {
        if self.invalidations.enabled() && !keys.is_empty() {
            let keys = keys.iter().map(|k| (*k).to_owned()).collect();
            self.publish(Invalidation::Keys(keys)).await;
        }
    }
}

/// The stream of `connection`'s invalidations, starting its subscriber on
/// first use. `None` when publishing is off.
pub(crate) fn stream(connection: &Arc<Connection>) -> Option<InvalidationStream> {
    let inv = &connection.invalidations;
    let prefix = inv.prefix.clone()?;
    let rx = inv.tx.subscribe();
    if !inv.subscribed.swap(true, Ordering::SeqCst) {
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(follow(
                    Arc::downgrade(connection),
                    connection.config.clone(),
                    format!("{prefix}*"),
                    inv.tx.clone(),
                ));
            }
            Err(_) => {
                inv.subscribed.store(false, Ordering::SeqCst);
                tracing::warn!(
                    "larder: the Redis invalidation subscriber needs a tokio runtime; near caches \
                     stay off"
                );
            }
        }
    }
    Some(InvalidationStream::new(rx))
}

fn send(tx: &broadcast::Sender<InvalidationEvent>, invalidation: Invalidation) {
    let _ = tx.send(InvalidationEvent::new(invalidation));
}

/// Connect a subscriber, subscribe, and forward what arrives until the
/// backend is gone.
async fn follow(
    owner: Weak<Connection>,
    config: RedisConfig,
    pattern: String,
    tx: broadcast::Sender<InvalidationEvent>,
) {
    let mut pause = config.reconnect_min_delay;
    loop {
        if owner.strong_count() == 0 {
            return;
        }
        match subscribe(&config, &pattern).await {
            Ok(client) => {
                pause = config.reconnect_min_delay;
                run(&owner, &client, &pattern, &tx).await;
                let _ = client.quit().await;
                send(&tx, Invalidation::Disconnected);
            }
            Err(e) => {
                tracing::warn!(
                    "larder: the near-cache invalidation subscriber cannot connect ({e}); near \
                     caches are bypassed until it does"
                );
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(config.reconnect_max_delay);
    }
}

/// A connected subscriber, subscribed to `pattern`.
async fn subscribe(
    config: &RedisConfig,
    pattern: &str,
) -> Result<SubscriberClient, larder_core::Error> {
    let fred = fred_config(config)?;
    let delay = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
    let (connect_timeout, keepalive) = (config.connect_timeout, config.keepalive);
    let mut builder = Builder::from_config(fred);
    builder
        .with_connection_config(|c| {
            c.connection_timeout = connect_timeout;
            c.internal_command_timeout = connect_timeout;
            c.tcp.nodelay = Some(true);
            c.tcp.keepalive = keepalive.map(|d| fred::socket2::TcpKeepalive::new().with_time(d));
        })
        .with_performance_config(|p| {
            p.broadcast_channel_capacity = CAPACITY;
        })
        .set_policy(ReconnectPolicy::new_exponential(
            0,
            delay(config.reconnect_min_delay),
            delay(config.reconnect_max_delay),
            2,
        ));
    let client = builder
        .build_subscriber_client()
        .map_err(|e| crate::error::map("subscribe", &e))?;
    let connected = tokio::time::timeout(connect_timeout + Duration::from_secs(1), client.init())
        .await
        .map_err(|_| larder_core::Error::Timeout {
            backend: "redis",
            operation: "subscribe",
            elapsed: connect_timeout,
            limit: connect_timeout,
        })?;
    if let Err(e) = connected {
        let _ = client.quit().await;
        return Err(crate::error::map("subscribe", &e));
    }
    if let Err(e) = client.psubscribe(pattern).await {
        let _ = client.quit().await;
        return Err(crate::error::map("subscribe", &e));
    }
    Ok(client)
}

/// Forward messages until the subscriber gives up or the backend is gone.
/// A dropped connection is `Disconnected`; fred reconnects (its policy),
/// the pattern is subscribed again, then `Connected`.
async fn run(
    owner: &Weak<Connection>,
    client: &SubscriberClient,
    pattern: &str,
    tx: &broadcast::Sender<InvalidationEvent>,
) {
    let mut messages = client.message_rx();
    let mut errors = client.error_rx();
    let mut reconnects = client.reconnect_rx();
    send(tx, Invalidation::Connected);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            message = messages.recv() => match message {
                Ok(message) => {
                    let event = match &message.value {
                        Value::String(s) => wire::decode(s.as_bytes()),
                        Value::Bytes(b) => wire::decode(b),
                        _ => wire::decode(b""),
                    };
                    match event {
                        Ok(event) => {
                            let _ = tx.send(event);
                        }
                        Err(e) => {
                            tracing::warn!(
                                channel = %message.channel,
                                "larder: an invalidation message does not parse ({e}); near \
                                 caches flush"
                            );
                            send(tx, Invalidation::Reset);
                        }
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => send(tx, Invalidation::Reset),
                Err(broadcast::error::RecvError::Closed) => return,
            },
            error = errors.recv() => match error {
                Ok((e, _)) => {
                    tracing::debug!("larder: invalidation subscriber connection error: {e}");
                    send(tx, Invalidation::Disconnected);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    send(tx, Invalidation::Disconnected);
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            reconnected = reconnects.recv() => match reconnected {
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Messages sent while it was down are lost: subscribe
                    // again, then let near caches serve from empty.
                    send(tx, Invalidation::Disconnected);
                    match client.psubscribe(pattern).await {
                        Ok(()) => send(tx, Invalidation::Connected),
                        Err(e) => {
                            tracing::warn!("larder: resubscribing to invalidations failed: {e}");
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if owner.strong_count() == 0 {
                    return;
                }
            }
        }
    }
}
