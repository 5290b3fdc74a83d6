//! The connection pool: connecting (TLS, Sentinel, Cluster), sending
//! commands and scripts, and turning every failure into a larder error with
//! the time it really took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fred::clients::{Client, Pool};
use fred::interfaces::{ClientLike, ClusterInterface};
use fred::prelude::{Builder, ReconnectPolicy, ServerConfig};
use fred::types::config::{Config, TlsConfig, TlsConnector};
use fred::types::scripts::Script;
use fred::types::{ClusterHash, CustomCommand, FromValue, Value};
use larder_core::{Error, Result};

use crate::config::{RedisConfig, Topology};
use crate::error::{connect_failed, map};
use crate::scripts::Scripts;

/// Keys handled per round trip by scans, invalidation and batch deletes.
pub(crate) const BATCH: usize = 500;

/// The pool and what every command needs.
pub(crate) struct Connection {
    pub(crate) pool: Pool,
    pub(crate) config: RedisConfig,
    pub(crate) scripts: Scripts,
    pub(crate) invalidations: crate::invalidation::Invalidations,
}

pub(crate) fn cmd(name: &'static str) -> CustomCommand {
    CustomCommand::new_static(name, ClusterHash::FirstKey, false)
}

/// A TTL in milliseconds for Redis (at least 1).
pub(crate) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn tls_connector(config: &RedisConfig) -> Result<TlsConnector> {
    use fred::rustls::pki_types::CertificateDer;
    use fred::rustls::pki_types::pem::PemObject;
    use fred::rustls::{ClientConfig, RootCertStore};

    let tls_error = |what: String| {
        Error::config(
            "url query parameter `tls_ca`",
            "the redis URL",
            "a readable PEM file of CA certificates",
            what,
        )
    };
    let mut roots = RootCertStore::empty();
    match &config.tls_ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
            for cert in certs {
                let cert = cert.map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| tls_error(format!("{}: {e}", path.display())))?;
            }
        }
        None => {
            for cert in fred::rustls_native_certs::load_native_certs().certs {
                // A system root rustls cannot parse is skipped, as browsers do.
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(fred::rustls::crypto::ring::default_provider());
    let client = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Unavailable {
            backend: "redis",
            message: format!("TLS setup: {e}"),
        })?
        .with_root_certificates(roots);
    let client = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let (chain, key) = client_identity(cert, key)?;
            client.with_client_auth_cert(chain, key).map_err(|e| {
                Error::config(
                    "url query parameters `tls_cert` and `tls_key`",
                    "the redis URL",
                    "a client certificate and the private key that matches it",
                    e.to_string(),
                )
            })?
        }
        _ => client.with_no_client_auth(),
    };
    Ok(TlsConnector::from(client))
}

/// The client certificate chain and private key of mutual TLS, from PEM
/// files. Errors name the file, never its contents.
fn client_identity(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<(
    Vec<fred::rustls::pki_types::CertificateDer<'static>>,
    fred::rustls::pki_types::PrivateKeyDer<'static>,
)> {
    use fred::rustls::pki_types::pem::PemObject;
    use fred::rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let error = |param: &str, expected: &str, path: &std::path::Path, e: String| {
        Error::config(
            format!("url query parameter `{param}`"),
            "the redis URL",
            expected,
            format!("{}: {e}", path.display()),
        )
    };
    const CERT: &str = "a readable PEM file with the client certificate (and its chain)";
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| error("tls_cert", CERT, cert, e.to_string()))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| error("tls_cert", CERT, cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(error("tls_cert", CERT, cert, "no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        error(
            "tls_key",
            "a readable PEM file with the private key (PKCS#8, PKCS#1 or SEC1)",
            key,
            e.to_string(),
        )
    })?;
    Ok((chain, key))
}

pub(crate) fn fred_config(config: &RedisConfig) -> Result<Config> {
    let server = match &config.topology {
        Topology::Standalone { host, port } => ServerConfig::new_centralized(host.clone(), *port),
        Topology::Cluster { nodes } => ServerConfig::new_clustered(nodes.clone()),
        Topology::Sentinel {
            sentinels,
            service,
            username,
            password,
        } => {
            let mut server = ServerConfig::new_sentinel(sentinels.clone(), service.clone());
            if let ServerConfig::Sentinel {
                username: u,
                password: p,
                ..
            } = &mut server
            {
                *u = username.clone();
                *p = password.clone();
            }
            server
        }
    };
    let tls = if config.tls {
        Some(TlsConfig::from(tls_connector(config)?))
    } else {
        None
    };
    Ok(Config {
        server,
        username: config.username.clone(),
        password: config.password.clone(),
        database: (config.database > 0).then_some(config.database),
        fail_fast: true,
        tls,
        ..Config::default()
    })
}

impl Connection {
    /// Connect with `config`. Fails when no server answers within the
    /// connect timeout, or when the server refuses the credentials.
    pub(crate) async fn open(config: RedisConfig) -> Result<Self> {
        let fred = fred_config(&config)?;
        let keepalive = config.keepalive;
        let (connect_timeout, command_timeout) = (config.connect_timeout, config.command_timeout);
        let delay = |d: Duration| u32::try_from(d.as_millis()).unwrap_or(u32::MAX);
        let mut builder = Builder::from_config(fred);
        builder
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = connect_timeout;
                // Every command is written once. Resending one that was in
                // flight when a connection dropped could run it twice: an
                // INCRBY counted twice, a lock reported lost while we hold
                // it. Retrying is the resilience layer's decision, for
                // operations that are safe to repeat.
                c.max_command_attempts = 1;
                c.tcp.nodelay = Some(true);
                c.tcp.keepalive =
                    keepalive.map(|d| fred::socket2::TcpKeepalive::new().with_time(d));
            })
            .with_performance_config(|p| {
                p.default_command_timeout = command_timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(
                config.reconnect_attempts,
                delay(config.reconnect_min_delay),
                delay(config.reconnect_max_delay),
                2,
            ));
        let pool = builder
            .build_pool(config.pool_size)
            .map_err(|e| map("connect", &e))?;
        let started = Instant::now();
        let connected =
            tokio::time::timeout(connect_timeout + Duration::from_secs(1), pool.init()).await;
        let failure = match connected {
            Ok(Ok(_task)) => None,
            Ok(Err(e)) => Some(connect_failed(&config.topology, &e)),
            Err(_) => Some(Error::Timeout {
                backend: "redis",
                operation: "connect",
                elapsed: started.elapsed(),
                limit: connect_timeout,
            }),
        };
        if let Some(error) = failure {
            let _ = pool.quit().await;
            return Err(error);
        }
        // Load every script on every node now, so that pipelined calls
        // never meet a server without them.
        let scripts = Scripts::new();
        for script in scripts.all() {
            let started = Instant::now();
            if let Err(e) = script.load(pool.next()).await {
                let _ = pool.quit().await;
                return Err(match map("connect", &e) {
                    Error::Timeout {
                        backend, operation, ..
                    } => Error::Timeout {
                        backend,
                        operation,
                        elapsed: started.elapsed(),
                        limit: connect_timeout,
                    },
                    other => other,
                });
            }
        }
        Ok(Connection {
            pool,
            invalidations: crate::invalidation::Invalidations::new(&config),
            config,
            scripts,
        })
    }

    pub(crate) fn cluster(&self) -> bool {
        self.config.is_cluster()
    }

    pub(crate) fn client(&self) -> &Client {
        self.pool.next()
    }

    /// The larder error for a fred failure of `operation` that started at
    /// `started`: a timeout reports how long it really waited, and the limit.
    pub(crate) fn fail(
        &self,
        operation: &'static str,
        started: Instant,
    ) -> impl Fn(fred::error::Error) -> Error + '_ {
        move |e| match map(operation, &e) {
            Error::Timeout {
                backend, operation, ..
            } => Error::Timeout {
                backend,
                operation,
                elapsed: started.elapsed(),
                limit: self.config.command_timeout,
            },
            other => other,
        }
    }

    /// One command.
    pub(crate) async fn call<R: FromValue>(
        &self,
        operation: &'static str,
        args: Vec<Value>,
    ) -> Result<R> {
        let started = Instant::now();
        self.client()
            .custom(cmd(operation), args)
            .await
            .map_err(self.fail(operation, started))
    }

    /// One command on a given cluster node.
    pub(crate) async fn call_on<R: FromValue>(
        &self,
        node: &fred::types::config::Server,
        operation: &'static str,
        args: Vec<Value>,
    ) -> Result<R> {
        let started = Instant::now();
        self.client()
            .with_cluster_node(node.clone())
            .custom(cmd(operation), args)
            .await
            .map_err(self.fail(operation, started))
    }

    /// One script (loaded on first use).
    pub(crate) async fn script<R: FromValue>(
        &self,
        operation: &'static str,
        script: &Script,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<R> {
        let started = Instant::now();
        script
            .evalsha_with_reload(self.client(), keys, args)
            .await
            .map_err(self.fail(operation, started))
    }

    /// Commands pipelined over one connection, each routed by its first key
    /// (the cluster-safe form of a batch); one reply each, in order.
    pub(crate) async fn pipelined(
        &self,
        operation: &'static str,
        calls: Vec<(CustomCommand, Vec<Value>)>,
    ) -> Result<Vec<Value>> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let started = Instant::now();
        let pipeline = self.client().pipeline();
        for (command, args) in calls {
            let _: () = pipeline
                .custom(command, args)
                .await
                .map_err(self.fail(operation, started))?;
        }
        pipeline.all().await.map_err(self.fail(operation, started))
    }

    /// One command per key (first argument), pipelined.
    pub(crate) async fn per_key(
        &self,
        operation: &'static str,
        calls: Vec<Vec<Value>>,
    ) -> Result<Vec<Value>> {
        let calls = calls
            .into_iter()
            .map(|args| (cmd(operation), args))
            .collect();
        self.pipelined(operation, calls).await
    }

    /// The same script over many single-key calls, pipelined. The first call
    /// goes alone so that a server without the script loads it.
    pub(crate) async fn script_per_key(
        &self,
        operation: &'static str,
        script: &Script,
        calls: Vec<(String, Vec<Value>)>,
    ) -> Result<Vec<Value>> {
        let mut calls = calls.into_iter();
        let Some((key, args)) = calls.next() else {
            return Ok(Vec::new());
        };
        let first: Value = self.script(operation, script, vec![key], args).await?;
        let sha = script.sha1().clone();
        let rest = calls
            .map(|(key, args)| {
                // fred routes a custom command by its first string (here the
                // SHA) unless given the slot: give it the key's.
                let slot = fred::util::redis_keyslot(key.as_bytes());
                let mut full = vec![
                    Value::from(sha.clone()),
                    Value::from(1i64),
                    Value::from(key),
                ];
                full.extend(args);
                (
                    CustomCommand::new_static("EVALSHA", ClusterHash::Custom(slot), false),
                    full,
                )
            })
            .collect();
        let mut out = vec![first];
        out.extend(self.pipelined(operation, rest).await?);
        Ok(out)
    }

    /// The primaries of a cluster (one `None` for a single server).
    pub(crate) fn nodes(&self) -> Result<Vec<Option<fred::types::config::Server>>> {
        if !self.cluster() {
            return Ok(vec![None]);
        }
        let state = self
            .client()
            .cached_cluster_state()
            .ok_or_else(|| Error::Unavailable {
                backend: "redis",
                message: "the cluster layout is not known yet".into(),
            })?;
        Ok(state.unique_primary_nodes().into_iter().map(Some).collect())
    }
}
