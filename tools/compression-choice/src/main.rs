//! lz4_flex vs zstd (levels 1 and 3, and level 1 with a reused context) on
//! realistic JSON (an API page of users with orders), 1 KiB to 250 KiB.
//! Prints the compression ratio and MB/s of the uncompressed size.
use std::time::Instant;

fn doc(n: usize) -> Vec<u8> {
    let mut items = Vec::new();
    let cities = ["Paris", "Berlin", "Lisbon", "Oslo", "Madrid", "Rome", "Vienna", "Prague"];
    let statuses = ["active", "pending", "suspended"];
    for i in 0..n {
        let seed = (i as u64).wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        items.push(serde_json::json!({
            "id": 100000 + i,
            "uuid": format!("{:016x}-{:08x}", seed, seed >> 13),
            "name": format!("User {}", seed % 9973),
            "email": format!("user{}@example.{}", seed % 100003, ["com","org","net"][i%3]),
            "city": cities[(seed % 8) as usize],
            "status": statuses[(seed % 3) as usize],
            "score": (seed % 10000) as f64 / 100.0,
            "created_at": format!("2026-{:02}-{:02}T{:02}:{:02}:{:02}Z", 1 + seed%12, 1+seed%28, seed%24, seed%60, (seed>>7)%60),
            "tags": [format!("t{}", seed % 17), format!("t{}", seed % 23)],
            "address": {"street": format!("{} Main St", seed % 999), "zip": format!("{:05}", seed % 99999)},
            "orders": (0..(seed % 3)).map(|k| serde_json::json!({"sku": format!("SKU-{}", (seed>>k)%5000), "qty": 1 + (seed>>(k+3))%5, "price_cents": (seed>>(k+5))%20000})).collect::<Vec<_>>(),
        }));
    }
    serde_json::to_vec(&serde_json::json!({"page": 1, "per_page": n, "total": 12345, "data": items})).unwrap()
}

fn bench(label: &str, data: &[u8], comp: &dyn Fn(&[u8]) -> Vec<u8>, decomp: &dyn Fn(&[u8], usize) -> Vec<u8>) {
    let iters = (20_000_000 / data.len()).max(20);
    let c = comp(data);
    let t = Instant::now();
    for _ in 0..iters { std::hint::black_box(comp(std::hint::black_box(data))); }
    let ct = t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..iters { std::hint::black_box(decomp(std::hint::black_box(&c), data.len())); }
    let dt = t.elapsed().as_secs_f64();
    let mb = (data.len() * iters) as f64 / 1e6;
    println!("| {:>7} | {:<8} | {:>6.2} | {:>8.0} | {:>8.0} |", data.len(), label, data.len() as f64 / c.len() as f64, mb / ct, mb / dt);
}

fn main() {
    println!("| bytes | codec | ratio | compress MB/s | decompress MB/s |");
    println!("|---|---|---|---|---|");
    for n in [3usize, 12, 48, 200, 800] {
        let d = doc(n);
        bench("lz4_flex", &d, &|x| lz4_flex::block::compress(x), &|x, n| lz4_flex::block::decompress(x, n).unwrap());
        bench("zstd-1", &d, &|x| zstd::bulk::compress(x, 1).unwrap(), &|x, n| zstd::bulk::decompress(x, n).unwrap());
        bench("zstd-3", &d, &|x| zstd::bulk::compress(x, 3).unwrap(), &|x, n| zstd::bulk::decompress(x, n).unwrap());
        let c1 = std::cell::RefCell::new(zstd::bulk::Compressor::new(1).unwrap());
        let d1 = std::cell::RefCell::new(zstd::bulk::Decompressor::new().unwrap());
        bench("zstd-1 reused ctx", &d, &|x| c1.borrow_mut().compress(x).unwrap(), &|x, n| d1.borrow_mut().decompress(x, n).unwrap());
    }
}
