//! Numbers as the page shows them, formatted with integer arithmetic only: Rust's float
//! formatting (`{:.1}`) would add its whole machinery to every download of the page.

/// `v` rounded to tenths: `"12.3"`, `"0.1"`, `"-2.0"` (an exact tie, like 1.25, rounds away
/// from zero, where `{:.1}` would round it to even).
pub fn tenths(v: f64) -> String {
    let t = (v * 10.0).round() as i64;
    let sign = if t < 0 { "-" } else { "" };
    let t = t.unsigned_abs();
    format!("{sign}{}.{}", t / 10, t % 10)
}

/// `v` rounded to a whole number.
pub fn whole(v: f64) -> String {
    (v.round() as i64).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenths_and_wholes_read_as_float_formatting_would() {
        for v in [
            0.0,
            0.04,
            0.06,
            1.26,
            12.34,
            99.96,
            1500.0,
            -0.26,
            -2.0,
            1e6 + 0.12,
        ] {
            assert_eq!(tenths(v), format!("{v:.1}").replace("-0.0", "0.0"), "{v}");
            assert_eq!(whole(v), format!("{v:.0}").replace("-0", "0"), "{v}");
        }
        assert_eq!(tenths(1.25), "1.3");
    }
}
