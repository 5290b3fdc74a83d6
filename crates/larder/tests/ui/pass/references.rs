use larder::{Cache, Resource, cache_read, cache_write};

static DOC: Resource = Resource::new("doc");

#[cache_read(key = "doc:{owner}:{title|lower}", cache = cache)]
async fn doc<'a>(cache: &Cache, owner: &'a str, title: &String, body: &mut Vec<u8>) -> usize {
    body.push(1);
    owner.len() + title.len()
}

#[cache_read(resource = DOC, id = id, suffix = "meta", cache = cache)]
async fn meta(cache: &Cache, id: &str) -> String {
    id.to_owned()
}

#[cache_write(resource = DOC, id = id, recache = [meta(cache, id)], cache = cache)]
async fn touch(cache: &Cache, id: &str) {}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cache = larder::open("mem://").await.unwrap();
        let mut body = Vec::new();
        let title = String::from("Hello");
        assert_eq!(doc(&cache, "ann", &title, &mut body).await, 8);
        assert_eq!(doc(&cache, "ann", &title, &mut body).await, 8);
        assert_eq!(body.len(), 1);
        assert_eq!(meta(&cache, "a:b").await, "a:b");
        touch(&cache, "a:b").await;
        assert!(cache.exists("doc:meta:a%3Ab").await.unwrap());
    });
}
