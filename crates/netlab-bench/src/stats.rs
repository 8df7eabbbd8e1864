//! The statistics every benchmark prints: min / median / max of the rounds, percentiles of
//! latency samples, and the ratio of one competitor's median to the reference's median measured
//! in the same run.
//!
//! Medians, not means: on a shared two-core machine one round in five is often disturbed by
//! someone else's compile, and the median ignores it where a mean would not.

/// Min, median and max of one competitor's rounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Smallest sample.
    pub min: f64,
    /// Middle sample (mean of the two middle ones for an even count).
    pub median: f64,
    /// Largest sample.
    pub max: f64,
    /// How many samples.
    pub n: usize,
}

impl Summary {
    /// Summarises the finite samples; `None` when there is none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut v: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Summary {
            min: v[0],
            median: median_sorted(&v),
            max: v[v.len() - 1],
            n: v.len(),
        })
    }
}

/// The median of already sorted values (`NaN` for none).
fn median_sorted(v: &[f64]) -> f64 {
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median of the finite samples, `None` when there is none.
pub fn median(samples: &[f64]) -> Option<f64> {
    Summary::of(samples).map(|s| s.median)
}

/// `value / reference`, `None` when the quotient means nothing (zero or non-finite reference).
pub fn ratio(value: f64, reference: f64) -> Option<f64> {
    if !value.is_finite() || !reference.is_finite() || reference == 0.0 {
        return None;
    }
    Some(value / reference)
}

/// The `p`-th percentile (0–100) of integer samples by the nearest-rank method: the smallest
/// sample such that at least `p` % of the samples are at most it. Sorts `samples` in place.
pub fn percentile(samples: &mut [u64], p: f64) -> Option<u64> {
    if samples.is_empty() || !(0.0..=100.0).contains(&p) {
        return None;
    }
    samples.sort_unstable();
    let n = samples.len();
    let rank = ((p / 100.0) * n as f64).ceil() as usize;
    Some(samples[rank.clamp(1, n) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_count_is_the_middle_value() {
        assert_eq!(median(&[5.0, 1.0, 3.0]), Some(3.0));
    }

    #[test]
    fn median_of_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn median_ignores_non_finite_samples_and_is_none_when_empty() {
        assert_eq!(median(&[f64::NAN, 7.0, f64::INFINITY]), Some(7.0));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
    }

    #[test]
    fn summary_keeps_min_median_max_and_count() {
        let s = Summary::of(&[9.0, 2.0, 4.0, 8.0, 1.0]).unwrap();
        assert_eq!(
            s,
            Summary {
                min: 1.0,
                median: 4.0,
                max: 9.0,
                n: 5
            }
        );
    }

    #[test]
    fn one_outlier_round_does_not_move_the_median() {
        let calm = median(&[10.0, 10.0, 10.0, 10.0, 10.0]).unwrap();
        let disturbed = median(&[10.0, 10.0, 1.0, 10.0, 10.0]).unwrap();
        assert_eq!(calm, disturbed);
    }

    #[test]
    fn ratio_divides_and_refuses_meaningless_references() {
        assert_eq!(ratio(3.0, 4.0), Some(0.75));
        assert_eq!(ratio(3.0, 0.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
        assert_eq!(ratio(1.0, f64::INFINITY), None);
    }

    #[test]
    fn percentile_uses_nearest_rank() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentile(&mut v, 50.0), Some(50));
        assert_eq!(percentile(&mut v, 99.0), Some(99));
        assert_eq!(percentile(&mut v, 100.0), Some(100));
        assert_eq!(percentile(&mut v, 0.0), Some(1));
        let mut three = vec![30, 10, 20];
        assert_eq!(percentile(&mut three, 99.0), Some(30));
        assert_eq!(percentile(&mut three, 50.0), Some(20));
        assert_eq!(percentile(&mut [], 50.0), None);
        assert_eq!(percentile(&mut [1], 101.0), None);
    }
}
