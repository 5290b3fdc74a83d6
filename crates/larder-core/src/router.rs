//! [`Router`]: one [`Backend`] made of several, each key sent by its
//! longest matching prefix: hot keys to memory, sessions to their own Redis,
//! the rest to a default.
//!
//! Prefixes apply to the caller's key, after the namespace: a route for
//! `session:` takes `svc:v1:session:ab12` whatever the cache's prefix and
//! version. Operations on one key go to its route. Operations that cannot
//! know where their keys live (tag invalidation, pattern invalidation,
//! `scan`, `tag_members`, `clear`) go to every route that may hold such
//! keys, and a route that fails does not hide what the others did: the
//! error ([`Error::Routes`]) names each failed route and carries the count
//! of the rest.
//!
//! ```
//! # async fn demo() -> larder_core::Result<()> {
//! use std::sync::Arc;
//! use larder_core::{Backend, Cache, Router};
//! # fn memory() -> Arc<dyn Backend> { unimplemented!() }
//! let router = Router::builder()
//!     .route("hot", "hot:", memory())
//!     .route("sessions", "session:", memory())
//!     .default_route("main", memory())
//!     .build()?;
//! let cache = Cache::builder().backend(router).build()?;
//! # let _ = cache; Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::backend::{
    Backend, BoxFuture, Capabilities, Count, Entry, FillGuard, FillStore, FillToken, HealthReport,
    HealthStatus, KeyTtl, RouteHealth, WriteOptions,
};
use crate::error::{Error, Result, RouteFailure};
use crate::glob::Glob;

/// One route: a name, the key prefix it takes, its backend.
#[derive(Clone)]
struct Route {
    name: String,
    prefix: String,
    backend: Arc<dyn Backend>,
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Route")
            .field("name", &self.name)
            .field("prefix", &self.prefix)
            .field("backend", &self.backend.label())
            .finish()
    }
}

/// Builds a [`Router`]: named routes by key prefix, and a default route.
#[derive(Debug, Default)]
#[must_use]
pub struct RouterBuilder {
    routes: Vec<Route>,
    default: Option<Route>,
}

impl RouterBuilder {
    /// Send keys starting with `prefix` (after the namespace) to `backend`.
    /// The longest matching prefix wins.
    pub fn route(
        mut self,
        name: impl Into<String>,
        prefix: impl Into<String>,
        backend: Arc<dyn Backend>,
    ) -> Self {
        self.routes.push(Route {
            name: name.into(),
            prefix: prefix.into(),
            backend,
        });
        self
    }

    /// Send every key no route takes to `backend`.
    pub fn default_route(mut self, name: impl Into<String>, backend: Arc<dyn Backend>) -> Self {
        self.default = Some(Route {
            name: name.into(),
            prefix: String::new(),
            backend,
        });
        self
    }

    /// Check the routes and build the router: a default route is required,
    /// route names are unique, prefixes are non-empty and unique.
    pub fn build(self) -> Result<Router> {
        let bad = |expected: &str, got: String| Error::config("route", "the router", expected, got);
        let Some(default) = self.default else {
            return Err(bad(
                "a default route for the keys no prefix takes: .default_route(name, backend)",
                "none".into(),
            ));
        };
        let mut names: Vec<&str> = vec![default.name.as_str()];
        let mut prefixes: Vec<&str> = Vec::new();
        for route in &self.routes {
            if route.prefix.is_empty() {
                return Err(bad(
                    "a non-empty key prefix (the default route takes everything else)",
                    format!("route {:?} with an empty prefix", route.name),
                ));
            }
            if names.contains(&route.name.as_str()) {
                return Err(bad("route names used once", route.name.clone()));
            }
            if prefixes.contains(&route.prefix.as_str()) {
                return Err(bad("each prefix routed once", route.prefix.clone()));
            }
            names.push(&route.name);
            prefixes.push(&route.prefix);
        }
        let mut routes = self.routes;
        // Longest prefix first, so the first match is the longest.
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let label = format!(
            "router({})",
            routes
                .iter()
                .chain(std::iter::once(&default))
                .map(|r| format!("{}={}", r.name, r.backend.label()))
                .collect::<Vec<_>>()
                .join(",")
        );
        let caps = combine(
            routes
                .iter()
                .chain(std::iter::once(&default))
                .map(|r| r.backend.capabilities()),
        );
        Ok(Router {
            routes,
            default,
            label,
            caps,
        })
    }
}

/// A backend that sends each key to the backend of its route. See the
/// module docs.
pub struct Router {
    /// Longest prefix first.
    routes: Vec<Route>,
    default: Route,
    label: String,
    caps: Capabilities,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes)
            .field("default", &self.default)
            .finish()
    }
}

/// What every route can do: the capabilities of a router are those all its
/// routes share (an operation that reaches a route that cannot do it would
/// fail there).
fn combine(all: impl Iterator<Item = Capabilities>) -> Capabilities {
    let mut out: Option<Capabilities> = None;
    for c in all {
        out = Some(match out {
            None => c,
            Some(mut o) => {
                o.tags &= c.tags;
                o.tag_listing &= c.tag_listing;
                o.scan &= c.scan;
                o.locks &= c.locks;
                o.touch &= c.touch;
                o.get_delete &= c.get_delete;
                o.signed_counters &= c.signed_counters;
                o.ttl_readable &= c.ttl_readable;
                o.exact_counts &= c.exact_counts;
                o.invalidation_stream = false;
                o.shared &= c.shared;
                o.persistent &= c.persistent;
                o.fill_guard = weakest(o.fill_guard, c.fill_guard);
                o.ttl_resolution = o.ttl_resolution.max(c.ttl_resolution);
                o.max_key_len = match (o.max_key_len, c.max_key_len) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                o.max_value_size = match (o.max_value_size, c.max_value_size) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                o.forbidden_key_chars = union(o.forbidden_key_chars, c.forbidden_key_chars);
                o
            }
        });
    }
    out.unwrap_or_else(Capabilities::none)
}

fn weakest(a: FillGuard, b: FillGuard) -> FillGuard {
    match (a, b) {
        (FillGuard::Atomic, other) | (other, FillGuard::Atomic) => other,
        (FillGuard::Windowed, FillGuard::Windowed) => FillGuard::Windowed,
        _ => FillGuard::None,
    }
}

/// The characters either set forbids. Routers are built once at startup;
/// a union that is neither set is kept for the life of the process.
fn union(a: &'static str, b: &'static str) -> &'static str {
    if b.chars().all(|c| a.contains(c)) {
        return a;
    }
    if a.chars().all(|c| b.contains(c)) {
        return b;
    }
    let mut both: String = a.to_owned();
    both.extend(b.chars().filter(|c| !a.contains(*c)));
    Box::leak(both.into_boxed_str())
}

/// The caller's part of a stored key: after `prefix:version:`.
fn caller_part(stored: &str) -> &str {
    let mut colons = stored.match_indices(':').map(|(i, _)| i);
    match (colons.next(), colons.next()) {
        (Some(_), Some(second)) => &stored[second + 1..],
        _ => stored,
    }
}

impl Router {
    /// Start building a router.
    pub fn builder() -> RouterBuilder {
        RouterBuilder::default()
    }

    /// The route names with their prefixes and labels, default last.
    pub fn routes(&self) -> Vec<(&str, &str, &str)> {
        self.all()
            .map(|r| (r.name.as_str(), r.prefix.as_str(), r.backend.label()))
            .collect()
    }

    fn all(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().chain(std::iter::once(&self.default))
    }

    fn route_of(&self, stored: &str) -> &Route {
        let key = caller_part(stored);
        self.routes
            .iter()
            .find(|r| key.starts_with(r.prefix.as_str()))
            .unwrap_or(&self.default)
    }

    fn backend_of(&self, stored: &str) -> &dyn Backend {
        &*self.route_of(stored).backend
    }

    /// Route indexes (`routes.len()` for the default) with the positions of
    /// their keys.
    fn group<'k>(&self, keys: impl Iterator<Item = &'k str>) -> Vec<(usize, Vec<usize>)> {
        let mut groups: HashMap<usize, Vec<usize>> = HashMap::new();
        for (pos, key) in keys.enumerate() {
            let caller = caller_part(key);
            let route = self
                .routes
                .iter()
                .position(|r| caller.starts_with(r.prefix.as_str()))
                .unwrap_or(self.routes.len());
            groups.entry(route).or_default().push(pos);
        }
        let mut groups: Vec<_> = groups.into_iter().collect();
        groups.sort_by_key(|(route, _)| *route);
        groups
    }

    fn by_index(&self, index: usize) -> &Route {
        self.routes.get(index).unwrap_or(&self.default)
    }

    /// The routes a pattern (stored form) may reach: a route is left out
    /// when the pattern's literal start and the route's prefix cannot both
    /// begin the same key.
    fn reached_by(&self, pattern: &str) -> Result<Vec<&Route>> {
        let literal = Glob::new(caller_part(pattern))?.literal_prefix();
        Ok(self
            .all()
            .filter(|r| {
                r.prefix.is_empty()
                    || r.prefix.starts_with(literal.as_str())
                    || literal.starts_with(r.prefix.as_str())
            })
            .collect())
    }

    /// Run `op` on `routes`, adding up what it returns; failures are
    /// collected and reported together after every route had its turn.
    async fn fan_out<'a, T, F>(
        &'a self,
        operation: &'static str,
        routes: Vec<&'a Route>,
        op: F,
    ) -> Result<Vec<T>>
    where
        F: Fn(&'a dyn Backend) -> BoxFuture<'a, Result<T>>,
    {
        let mut done = Vec::new();
        let mut failures = Vec::new();
        for route in routes {
            match op(&*route.backend).await {
                Ok(v) => done.push(v),
                Err(e) => failures.push(RouteFailure {
                    route: route.name.clone(),
                    error: Box::new(e),
                }),
            }
        }
        if failures.is_empty() {
            Ok(done)
        } else {
            Err(Error::Routes {
                operation,
                failures,
                done: None,
            })
        }
    }

    /// [`Router::fan_out`] for counting operations: the count of the routes
    /// that succeeded travels with the error.
    async fn fan_out_count<'a, F>(
        &'a self,
        operation: &'static str,
        routes: Vec<&'a Route>,
        op: F,
    ) -> Result<Count>
    where
        F: Fn(&'a dyn Backend) -> BoxFuture<'a, Result<Count>>,
    {
        let mut total = Count::Exact(0);
        let mut failures = Vec::new();
        for route in routes {
            match op(&*route.backend).await {
                Ok(n) => total += n,
                Err(e) => failures.push(RouteFailure {
                    route: route.name.clone(),
                    error: Box::new(e),
                }),
            }
        }
        if failures.is_empty() {
            Ok(total)
        } else {
            Err(Error::Routes {
                operation,
                failures,
                done: Some(total),
            })
        }
    }
}

impl Backend for Router {
    fn kind(&self) -> &'static str {
        "router"
    }

    fn label(&self) -> &str {
        &self.label
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.backend_of(key).get(key)
    }

    fn get_entry<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Entry>>> {
        self.backend_of(key).get_entry(key)
    }

    fn get_many<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<Vec<Option<Bytes>>>> {
        Box::pin(async move {
            let mut out = vec![None; keys.len()];
            for (route, positions) in self.group(keys.iter().map(String::as_str)) {
                let batch: Vec<String> = positions.iter().map(|&p| keys[p].clone()).collect();
                let found = self.by_index(route).backend.get_many(&batch).await?;
                for (p, value) in positions.into_iter().zip(found) {
                    out[p] = value;
                }
            }
            Ok(out)
        })
    }

    fn get_and_touch<'a>(
        &'a self,
        key: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.backend_of(key).get_and_touch(key, ttl)
    }

    fn get_delete<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Bytes>>> {
        self.backend_of(key).get_delete(key)
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<bool>> {
        self.backend_of(key).set(key, value, options)
    }

    fn set_many<'a>(
        &'a self,
        entries: &'a [(String, Bytes)],
        options: &'a WriteOptions,
    ) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut written = 0;
            for (route, positions) in self.group(entries.iter().map(|(k, _)| k.as_str())) {
                let batch: Vec<(String, Bytes)> =
                    positions.iter().map(|&p| entries[p].clone()).collect();
                written += self
                    .by_index(route)
                    .backend
                    .set_many(&batch, options)
                    .await?;
            }
            Ok(written)
        })
    }

    fn delete<'a>(&'a self, keys: &'a [String]) -> BoxFuture<'a, Result<u64>> {
        Box::pin(async move {
            let mut n = 0;
            for (route, positions) in self.group(keys.iter().map(String::as_str)) {
                let batch: Vec<String> = positions.iter().map(|&p| keys[p].clone()).collect();
                n += self.by_index(route).backend.delete(&batch).await?;
            }
            Ok(n)
        })
    }

    fn exists<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.backend_of(key).exists(key)
    }

    fn expire<'a>(&'a self, key: &'a str, ttl: Duration) -> BoxFuture<'a, Result<bool>> {
        self.backend_of(key).expire(key, ttl)
    }

    fn ttl<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<KeyTtl>> {
        self.backend_of(key).ttl(key)
    }

    fn incr<'a>(
        &'a self,
        key: &'a str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> BoxFuture<'a, Result<i64>> {
        self.backend_of(key).incr(key, delta, ttl)
    }

    fn invalidate_tags<'a>(&'a self, tags: &'a [String]) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move {
            // A tag may be used under every route.
            let routes = self.all().collect();
            self.fan_out_count("invalidate_tags", routes, |b| b.invalidate_tags(tags))
                .await
        })
    }

    fn tag_members<'a>(&'a self, tag: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            let routes = self.all().collect();
            let found = self
                .fan_out("tag_members", routes, |b| b.tag_members(tag, limit))
                .await?;
            let mut keys: Vec<String> = found.into_iter().flatten().collect();
            keys.sort_unstable();
            keys.truncate(limit);
            Ok(keys)
        })
    }

    fn delete_matching<'a>(&'a self, pattern: &'a str) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move {
            let routes = self.reached_by(pattern)?;
            self.fan_out_count("delete_matching", routes, |b| b.delete_matching(pattern))
                .await
        })
    }

    fn scan<'a>(&'a self, pattern: &'a str, limit: usize) -> BoxFuture<'a, Result<Vec<String>>> {
        Box::pin(async move {
            if limit == 0 {
                return Ok(Vec::new());
            }
            let routes = self.reached_by(pattern)?;
            let found = self
                .fan_out("scan", routes, |b| b.scan(pattern, limit))
                .await?;
            let mut keys: Vec<String> = found.into_iter().flatten().collect();
            keys.sort_unstable();
            keys.dedup();
            keys.truncate(limit);
            Ok(keys)
        })
    }

    fn clear<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Count>> {
        Box::pin(async move {
            let routes = self.all().collect();
            self.fan_out_count("clear", routes, |b| b.clear(prefix))
                .await
        })
    }

    fn lock<'a>(
        &'a self,
        key: &'a str,
        token: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool>> {
        self.backend_of(key).lock(key, token, ttl)
    }

    fn unlock<'a>(&'a self, key: &'a str, token: &'a str) -> BoxFuture<'a, Result<bool>> {
        self.backend_of(key).unlock(key, token)
    }

    fn begin_fill<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(Option<Bytes>, FillToken)>> {
        self.backend_of(key).begin_fill(key)
    }

    fn set_filled<'a>(
        &'a self,
        key: &'a str,
        value: Bytes,
        options: &'a WriteOptions,
        token: FillToken,
    ) -> BoxFuture<'a, Result<FillStore>> {
        self.backend_of(key).set_filled(key, value, options, token)
    }

    /// Every route's own report in `routes`. Healthy when every route is;
    /// unhealthy when the default route (or every route) is; degraded
    /// otherwise, with a reason naming each route that is not healthy, so
    /// that one failing route never hides the others.
    fn health(&self) -> BoxFuture<'_, Result<HealthReport>> {
        Box::pin(async move {
            let started = Instant::now();
            let mut report = HealthReport::healthy("router", self.label.clone(), Duration::ZERO);
            let mut serving = 0;
            let mut total = 0;
            for route in self.all() {
                let probe = Instant::now();
                let routed = match route.backend.health().await {
                    Ok(r) => r,
                    Err(e) => HealthReport::unhealthy(
                        route.backend.kind(),
                        route.backend.label(),
                        probe.elapsed(),
                        e,
                    ),
                };
                total += 1;
                let default = route.prefix.is_empty();
                let name = if default {
                    "the default route".to_owned()
                } else {
                    format!("route {} ({:?})", route.name, route.prefix)
                };
                let why = routed.reasons.join("; ");
                if routed.is_healthy() {
                    serving += 1;
                    if routed.status != HealthStatus::Healthy {
                        report = report.degrade(format!("{name} is degraded: {why}"));
                    }
                } else if default {
                    report = report.fail(format!("{name} is unhealthy: {why}"));
                } else {
                    report = report.degrade(format!("{name} is unhealthy: {why}"));
                }
                report = report.detail(
                    format!("route.{}", route.name),
                    format!("{} ({})", routed.status, route.backend.label()),
                );
                let route = RouteHealth::new(route.name.clone(), route.prefix.clone(), routed);
                report.routes.push(route);
            }
            if serving == 0 && total > 0 && report.status != HealthStatus::Unhealthy {
                report = report.fail("no route is serving");
            }
            report.latency = started.elapsed();
            Ok(report)
        })
    }

    fn close(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(async move {
            let routes = self.all().collect();
            self.fan_out("close", routes, |b| b.close()).await.map(drop)
        })
    }

    fn journals_invalidations(&self) -> bool {
        self.all()
            .all(|r| r.backend.journals_invalidations() || !r.backend.capabilities().shared)
    }

    fn evictions(&self) -> Option<u64> {
        self.all()
            .filter_map(|r| r.backend.evictions())
            .reduce(|a, b| a + b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caller_part_skips_the_namespace() {
        assert_eq!(caller_part("svc:v1:session:ab"), "session:ab");
        assert_eq!(caller_part("svc:v1:"), "");
        assert_eq!(caller_part("odd"), "odd");
    }

    #[test]
    fn capabilities_are_what_every_route_shares() {
        let mut a = Capabilities::none();
        a.tags = true;
        a.scan = true;
        a.fill_guard = FillGuard::Atomic;
        a.max_key_len = Some(250);
        a.forbidden_key_chars = " ";
        let mut b = Capabilities::none();
        b.tags = true;
        b.fill_guard = FillGuard::Windowed;
        let c = combine([a, b].into_iter());
        assert!(c.tags && !c.scan);
        assert_eq!(c.fill_guard, FillGuard::Windowed);
        assert_eq!(c.max_key_len, Some(250));
        assert_eq!(c.forbidden_key_chars, " ");
        assert_eq!(union(" ", "\t"), " \t");
    }
}
