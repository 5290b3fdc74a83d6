use std::fmt::Display;

use larder::{Cache, cache_read};
use serde::{Serialize, de::DeserializeOwned};

#[cache_read(key = "gen:{id}", cache = cache)]
async fn fetch<T, I>(cache: &Cache, id: I, make: fn(&I) -> T) -> Result<T, String>
where
    // A cached value outlives the call: it is shared with concurrent callers.
    T: Serialize + DeserializeOwned + Send + 'static,
    I: Display + Sync,
{
    Ok(make(&id))
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cache = larder::open("mem://").await.unwrap();
        let v: Result<Vec<u8>, String> = fetch(&cache, 7u8, |n| vec![*n]).await;
        assert_eq!(v, Ok(vec![7]));
        let again: Result<Vec<u8>, String> = fetch(&cache, 7u8, |_| vec![0]).await;
        assert_eq!(again, Ok(vec![7]), "served from the cache");
    });
}
