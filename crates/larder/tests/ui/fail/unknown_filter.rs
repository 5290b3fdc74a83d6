#[larder::cache_read(key = "user:{name|upper}")]
async fn get_user(name: &str) -> String {
    name.to_owned()
}

fn main() {}
