#[larder::cache_read(key = "user:{usr_id}")]
async fn get_user(user_id: u64) -> u64 {
    user_id
}

fn main() {}
