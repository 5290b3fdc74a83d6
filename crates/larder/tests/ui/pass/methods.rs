use larder::{Cache, cache_read, cache_write};

struct Repo {
    cache: Cache,
    id: u64,
}

impl Repo {
    /// Docs and attributes survive.
    #[cache_read(key = "repo:{self.id}:name", cache = self.cache)]
    #[allow(clippy::unused_async)]
    pub async fn name(&self) -> String {
        format!("repo {}", self.id)
    }

    #[cache_write(tags = ["repo:{self.id}"], recache = [self.name()], cache = self.cache)]
    pub async fn rename(&mut self, id: u64) -> Result<(), String> {
        self.id = id;
        Ok(())
    }
}

trait Named {
    async fn label(&self, n: u32) -> Option<String>;
}

impl Named for Repo {
    #[cache_read(key = "label:{n}", ttl = "long", cache = self.cache)]
    async fn label(&self, n: u32) -> Option<String> {
        Some(format!("{n}"))
    }
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut repo = Repo { cache: larder::open("mem://").await.unwrap(), id: 1 };
        assert_eq!(repo.name().await, "repo 1");
        repo.rename(2).await.unwrap();
        assert_eq!(repo.label(3).await.as_deref(), Some("3"));
    });
}
