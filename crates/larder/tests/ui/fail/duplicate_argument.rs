#[larder::cache_read(key = "a:{id}", ttl = 10, ttl = 20)]
async fn get(id: u64) -> u64 {
    id
}

fn main() {}
