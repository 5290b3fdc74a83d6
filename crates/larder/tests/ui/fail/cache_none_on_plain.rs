#[larder::cache_read(key = "n:{id}", cache_none = true)]
async fn get(id: u64) -> u64 {
    id
}

fn main() {}
