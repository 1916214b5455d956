//! A latency histogram in microseconds: log-bucketed, 32 buckets per power of two (values
//! under 64 µs exact, the rest within 1/32 ≈ 3 %), up to 2^32 µs (71 minutes). Recording is
//! one relaxed atomic add, so every load task writes the same histogram without a lock; the
//! sampler takes the counts out at each interval boundary.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SUB_BITS: u32 = 5;
const SUB: u64 = 1 << SUB_BITS;
/// Exact buckets below this value (µs).
const LINEAR: u64 = 2 * SUB;
const TOP_EXP: u32 = 32;
const BUCKETS: usize = (LINEAR + (TOP_EXP - SUB_BITS - 1) as u64 * SUB) as usize;

fn index(us: u64) -> usize {
    let us = us.min((1 << TOP_EXP) - 1);
    if us < LINEAR {
        return us as usize;
    }
    let exp = 63 - us.leading_zeros(); // ≥ SUB_BITS + 1
    let mantissa = us >> (exp - SUB_BITS); // in [SUB, 2 SUB)
    (LINEAR + (exp - SUB_BITS - 1) as u64 * SUB + (mantissa - SUB)) as usize
}

/// The highest value a bucket holds: percentiles are reported on the safe side.
fn upper(i: usize) -> u64 {
    let i = i as u64;
    if i < LINEAR {
        return i;
    }
    let exp = (i - LINEAR) / SUB + SUB_BITS as u64 + 1;
    let mantissa = (i - LINEAR) % SUB + SUB;
    ((mantissa + 1) << (exp - SUB_BITS as u64)) - 1
}

/// The shared, lock-free histogram the load tasks record into.
pub struct Hist {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

impl Default for Hist {
    fn default() -> Hist {
        Hist {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl Hist {
    pub fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.buckets[index(us)].fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(us, Ordering::Relaxed);
    }

    /// The counts so far, leaving this histogram empty.
    pub fn take(&self) -> Counts {
        Counts {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.swap(0, Ordering::Relaxed))
                .collect(),
            max: self.max.swap(0, Ordering::Relaxed),
        }
    }
}

/// A snapshot of a histogram, which can be merged and queried.
#[derive(Clone)]
pub struct Counts {
    buckets: Vec<u64>,
    max: u64,
}

impl Counts {
    pub fn empty() -> Counts {
        Counts {
            buckets: vec![0; BUCKETS],
            max: 0,
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// Exact largest value recorded (µs).
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at or below which `p` (0–100) percent of the samples lie (µs; a bucket's
    /// upper bound, never more than the exact maximum). `None` when empty.
    pub fn percentile(&self, p: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((p / 100.0 * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0;
        for (i, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(upper(i).min(self.max));
            }
        }
        Some(self.max)
    }

    pub fn merge(&mut self, other: &Counts) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.max = self.max.max(other.max);
    }
}

/// The bucket arithmetic, checked by the smoke run (a `harness = false` bench runs no
/// `#[test]`s).
pub fn self_check() {
    let mut last = None;
    for us in (0..5_000u64).chain([65_535, 65_536, 1 << 31, (1 << 32) - 1, u64::MAX]) {
        let i = index(us);
        assert!(i < BUCKETS, "{us} µs → bucket {i} of {BUCKETS}");
        assert!(
            upper(i) >= us.min((1 << TOP_EXP) - 1),
            "{us} µs above its bucket"
        );
        let width = upper(i) - if i == 0 { 0 } else { upper(i - 1) };
        assert!(
            width as f64 <= 1.0 + us as f64 / SUB as f64,
            "{us} µs: bucket too wide"
        );
        if let Some(l) = last {
            assert!(i >= l, "buckets out of order at {us} µs");
        }
        last = Some(i);
    }
    let h = Hist::default();
    for us in 1..=1000 {
        h.record(Duration::from_micros(us));
    }
    let c = h.take();
    assert_eq!(c.count(), 1000);
    assert_eq!(c.max(), 1000);
    let p50 = c.percentile(50.0).unwrap_or(0);
    assert!((500..=516).contains(&p50), "p50 {p50}");
    assert_eq!(c.percentile(100.0), Some(1000));
    assert_eq!(h.take().count(), 0, "take leaves the histogram empty");
}
