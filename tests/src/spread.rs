//! Medians with min–max, as every benchmark here reports its repeated
//! runs.

/// The median, smallest and largest of some measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    /// Of at least one value (the upper median for an even count).
    pub fn of(values: impl IntoIterator<Item = f64>) -> Spread {
        let mut values: Vec<f64> = values.into_iter().collect();
        assert!(!values.is_empty(), "a spread of no values");
        values.sort_by(|a, b| a.total_cmp(b));
        Spread {
            median: values[values.len() / 2],
            min: values[0],
            max: values[values.len() - 1],
            n: values.len(),
        }
    }
}

/// The median of `values`.
pub fn median(values: impl IntoIterator<Item = f64>) -> f64 {
    Spread::of(values).median
}

/// Prints `name: median unit (min …, max …, n=…)` with `decimals` places.
pub fn report(name: &str, unit: &str, values: impl IntoIterator<Item = f64>, decimals: usize) {
    let s = Spread::of(values);
    println!(
        "{name}: {:.d$} {unit} (min {:.d$}, max {:.d$}, n={})",
        s.median,
        s.min,
        s.max,
        s.n,
        d = decimals
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_min_and_max() {
        let s = Spread::of([3.0, 1.0, 2.0]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(median([4.0, 1.0]), 4.0);
    }
}
