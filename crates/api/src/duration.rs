//! Istio's duration strings (`5s`, `100ms`, `1.5s`, `2m`, `1h`), as the protobuf JSON form
//! and Istio's validation accept them.

use std::time::Duration;

/// Parses an Istio duration; `None` when it is not one (no unit, unknown unit, negative, or
/// beyond protobuf's 10,000 years).
pub fn parse(s: &str) -> Option<Duration> {
    let s = s.trim();
    let at = s.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = s.split_at(at);
    let v: f64 = num.parse().ok()?;
    let secs = match unit {
        "ns" => v / 1e9,
        "us" | "µs" => v / 1e6,
        "ms" => v / 1000.0,
        "s" => v,
        "m" => v * 60.0,
        "h" => v * 3600.0,
        _ => return None,
    };
    if !secs.is_finite() || !(0.0..=315_576_000_000.0).contains(&secs) {
        return None;
    }
    Some(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_fractions() {
        assert_eq!(parse("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Some(Duration::from_secs(3600)));
        for bad in ["5", "s", "-1s", "5 parsecs", "5d", "NaNs", "1e300h"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}
