//! The samples of one table row and their summary: cycles to nanoseconds, percentiles from an
//! hdrhistogram. A leaf module: the table (lib.rs) and the SVG (svg.rs) both read it.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// One row of the table: a name and samples in cycles (all runs concatenated, `run_lens`
/// saying how many came from each run, in order; empty if not recorded by run).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub cycles: Vec<u64>,
    #[serde(default)]
    pub run_lens: Vec<usize>,
}

impl Row {
    /// A row of one run's samples (or of samples not split by run).
    pub fn new(name: impl Into<String>, cycles: Vec<u64>) -> Row {
        Row {
            name: name.into(),
            cycles,
            run_lens: Vec::new(),
        }
    }

    /// Appends one run's samples.
    pub fn push_run(&mut self, samples: &[u64]) {
        self.cycles.extend_from_slice(samples);
        self.run_lens.push(samples.len());
    }

    /// The samples of each run, in order (one slice of everything if not split by run).
    pub fn runs(&self) -> Vec<&[u64]> {
        if self.run_lens.iter().sum::<usize>() != self.cycles.len() {
            return vec![&self.cycles];
        }
        let mut at = 0;
        self.run_lens
            .iter()
            .map(|&n| {
                at += n;
                &self.cycles[at - n..at]
            })
            .collect()
    }
}

/// Summary of a [`Row`]: order statistics from an hdrhistogram (3 significant figures), in
/// cycles and in ns (`cycles * 1e6 / tsc_khz`; NaN, i.e. JSON `null`, if `tsc_khz` is 0).
/// An empty row has count 0 and every figure 0.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub name: String,
    pub count: u64,
    pub min_ns: f64,
    pub p50_ns: f64,
    pub p90_ns: f64,
    pub p99_ns: f64,
    pub p999_ns: f64,
    pub p9999_ns: f64,
    pub max_ns: f64,
    pub mean_ns: f64,
    pub stdev_ns: f64,
    pub min_cycles: u64,
    pub p50_cycles: u64,
    pub p90_cycles: u64,
    pub p99_cycles: u64,
    pub p999_cycles: u64,
    pub p9999_cycles: u64,
    pub max_cycles: u64,
    pub mean_cycles: f64,
    pub stdev_cycles: f64,
}

/// Cycles to ns at `tsc_khz`.
pub fn cycles_to_ns(cycles: f64, tsc_khz: u64) -> f64 {
    if tsc_khz == 0 {
        f64::NAN
    } else {
        cycles * 1e6 / tsc_khz as f64
    }
}

/// Summarizes `row` with an hdrhistogram (3 significant figures, sized for the row's largest
/// sample). Percentiles are hdrhistogram's `value_at_quantile` (the bucket
/// holding the nearest-rank sample, reported at its upper edge); min is the lowest sample's
/// bucket's lower edge, max the highest's upper edge, mean hdrhistogram's.
pub fn summarize(row: &Row, tsc_khz: u64) -> Summary {
    // Sized for the largest sample up front: (`saturating_record` clamps rather than
    // auto-resizes, so it would silently fold every sample above 2047 into the top bucket.)
    let highest = row.cycles.iter().copied().max().unwrap_or(0).max(2);
    let mut h = Histogram::<u64>::new_with_max(highest, 3).expect("1 < highest, 3 figures");
    for &c in &row.cycles {
        h.record(c).expect("every sample <= highest trackable");
    }
    let count = h.len();
    let q = |q: f64| {
        if count == 0 {
            0
        } else {
            h.value_at_quantile(q)
        }
    };
    let (min, max, mean, stdev) = if count == 0 {
        (0, 0, 0.0, 0.0)
    } else {
        (h.min(), h.max(), h.mean(), h.stdev())
    };
    let (p50, p90, p99, p999, p9999) = (q(0.50), q(0.90), q(0.99), q(0.999), q(0.9999));
    let ns = |c: u64| {
        if count == 0 {
            0.0
        } else {
            cycles_to_ns(c as f64, tsc_khz)
        }
    };
    Summary {
        name: row.name.clone(),
        count,
        min_ns: ns(min),
        p50_ns: ns(p50),
        p90_ns: ns(p90),
        p99_ns: ns(p99),
        p999_ns: ns(p999),
        p9999_ns: ns(p9999),
        max_ns: ns(max),
        mean_ns: if count == 0 {
            0.0
        } else {
            cycles_to_ns(mean, tsc_khz)
        },
        stdev_ns: if count == 0 {
            0.0
        } else {
            cycles_to_ns(stdev, tsc_khz)
        },
        min_cycles: min,
        p50_cycles: p50,
        p90_cycles: p90,
        p99_cycles: p99,
        p999_cycles: p999,
        p9999_cycles: p9999,
        max_cycles: max,
        mean_cycles: mean,
        stdev_cycles: stdev,
    }
}
