//! A small user service with `#[cache_read]` / `#[cache_write]`:
//!
//!     cargo run --example attributes
//!
//! Reads are cached by key template; a write invalidates by tag and recaches
//! the fresh value; the resource helper ties every read of one user to one
//! tag, so updating user 1 leaves user 10 alone.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use larder::{Cache, Resource, cache_read, cache_write};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    plan: String,
}

#[derive(Debug)]
enum AppError {
    NotFound(u64),
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AppError::NotFound(id) => write!(f, "no user {id}"),
        }
    }
}

impl std::error::Error for AppError {}

/// Every cached read of a user carries the tag `user:{id}`.
static USER: Resource = Resource::new("user");

struct UserService {
    cache: Cache,
    db: Mutex<HashMap<u64, User>>,
    queries: AtomicUsize,
}

impl UserService {
    fn query(&self, id: u64) -> Result<User, AppError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        self.db
            .lock()
            .map_err(|_| AppError::NotFound(id))?
            .get(&id)
            .cloned()
            .ok_or(AppError::NotFound(id))
    }

    /// Key `user:{id}`, 5 minutes, tagged for the write below. `Err` is not
    /// cached.
    #[cache_read(key = "user:{id}", ttl = "5m", tags = ["user:{id}"], cache = self.cache)]
    async fn get_user(&self, id: u64) -> Result<User, AppError> {
        self.query(id)
    }

    /// Key `user:profile:{id}`, tag `user:{id}` (from the resource).
    #[cache_read(resource = USER, id = id, suffix = "profile", ttl = "long", cache = self.cache)]
    async fn get_profile(&self, id: u64) -> Result<String, AppError> {
        let user = self.query(id)?;
        Ok(format!("{} ({})", user.name, user.plan))
    }

    /// Invalidates every read of this user, then recaches both, so the next
    /// reader finds fresh values already stored.
    #[cache_write(resource = USER, id = id, recache = [self.get_user(id), self.get_profile(id)], cache = self.cache)]
    async fn upgrade(&self, id: u64, plan: &str) -> Result<(), AppError> {
        let mut db = self.db.lock().map_err(|_| AppError::NotFound(id))?;
        let user = db.get_mut(&id).ok_or(AppError::NotFound(id))?;
        user.plan = plan.to_owned();
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db = [1, 10]
        .into_iter()
        .map(|id| {
            let user = User {
                id,
                name: format!("user {id}"),
                plan: "free".into(),
            };
            (id, user)
        })
        .collect();
    let service = UserService {
        cache: larder::open("mem://").await?,
        db: Mutex::new(db),
        queries: AtomicUsize::new(0),
    };
    let queries = || service.queries.load(Ordering::SeqCst);

    service.get_user(1).await?;
    service.get_user(1).await?;
    println!("get_user(1) twice          -> {} query", queries());
    assert_eq!(queries(), 1);

    service.get_profile(1).await?;
    service.get_profile(10).await?;
    println!("profiles of 1 and 10       -> {} queries so far", queries());

    assert!(service.get_user(99).await.is_err());
    assert!(service.get_user(99).await.is_err());
    println!(
        "get_user(99) twice (Err)   -> not cached, {} queries so far",
        queries()
    );

    service.upgrade(1, "pro").await?;
    let after_write = queries();
    println!("upgrade(1): invalidate + recache -> {after_write} queries so far");

    let profile = service.get_profile(1).await?;
    let user = service.get_user(1).await?;
    println!(
        "after the write            -> {profile:?}, plan {:?}",
        user.plan
    );
    assert_eq!(user.plan, "pro");
    assert_eq!(queries(), after_write, "served from the recached values");
    assert!(
        service.cache.exists("user:profile:10").await?,
        "user 10 untouched"
    );
    println!(
        "user:profile:10 still cached: {}",
        service.cache.exists("user:profile:10").await?
    );
    println!("{:?}", service.cache.stats());
    Ok(())
}
