//! The value parsers of every numeric flag, with HF's `TrainingArguments` rules: clap's error
//! names the flag and the value, and these say the allowed range (`error: invalid value '0'
//! for '--batch-size <BATCH_SIZE>': 0 is not in 1.. (a count of at least 1)`).

use std::fmt::Display;
use std::str::FromStr;

fn number<T: FromStr>(s: &str) -> Result<T, String>
where
    T::Err: Display,
{
    s.trim()
        .parse::<T>()
        .map_err(|e| format!("not a number ({e})"))
}

/// A count of at least 1 (batch size, steps, accumulation, limits, lengths).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    let v: usize = number(s)?;
    if v == 0 {
        return Err("0 is not in 1.. (a count of at least 1)".into());
    }
    Ok(v)
}

/// A finite number above 0 (learning rate, epochs, max grad norm, epsilon, temperature).
pub fn positive(s: &str) -> Result<f64, String> {
    let v: f64 = number(s)?;
    if !(v.is_finite() && v > 0.0) {
        return Err(format!("{v} is not in (0, ∞) (a finite number above 0)"));
    }
    Ok(v)
}

/// [`positive`] as f32.
pub fn positive_f32(s: &str) -> Result<f32, String> {
    positive(s).map(|v| v as f32)
}

/// A finite number of at least 0 (weight decay).
pub fn non_negative_f32(s: &str) -> Result<f32, String> {
    let v: f32 = number(s)?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{v} is not in [0, ∞)"));
    }
    Ok(v)
}

/// A fraction strictly between 0 and 1 (held-out splits, masking probability).
pub fn fraction(s: &str) -> Result<f64, String> {
    let v: f64 = number(s)?;
    if !(v > 0.0 && v < 1.0) {
        return Err(format!("{v} is not in (0, 1)"));
    }
    Ok(v)
}

/// A probability in [0, 1] (warmup ratio, short-sequence probability).
pub fn unit_interval(s: &str) -> Result<f64, String> {
    let v: f64 = number(s)?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{v} is not in [0, 1]"));
    }
    Ok(v)
}

/// An Adam β in [0, 1), as torch requires.
pub fn beta(s: &str) -> Result<f32, String> {
    let v: f32 = number(s)?;
    if !(0.0..1.0).contains(&v) {
        return Err(format!(
            "{v} is not in [0, 1) (torch's range for Adam's betas)"
        ));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_accept_their_values_and_name_the_range() {
        assert_eq!(at_least_one("3"), Ok(3));
        assert!(at_least_one("0").unwrap_err().contains("1.."));
        assert!(at_least_one("-2").unwrap_err().contains("not a number"));
        assert_eq!(positive("2e-5"), Ok(2e-5));
        for bad in ["0", "-1", "inf", "NaN"] {
            assert!(positive(bad).is_err(), "{bad}");
        }
        assert_eq!(fraction("0.2"), Ok(0.2));
        for bad in ["0", "1", "1.5", "-0.1"] {
            assert!(fraction(bad).unwrap_err().contains("(0, 1)"), "{bad}");
        }
        assert_eq!(unit_interval("0"), Ok(0.0));
        assert!(unit_interval("1.01").is_err());
        assert_eq!(beta("0.999"), Ok(0.999));
        assert!(beta("1").is_err());
        assert_eq!(non_negative_f32("0"), Ok(0.0));
        assert!(non_negative_f32("-0.01").is_err());
    }
}
