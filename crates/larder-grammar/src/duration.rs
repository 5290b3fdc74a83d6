//! Durations: `300` (seconds), `5m`, `1h30m`, `500ms`, `2d`.

use std::time::Duration;

/// Parse `300`, `5m`, `1h30m`, `500ms`, `2d`. `None` when malformed.
///
/// A bare number is seconds; otherwise the text is one or more
/// `<number><unit>` steps with units `ms`, `s`, `m`, `h` and `d`, added up.
/// Surrounding whitespace is ignored, inner whitespace is not allowed. Zero
/// (`0`, `0s`) parses; callers that need a positive duration check it.
///
/// ```
/// use std::time::Duration;
/// use larder_grammar::parse_duration;
/// assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
/// assert_eq!(parse_duration("300"), Some(Duration::from_secs(300)));
/// assert_eq!(parse_duration("5 minutes"), None);
/// ```
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse().ok().map(Duration::from_secs);
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let step = match &rest[..unit_len] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86_400)?),
            _ => return None,
        };
        total = total.checked_add(step)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("300"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h30m15s"), Some(Duration::from_secs(5415)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        for bad in ["", "5 minutes", "m", "5x", "-5", "1.5h", "h1"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn edges() {
        assert_eq!(parse_duration(" 5m "), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        assert_eq!(parse_duration("5 m"), None);
        assert_eq!(parse_duration("5M"), None);
        assert_eq!(parse_duration("99999999999999999999"), None);
        assert_eq!(parse_duration(&format!("{}d", u64::MAX)), None);
    }
}
