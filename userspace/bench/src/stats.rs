//! Summary statistics of one benchmark's repetitions.

use alloc::vec::Vec;

/// Median, mean, standard deviation, min and max of a set of samples (ns).
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    pub median: f64,
    pub mean: f64,
    pub stddev: f64,
    pub min: f64,
    pub max: f64,
}

/// `x.sqrt()` without `std`: Newton's iteration from a power-of-two guess,
/// exact to the last few bits for the magnitudes benchmarks produce.
pub(crate) fn sqrt(x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    let mut g = x.max(1.0);
    for _ in 0..64 {
        let next = 0.5 * (g + x / g);
        if (next - g).abs() <= f64::EPSILON * g {
            return next;
        }
        g = next;
    }
    g
}

impl Summary {
    /// The summary of `samples` (all zeros for none). The standard
    /// deviation is the sample one (n - 1), 0 for a single sample.
    pub fn of(samples: &[u64]) -> Summary {
        if samples.is_empty() {
            return Summary::default();
        }
        let mut v: Vec<u64> = samples.to_vec();
        v.sort_unstable();
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2] as f64
        } else {
            (v[n / 2 - 1] as f64 + v[n / 2] as f64) / 2.0
        };
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n as f64;
        let var = if n > 1 {
            v.iter()
                .map(|&x| (x as f64 - mean) * (x as f64 - mean))
                .sum::<f64>()
                / (n - 1) as f64
        } else {
            0.0
        };
        Summary {
            median,
            mean,
            stddev: sqrt(var),
            min: v[0] as f64,
            max: v[n - 1] as f64,
        }
    }
}
