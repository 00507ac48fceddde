//! Measuring kernels against the machine's limits, as `blockq bench` and the
//! `bench_report` example do: run times, read bandwidth, compute peaks (all
//! on a given rayon pool) and the roofline bound of a case.
//!
//! A layer's forward pass reads its weights once and performs `2·M·N·K`
//! operations; the fastest it can run is the larger of `bytes / bandwidth`
//! and `ops / peak`, where the peak is the int8 dot peak of the ISA's
//! instruction for block formats and its f32 FMA peak for F16 / BF16 / F32.
//! "% of the limit" is that bound divided by the measured time.

use crate::kernels::peak::{f32_fma_peak_gflops, int8_peak_gops, read_checksum};
use crate::{Isa, QuantType};
use rayon::prelude::*;
use rayon::ThreadPool;
use std::hint::black_box;
use std::ops::Range;
use std::time::{Duration, Instant};

/// Run times of `f` in seconds, sorted: one warm-up call, then at least 3
/// timed calls and more (up to 50) until `min_time` seconds have passed.
pub fn run_times(min_time: f64, mut f: impl FnMut()) -> Vec<f64> {
    f();
    repeat_sorted(min_time, 3..50, || seconds(&mut f))
}

/// `time(a) / time(b)` of calls made in alternation (one warm-up each, then
/// pairs, at least 5 and more, up to 200, until `min_time` seconds have
/// passed), sorted. Two cases timed seconds apart see a shared machine in
/// different states (its clock, its neighbours); a pair sees the same one, so
/// the median ratio of pairs compares the two cases more steadily than the
/// ratio of their separate medians.
pub fn alternated_ratios(min_time: f64, a: impl FnMut(), b: impl FnMut()) -> Vec<f64> {
    alternated(min_time, 5..200, a, b).ratios
}

/// The run times of two cases timed in alternation, and the ratios of the
/// pairs (all sorted, in seconds).
#[derive(Clone, Debug)]
pub struct Alternated {
    /// Run times of `a`.
    pub a: Vec<f64>,
    /// Run times of `b`.
    pub b: Vec<f64>,
    /// `time(a) / time(b)` of each pair.
    pub ratios: Vec<f64>,
}

/// [`alternated_ratios`] with each case's run times too: one warm-up call
/// each, then pairs (at least `count.start`, fewer than `count.end`) until
/// `min_time` seconds have passed.
pub fn alternated(
    min_time: f64,
    count: Range<usize>,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> Alternated {
    a();
    b();
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    let ratios = repeat_sorted(min_time, count, || {
        let (x, y) = (seconds(&mut a), seconds(&mut b));
        ta.push(x);
        tb.push(y);
        x / y
    });
    ta.sort_by(f64::total_cmp);
    tb.sort_by(f64::total_cmp);
    Alternated {
        a: ta,
        b: tb,
        ratios,
    }
}

/// Wall time of one call of `f`, in seconds.
fn seconds(f: &mut impl FnMut()) -> f64 {
    let s = Instant::now();
    f();
    s.elapsed().as_secs_f64()
}

/// `sample()` at least `count.start` times and more, below `count.end`,
/// until `min_time` seconds have passed; the samples sorted.
fn repeat_sorted(min_time: f64, count: Range<usize>, mut sample: impl FnMut() -> f64) -> Vec<f64> {
    let start = Instant::now();
    let mut t = Vec::new();
    while t.len() < count.start || (t.len() < count.end && start.elapsed().as_secs_f64() < min_time)
    {
        t.push(sample());
    }
    t.sort_by(f64::total_cmp);
    t
}

/// Read bandwidth in GB/s of `buf` on the threads of `pool` (contiguous
/// parts), best run: the limit is what the machine can do, not its typical run.
pub fn read_gbs(pool: &ThreadPool, buf: &[u8], min_time: f64) -> f64 {
    let part = buf.len().div_ceil(pool.current_num_threads()).max(1);
    let t = run_times(min_time, || {
        let s: u64 = pool.install(|| buf.par_chunks(part).map(read_checksum).sum());
        black_box(s);
    });
    buf.len() as f64 / t[0] / 1e9
}

/// Peak of `f` (G-ops/s) on each thread of `pool` at once: the sum over
/// threads of each one's best run, the runs (a few ms each) spread over
/// 0.4 s, so that a short stall of a shared machine's core does not stand
/// for its peak.
pub fn peak_on(pool: &ThreadPool, f: impl Fn() -> Option<f64> + Sync) -> Option<f64> {
    pool.broadcast(|_| {
        let start = Instant::now();
        let mut best = f()?;
        while start.elapsed() < Duration::from_millis(400) {
            std::thread::sleep(Duration::from_millis(20));
            best = best.max(f()?);
        }
        Some(best)
    })
    .into_iter()
    .sum()
}

/// Compute peaks of one ISA on a pool's threads (`None` where the ISA has
/// no such instruction or cannot run here).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Peaks {
    /// int8 dot products, G multiply-adds x 2 per second.
    pub int8_gops: Option<f64>,
    /// f32 FMAs at the ISA's vector width, GFLOP/s.
    pub fma_gflops: Option<f64>,
}

impl Peaks {
    /// Measures both peaks of `isa` on every thread of `pool`.
    pub fn measure(isa: Isa, pool: &ThreadPool) -> Peaks {
        const ITERS: u64 = 2_000_000;
        Peaks {
            int8_gops: peak_on(pool, || int8_peak_gops(isa, ITERS)),
            fma_gflops: peak_on(pool, || f32_fma_peak_gflops(isa, ITERS)),
        }
    }

    /// The peak that bounds `quant_type`'s large batches, and its name.
    pub fn for_format(&self, quant_type: QuantType) -> (&'static str, Option<f64>) {
        if quant_type.is_block_quantized() {
            ("int8", self.int8_gops)
        } else {
            ("fma", self.fma_gflops)
        }
    }
}

/// The roofline bound of a case and how close a measured time came to it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bound {
    /// `"mem"` (read bandwidth), `"int8"` or `"fma"` (compute peak), or
    /// `"-"` when no peak is known and memory is the only bound.
    pub name: &'static str,
    /// Fastest possible time, seconds.
    pub secs: f64,
}

impl Bound {
    /// The bound of reading `bytes` and doing `ops` operations of
    /// `quant_type`'s kind at bandwidth `read_gbs` and the ISA's `peaks`.
    pub fn of(bytes: f64, ops: f64, quant_type: QuantType, read_gbs: f64, peaks: Peaks) -> Bound {
        let t_mem = bytes / (read_gbs * 1e9);
        match peaks.for_format(quant_type) {
            (name, Some(p)) if ops / (p * 1e9) > t_mem => Bound {
                name,
                secs: ops / (p * 1e9),
            },
            _ => Bound {
                name: "mem",
                secs: t_mem,
            },
        }
    }

    /// Percent of the bound reached by a run of `secs` seconds.
    pub fn percent(&self, secs: f64) -> f64 {
        100.0 * self.secs / secs
    }
}
