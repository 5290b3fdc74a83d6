//! Byte sizes: `1048576`, `64KiB`, `32MiB`, `1GiB`, `2MB`.

/// Parse a byte size: `1048576`, `64KiB`, `32MiB`, `1GiB` (also `KB`, `MB`,
/// `GB` as powers of 1000). `None` when malformed or over `u64::MAX`.
///
/// ```
/// use larder_grammar::parse_size;
/// assert_eq!(parse_size("32MiB"), Some(32 * 1024 * 1024));
/// assert_eq!(parse_size("2MB"), Some(2_000_000));
/// assert_eq!(parse_size("lots"), None);
/// ```
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return None;
    }
    let n: u64 = text[..digits].parse().ok()?;
    let factor: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    n.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("64KiB"), Some(65536));
        assert_eq!(parse_size("2MB"), Some(2_000_000));
        assert_eq!(parse_size("lots"), None);
    }

    #[test]
    fn edges() {
        assert_eq!(parse_size(" 512 KiB "), Some(524_288));
        assert_eq!(parse_size("7B"), Some(7));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("KiB"), None);
        assert_eq!(parse_size("1TiB"), None);
        assert_eq!(parse_size(&format!("{}GiB", u64::MAX)), None);
    }
}
