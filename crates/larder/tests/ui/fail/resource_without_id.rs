static USER: larder::Resource = larder::Resource::new("user");

#[larder::cache_read(resource = USER, suffix = "profile")]
async fn get_profile(user_id: u64) -> u64 {
    user_id
}

fn main() {}
