//! Money as integer micro-dollars, so sums of many small costs never drift.

/// Dollars to whole micro-dollars (rounded; negatives and NaN count as 0).
pub fn to_micros(usd: f64) -> u64 {
    if usd.is_finite() && usd > 0.0 {
        (usd * 1_000_000.0).round() as u64
    } else {
        0
    }
}

/// Micro-dollars to dollars.
pub fn to_usd(micros: u64) -> f64 {
    micros as f64 / 1_000_000.0
}

/// `a + b` in dollars, summed exactly at micro-dollar precision.
pub fn add_usd(a: f64, b: f64) -> f64 {
    to_usd(to_micros(a) + to_micros(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_small_costs_sum_without_drift() {
        let total = (0..1000).fold(0.0, |acc, _| add_usd(acc, 0.0001));
        assert_eq!(total, 0.1);
        assert_eq!(to_micros(-1.0), 0);
        assert_eq!(to_micros(f64::NAN), 0);
    }
}
