//! Fuzzy key search: options, matches and the score.

/// One match of [`Cache::fuzzy_search`](crate::Cache::fuzzy_search).
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzyMatch<T> {
    /// The key (without the namespace).
    pub key: String,
    /// Similarity from 0 to 1; 1 when the key contains the query.
    pub score: f64,
    /// The value stored under the key.
    pub value: T,
}

/// Options of [`Cache::fuzzy_search`](crate::Cache::fuzzy_search).
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzyOptions {
    /// Lowest score kept (default 0.6).
    pub threshold: f64,
    /// Most matches returned (default 10).
    pub limit: usize,
    /// Only consider keys carrying this tag.
    pub tag: Option<String>,
    /// Most keys examined (default 10,000).
    pub scan_limit: usize,
}

impl Default for FuzzyOptions {
    fn default() -> Self {
        FuzzyOptions {
            threshold: 0.6,
            limit: 10,
            tag: None,
            scan_limit: 10_000,
        }
    }
}

/// How well `key` matches `query`: 1.0 when the key contains the query
/// (ignoring case), else the best Jaro-Winkler similarity of the query to the
/// whole key or to one of its `:`-separated parts.
pub fn fuzzy_score(query: &str, key: &str) -> f64 {
    let query = query.to_lowercase();
    let key = key.to_lowercase();
    if key.contains(&query) {
        return 1.0;
    }
    key.split(':')
        .map(|part| strsim::jaro_winkler(&query, part))
        .fold(strsim::jaro_winkler(&query, &key), f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fuzzy_scores() {
        assert_eq!(fuzzy_score("alice", "user:alice"), 1.0);
        assert_eq!(fuzzy_score("ALI", "user:alice"), 1.0);
        assert!(fuzzy_score("alise", "user:alice") > 0.85);
        assert!(fuzzy_score("zzz", "user:alice") < 0.5);
    }
}
