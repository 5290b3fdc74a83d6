//! [`forward_backend!`](crate::forward_backend): the [`Backend`] operations
//! of a wrapper that hands each one to an inner backend unchanged.

/// Inside `impl Backend for Wrapper { ... }`, forward `label`,
/// `capabilities`, every data operation, `health`, `evictions` and
/// `invalidations` to `self.$field` (any type implementing [`Backend`],
/// such as `Arc<Blocking<MySyncStore>>`). The wrapper writes `kind` itself,
/// and whatever it does differently (`close`, `journals_invalidations`).
///
/// ```
/// use std::sync::Arc;
/// use larder_core::{Backend, BoxFuture, Result};
///
/// #[derive(Debug)]
/// struct Named {
///     inner: Arc<dyn Backend>,
/// }
///
/// impl Backend for Named {
///     fn kind(&self) -> &'static str {
///         "named"
///     }
///     fn close(&self) -> BoxFuture<'_, Result<()>> {
///         self.inner.close()
///     }
///     larder_core::forward_backend!(inner);
/// }
/// ```
///
/// [`Backend`]: crate::Backend
#[macro_export]
macro_rules! forward_backend {
    ($field:ident) => {
        fn label(&self) -> &str {
            self.$field.label()
        }

        fn capabilities(&self) -> $crate::Capabilities {
            self.$field.capabilities()
        }

        fn get<'a>(
            &'a self,
            key: &'a str,
        ) -> $crate::BoxFuture<'a, $crate::Result<Option<$crate::__bytes::Bytes>>> {
            self.$field.get(key)
        }

        fn get_entry<'a>(
            &'a self,
            key: &'a str,
        ) -> $crate::BoxFuture<'a, $crate::Result<Option<$crate::Entry>>> {
            self.$field.get_entry(key)
        }

        fn get_many<'a>(
            &'a self,
            keys: &'a [String],
        ) -> $crate::BoxFuture<'a, $crate::Result<Vec<Option<$crate::__bytes::Bytes>>>> {
            self.$field.get_many(keys)
        }

        fn get_and_touch<'a>(
            &'a self,
            key: &'a str,
            ttl: ::std::time::Duration,
        ) -> $crate::BoxFuture<'a, $crate::Result<Option<$crate::__bytes::Bytes>>> {
            self.$field.get_and_touch(key, ttl)
        }

        fn get_delete<'a>(
            &'a self,
            key: &'a str,
        ) -> $crate::BoxFuture<'a, $crate::Result<Option<$crate::__bytes::Bytes>>> {
            self.$field.get_delete(key)
        }

        fn set<'a>(
            &'a self,
            key: &'a str,
            value: $crate::__bytes::Bytes,
            options: &'a $crate::WriteOptions,
        ) -> $crate::BoxFuture<'a, $crate::Result<bool>> {
            self.$field.set(key, value, options)
        }

        fn set_many<'a>(
            &'a self,
            entries: &'a [(String, $crate::__bytes::Bytes)],
            options: &'a $crate::WriteOptions,
        ) -> $crate::BoxFuture<'a, $crate::Result<u64>> {
            self.$field.set_many(entries, options)
        }

        fn delete<'a>(&'a self, keys: &'a [String]) -> $crate::BoxFuture<'a, $crate::Result<u64>> {
            self.$field.delete(keys)
        }

        fn exists<'a>(&'a self, key: &'a str) -> $crate::BoxFuture<'a, $crate::Result<bool>> {
            self.$field.exists(key)
        }

        fn expire<'a>(
            &'a self,
            key: &'a str,
            ttl: ::std::time::Duration,
        ) -> $crate::BoxFuture<'a, $crate::Result<bool>> {
            self.$field.expire(key, ttl)
        }

        fn ttl<'a>(
            &'a self,
            key: &'a str,
        ) -> $crate::BoxFuture<'a, $crate::Result<$crate::KeyTtl>> {
            self.$field.ttl(key)
        }

        fn incr<'a>(
            &'a self,
            key: &'a str,
            delta: i64,
            ttl: Option<::std::time::Duration>,
        ) -> $crate::BoxFuture<'a, $crate::Result<i64>> {
            self.$field.incr(key, delta, ttl)
        }

        fn invalidate_tags<'a>(
            &'a self,
            tags: &'a [String],
        ) -> $crate::BoxFuture<'a, $crate::Result<$crate::Count>> {
            self.$field.invalidate_tags(tags)
        }

        fn tag_members<'a>(
            &'a self,
            tag: &'a str,
            limit: usize,
        ) -> $crate::BoxFuture<'a, $crate::Result<Vec<String>>> {
            self.$field.tag_members(tag, limit)
        }

        fn delete_matching<'a>(
            &'a self,
            pattern: &'a str,
        ) -> $crate::BoxFuture<'a, $crate::Result<$crate::Count>> {
            self.$field.delete_matching(pattern)
        }

        fn scan<'a>(
            &'a self,
            pattern: &'a str,
            limit: usize,
        ) -> $crate::BoxFuture<'a, $crate::Result<Vec<String>>> {
            self.$field.scan(pattern, limit)
        }

        fn clear<'a>(
            &'a self,
            prefix: &'a str,
        ) -> $crate::BoxFuture<'a, $crate::Result<$crate::Count>> {
            self.$field.clear(prefix)
        }

        fn lock<'a>(
            &'a self,
            key: &'a str,
            token: &'a str,
            ttl: ::std::time::Duration,
        ) -> $crate::BoxFuture<'a, $crate::Result<bool>> {
            self.$field.lock(key, token, ttl)
        }

        fn unlock<'a>(
            &'a self,
            key: &'a str,
            token: &'a str,
        ) -> $crate::BoxFuture<'a, $crate::Result<bool>> {
            self.$field.unlock(key, token)
        }

        fn begin_fill<'a>(
            &'a self,
            key: &'a str,
        ) -> $crate::BoxFuture<
            'a,
            $crate::Result<(Option<$crate::__bytes::Bytes>, $crate::FillToken)>,
        > {
            self.$field.begin_fill(key)
        }

        fn set_filled<'a>(
            &'a self,
            key: &'a str,
            value: $crate::__bytes::Bytes,
            options: &'a $crate::WriteOptions,
            token: $crate::FillToken,
        ) -> $crate::BoxFuture<'a, $crate::Result<$crate::FillStore>> {
            self.$field.set_filled(key, value, options, token)
        }

        fn health(&self) -> $crate::BoxFuture<'_, $crate::Result<$crate::HealthReport>> {
            self.$field.health()
        }

        fn evictions(&self) -> Option<u64> {
            self.$field.evictions()
        }

        fn invalidations(&self) -> Option<$crate::InvalidationStream> {
            self.$field.invalidations()
        }
    };
}
