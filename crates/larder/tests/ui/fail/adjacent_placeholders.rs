#[larder::cache_read(key = "pair:{a}{b}")]
async fn pair(a: &str, b: &str) -> usize {
    a.len() + b.len()
}

fn main() {}
