#[larder::cache_read(key = "user:{user_id}", early_ttl = 60, xfetch = 0.0)]
async fn get_user(user_id: u64) -> Option<String> {
    Some(format!("user {user_id}"))
}

fn main() {}
