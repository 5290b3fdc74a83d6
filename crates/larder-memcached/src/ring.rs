//! The consistent-hash ring that places each key on one server.
//!
//! Ketama-style: every server owns [`POINTS_PER_WEIGHT`] points per unit of
//! weight on a ring of 64-bit positions, and a key belongs to the server
//! owning the first point at or after the key's own position (wrapping
//! around). Adding a server takes over only the arcs in front of its new
//! points, about `1 / servers` of the keys; removing one hands its arcs to
//! the next points.
//!
//! Positions are the first 8 bytes (big-endian) of the SHA-256 of the key,
//! and of `"{host}:{port}#{i}"` for the `i`-th point of a server: a fixed
//! algorithm, the same on every platform, every Rust release and every
//! process, so all clients agree on where a key lives. (The memcache
//! crate's own placement, `DefaultHasher % n`, remaps almost every key when
//! a server is added and may change with the Rust release.)

use sha2::{Digest, Sha256};

/// Points each unit of weight owns. Many points keep each server's share
/// close to its weight: with 3 servers of weight 1 the shares stay within a
/// few percent of a third whatever the server names.
pub(crate) const POINTS_PER_WEIGHT: u32 = 600;

/// A position on the ring.
pub(crate) fn position(bytes: &[u8]) -> u64 {
    let digest = Sha256::digest(bytes);
    let mut head = [0u8; 8];
    head.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(head)
}

/// Servers placed on the ring.
#[derive(Debug, Clone)]
pub(crate) struct Ring {
    /// (position, server index), sorted by position then index.
    points: Vec<(u64, usize)>,
    servers: usize,
}

impl Ring {
    /// A ring of `servers`, each given as its name (`host:port`) and weight.
    pub(crate) fn new<'a>(servers: impl IntoIterator<Item = (&'a str, u32)>) -> Ring {
        let mut points = Vec::new();
        let mut count = 0;
        for (index, (name, weight)) in servers.into_iter().enumerate() {
            count += 1;
            for i in 0..weight.saturating_mul(POINTS_PER_WEIGHT) {
                points.push((position(format!("{name}#{i}").as_bytes()), index));
            }
        }
        points.sort_unstable();
        Ring {
            points,
            servers: count,
        }
    }

    /// The index of the server `key` lives on.
    pub(crate) fn server(&self, key: &str) -> usize {
        if self.servers <= 1 {
            return 0;
        }
        let at = position(key.as_bytes());
        let i = self.points.partition_point(|(p, _)| *p < at);
        self.points
            .get(i)
            .or(self.points.first())
            .map_or(0, |p| p.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spread(ring: &Ring, servers: usize, keys: usize) -> Vec<usize> {
        let mut counts = vec![0; servers];
        for i in 0..keys {
            counts[ring.server(&format!("svc:v1:key:{i}"))] += 1;
        }
        counts
    }

    #[test]
    fn positions_are_fixed() {
        // The first 8 bytes of SHA-256("") and SHA-256("abc"): if these
        // change, every key moves.
        assert_eq!(position(b""), 0xe3b0_c442_98fc_1c14);
        assert_eq!(position(b"abc"), 0xba78_16bf_8f01_cfea);
    }

    #[test]
    fn one_server_takes_everything() {
        let ring = Ring::new([("a:1", 1)]);
        assert_eq!(ring.server("anything"), 0);
    }

    #[test]
    fn shares_follow_weights_for_many_server_names() {
        for base in [11211u16, 20000, 31337, 40001, 54321] {
            let names: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", base + i)).collect();
            let ring = Ring::new(names.iter().map(|n| (n.as_str(), 1)));
            for count in spread(&ring, 3, 30_000) {
                let off = (count as f64 - 10_000.0).abs() / 10_000.0;
                assert!(off < 0.10, "{base}: {count} of 30000");
            }
            let weighted = Ring::new([(names[0].as_str(), 3), (names[1].as_str(), 1)]);
            let counts = spread(&weighted, 2, 40_000);
            let ratio = counts[0] as f64 / counts[1] as f64;
            assert!((2.6..3.4).contains(&ratio), "{base}: {counts:?}");
        }
    }

    #[test]
    fn adding_a_server_moves_only_its_share() {
        let names: Vec<String> = (0..5).map(|i| format!("10.0.0.{i}:11211")).collect();
        let ring = |n: usize| Ring::new(names[..n].iter().map(|s| (s.as_str(), 1)));
        for n in [3, 4] {
            let (before, after) = (ring(n), ring(n + 1));
            let keys = 20_000;
            let mut moved = 0;
            for i in 0..keys {
                let key = format!("k{i}");
                let (a, b) = (before.server(&key), after.server(&key));
                if a != b {
                    assert_eq!(b, n, "a key moved between old servers");
                    moved += 1;
                }
            }
            let fraction = moved as f64 / keys as f64;
            let expected = 1.0 / (n + 1) as f64;
            assert!(
                (fraction - expected).abs() < 0.04,
                "{n} -> {}: {fraction}",
                n + 1
            );
        }
    }
}
