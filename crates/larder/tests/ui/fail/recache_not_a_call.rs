#[larder::cache_write(tags = ["user:{user_id}"], recache = [user_id])]
async fn update_user(user_id: u64) -> Result<(), String> {
    let _ = user_id;
    Ok(())
}

fn main() {}
