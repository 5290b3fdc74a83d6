//! [`CacheTags`]: tags a handler gives its response.

use axum::response::{IntoResponseParts, ResponseParts};

/// Tags for the cached copy of this response, added by the handler that
/// knows them (`user:42` for `/users/42`): invalidating one drops the
/// response. Return it with the body, as a response part:
///
/// ```
/// use axum::Json;
/// use larder_axum::CacheTags;
///
/// async fn show(id: u64) -> (CacheTags, Json<u64>) {
///     (CacheTags::new([format!("user:{id}")]), Json(id))
/// }
/// ```
///
/// Tags are added to the layer's own ([`ResponseCacheLayer::tags`](crate::ResponseCacheLayer::tags)).
/// A response returned twice with tags has both sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheTags(Vec<String>);

impl CacheTags {
    /// These tags.
    pub fn new<I, S>(tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CacheTags(tags.into_iter().map(Into::into).collect())
    }

    /// The tags, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl IntoResponseParts for CacheTags {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        match res.extensions_mut().get_mut::<CacheTags>() {
            Some(existing) => existing.0.extend(self.0),
            None => {
                res.extensions_mut().insert(self);
            }
        }
        Ok(res)
    }
}
