struct Opaque;

#[larder::cache_read(key = "o:{thing}")]
async fn get(thing: Opaque) -> u64 {
    let _ = thing;
    1
}

fn main() {}
