//! Entity keys: `user:profile:{id}` read, `user:{id}` invalidated on write.

use std::fmt::Display;

use crate::Cache;
use crate::error::Result;
use crate::key::push_part;

/// A kind of entity whose cached reads are invalidated together.
///
/// ```
/// use larder_core::resource::Resource;
/// static USER: Resource = Resource::new("user");
/// assert_eq!(USER.key("profile", &42), "user:profile:42");
/// assert_eq!(USER.tag(&42), "user:42");
/// assert_eq!(USER.tag(&"a:b"), "user:a%3Ab");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource {
    name: &'static str,
}

impl Resource {
    /// A resource named `name` (`user`, `org`).
    pub const fn new(name: &'static str) -> Self {
        Resource { name }
    }

    /// The resource name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The key of one read of entity `id`: `{name}:{suffix}:{id}`, or
    /// `{name}:{id}` with an empty suffix. `id` is escaped.
    pub fn key(&self, suffix: &str, id: &dyn Display) -> String {
        let mut key = String::with_capacity(self.name.len() + suffix.len() + 16);
        key.push_str(self.name);
        key.push(':');
        if !suffix.is_empty() {
            key.push_str(suffix);
            key.push(':');
        }
        push_part(&mut key, id);
        key
    }

    /// The tag every read of entity `id` carries: `{name}:{id}`.
    pub fn tag(&self, id: &dyn Display) -> String {
        self.key("", id)
    }
}

impl Cache {
    /// Invalidate every cached read of entity `id` of `resource`.
    pub async fn invalidate_resource(
        &self,
        resource: &Resource,
        id: &dyn Display,
    ) -> Result<crate::Count> {
        self.invalidate_tag(&resource.tag(id)).await
    }
}
