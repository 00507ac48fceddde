//! Performance report: kernel speed next to this machine's limits, measured in
//! the same run, and the project's performance targets (met / not met).
//!
//! ```text
//! cargo run --release --example bench_report              # every ISA, a few minutes
//! cargo run --release --example bench_report -- --quick   # best ISA, < 1 minute
//! cargo run --release --example bench_report -- --help
//! ```
//!
//! Limits: memory read bandwidth (a vectorized sum over a buffer as large as
//! the weights, 1 thread and all threads) bounds batch 1; the int8 dot peak of
//! each ISA's instruction (block formats) and the f32 FMA peak at its vector
//! width (float formats) bound large batches. "%lim" is the roofline bound
//! `max(bytes / bandwidth, ops / peak)` divided by the measured time. A format
//! an ISA has no kernel of its own for runs the scalar kernel (same bits):
//! such rows say "fallback" in the "kern" column.

mod common;

use blockq::bench::{alternated, alternated_ratios, read_gbs, run_times, Bound, Peaks};
use blockq::{dispatch, Isa, QuantType, QuantizedLinear};
use common::values;
use rayon::prelude::*;
use rayon::ThreadPool;
use std::collections::HashMap;
use std::hint::black_box;
use std::time::Instant;

const USAGE: &str = "\
usage: bench_report [--quick] [--isa LIST] [--formats LIST] [--shapes LIST]
                    [--batches LIST] [--threads N] [--min-time SECS]
                    [--load-only | --no-load]
  --quick          best ISA only, shapes 4096x4096,14336x4096, batches 1,128
  --isa LIST       ISAs to run (comma-separated names, `best` or `all`; default all)
  --formats LIST   format names, or `all` (default: every format but F32)
  --shapes LIST    NxK list, N = outputs, K = inputs
                   (default 4096x4096,14336x4096,4096x14336)
  --batches LIST   batch sizes M (default 1,8,32,128)
  --threads N      threads of the scaling table (default: all cores; 1 = none)
  --min-time SECS  time spent per case, at least 3 runs (default 0.5; quick 0.25)
  --load-only      only the load section (quantizing, dequantizing, converting
                   4096x4096 weights; see `load_section`)
  --no-load        without the load section
The scalar kernel (the scalar ISA, or the fallback of an ISA without a kernel
for a format) runs batch 1 only (larger batches take seconds per call).";

struct Opts {
    isas: Vec<Isa>,
    formats: Vec<QuantType>,
    shapes: Vec<(usize, usize)>,
    batches: Vec<usize>,
    threads: usize,
    min_time: f64,
    kernels: bool,
    load: bool,
}

fn list<T>(v: &str, f: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>, String> {
    v.split(',').filter(|s| !s.is_empty()).map(f).collect()
}

fn parse_args() -> Result<Opts, String> {
    let avail = dispatch::available();
    let best = *avail.last().unwrap_or(&Isa::Scalar);
    let all_cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut o = Opts {
        isas: avail.clone(),
        formats: QuantType::ALL
            .into_iter()
            .filter(|&q| q != QuantType::F32)
            .collect(),
        shapes: vec![(4096, 4096), (14336, 4096), (4096, 14336)],
        batches: vec![1, 8, 32, 128],
        threads: all_cores,
        min_time: 0.5,
        kernels: true,
        load: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--quick" => {
                o.isas = vec![best];
                o.shapes = vec![(4096, 4096), (14336, 4096)];
                o.batches = vec![1, 128];
                o.min_time = 0.25;
            }
            "--isa" => {
                o.isas = list(&val()?, |s| match s {
                    "best" => Ok(best),
                    "all" => Err("all".into()),
                    _ => dispatch::parse_isa(s).map_err(|e| e.to_string()),
                })
                .or_else(|e| {
                    if e == "all" {
                        Ok(avail.clone())
                    } else {
                        Err(e)
                    }
                })?;
            }
            "--formats" => {
                o.formats = match val()?.as_str() {
                    "all" => QuantType::ALL.to_vec(),
                    v => list(v, |s| s.parse().map_err(|e| format!("{e}")))?,
                }
            }
            "--shapes" => {
                o.shapes = list(&val()?, |s| {
                    let (n, k) = s.split_once('x').ok_or(format!("shape {s:?}: want NxK"))?;
                    let p = |v: &str| v.parse::<usize>().map_err(|e| format!("shape {s:?}: {e}"));
                    Ok((p(n)?, p(k)?))
                })?
            }
            "--batches" => {
                o.batches = list(&val()?, |s| {
                    s.parse().map_err(|e| format!("batch {s:?}: {e}"))
                })?
            }
            "--threads" => o.threads = val()?.parse().map_err(|e| format!("--threads: {e}"))?,
            "--min-time" => o.min_time = val()?.parse().map_err(|e| format!("--min-time: {e}"))?,
            "--load-only" => o.kernels = false,
            "--no-load" => o.load = false,
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    if o.isas.is_empty() || o.formats.is_empty() || o.shapes.is_empty() || o.batches.is_empty() {
        return Err("empty list".into());
    }
    if o.threads == 0 || o.batches.contains(&0) || o.shapes.iter().any(|&(n, k)| n * k == 0) {
        return Err("zero threads, batch or shape".into());
    }
    Ok(o)
}

/// A pool of `threads` workers, worker `i` pinned to CPU `i`
/// ([`blockq::kernels::peak::pin_thread`]: the report's pools take turns
/// on the same CPUs).
fn pool(threads: usize) -> ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|i| {
            blockq::kernels::peak::pin_thread(i);
        })
        .build()
        .expect("thread pool")
}

struct Case {
    isa: Isa,
    qt: QuantType,
    shape: (usize, usize),
    m: usize,
    threads: usize,
    secs: f64,
    best: f64,
    bytes: usize,
}

impl Case {
    fn gops(&self) -> f64 {
        2.0 * (self.m * self.shape.0 * self.shape.1) as f64 / self.secs / 1e9
    }
    fn gbs(&self) -> f64 {
        self.bytes as f64 / self.secs / 1e9
    }
    fn peak(&self, p: Peaks) -> Option<f64> {
        p.for_format(self.qt).1
    }
    /// (roofline bound name, % of it reached).
    fn limit(&self, bw: f64, p: Peaks) -> (&'static str, f64) {
        let ops = 2.0 * (self.m * self.shape.0 * self.shape.1) as f64;
        let b = Bound::of(self.bytes as f64, ops, self.qt, bw, p);
        (b.name, b.percent(self.secs))
    }
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.1}"))
}

/// The load average, so that a reader sees when other work shared the cores.
fn load() -> String {
    match std::fs::read_to_string("/proc/loadavg") {
        Ok(s) => format!(
            "load average {} (other work on the cores makes numbers noisy)",
            s.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
        ),
        Err(_) => "load average unknown".into(),
    }
}

/// Cores kept busy by other processes, from `/proc/stat` over 300 ms while
/// this process sleeps (Linux only).
fn busy_cores() -> Option<f64> {
    let sample = || -> Option<(f64, f64)> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let v: Vec<f64> = stat
            .lines()
            .next()?
            .split_whitespace()
            .skip(1)
            .filter_map(|x| x.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let idle = v.get(3)? + v.get(4).unwrap_or(&0.0);
        Some((v.iter().sum(), idle))
    };
    let (t0, i0) = sample()?;
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (t1, i1) = sample()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (t1 > t0).then(|| cores * (1.0 - (i1 - i0) / (t1 - t0)))
}

fn main() {
    if cfg!(target_arch = "aarch64") {
        eprintln!(
            "note: on aarch64 under qemu-user (as in CI) timings are emulated and are not \
             performance figures; run on real hardware"
        );
    }
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            std::process::exit(if e.is_empty() { 0 } else { 2 });
        }
    };
    let started = Instant::now();
    let tt = o.threads;
    let p1 = pool(1);
    let pt = pool(tt);
    let names = |v: &[Isa]| v.iter().map(|i| i.name()).collect::<Vec<_>>().join(", ");
    println!("blockq bench report: {}", dispatch::cpu_model());
    println!("build: {}", blockq::build_info());
    println!(
        "ISAs available: {}; running: {}",
        names(&dispatch::available()),
        names(&o.isas)
    );
    println!("threads: 1 (main table), {tt} (scaling table); {}", load());
    if let Some(busy) = busy_cores().filter(|&b| b >= 0.3) {
        println!(
            "WARNING: other processes keep ~{busy:.1} cores busy: times, limits and above all \
             the scaling table are disturbed"
        );
    }
    println!(
        "times: median (and best) of runs; limits: best run; GB/s, GOPS, %lim from the median\n"
    );
    if !o.kernels {
        load_section(&o, &p1, &pt);
        println!(
            "\nreport time: {:.1} s; {}",
            started.elapsed().as_secs_f64(),
            load()
        );
        return;
    }

    // Compute peaks, per ISA, 1 thread and `tt` threads.
    println!(
        "{:<11} {:>13} {:>13} {:>15} {:>15}",
        "peak",
        "int8 GOPS 1t",
        "fma GFLOP 1t",
        format!("int8 GOPS {tt}t"),
        format!("fma GFLOP {tt}t")
    );
    let mut peaks: HashMap<Isa, [Peaks; 2]> = HashMap::new();
    for &isa in &o.isas {
        let one = Peaks::measure(isa, &p1);
        let all = Peaks::measure(isa, &pt);
        println!(
            "{:<11} {:>13} {:>13} {:>15} {:>15}",
            isa.name(),
            fmt_opt(one.int8_gops),
            fmt_opt(one.fma_gflops),
            fmt_opt(all.int8_gops),
            fmt_opt(all.fma_gflops)
        );
        peaks.insert(isa, [one, all]);
    }

    println!(
        "\n{:<11} {:<5} {:<8} {:>11} {:>4} {:>3} {:>10} {:>9} {:>8} {:>8} {:>8} {:>5} {:>6}",
        "isa",
        "fmt",
        "kern",
        "NxK",
        "M",
        "thr",
        "median ms",
        "best ms",
        "GB/s",
        "GOPS",
        "mem GB/s",
        "bound",
        "%lim"
    );
    let mut cases: Vec<Case> = Vec::new();
    let mut bws: HashMap<(QuantType, (usize, usize)), [f64; 2]> = HashMap::new();
    let mut scalar_skipped = false;
    for &(n, k) in &o.shapes {
        let w = values(n as u64 * 31 + k as u64, n * k, 0.05);
        let bias = values(7, n, 0.5);
        for &qt in &o.formats {
            let mut layer = QuantizedLinear::from_linear_params(&w, Some(&bias), k, n, qt);
            let bytes = layer.weight_bytes();
            let buf = vec![1u8; layer.packed().storage_bytes()];
            let bw = [
                read_gbs(&p1, &buf, o.min_time),
                read_gbs(&pt, &buf, o.min_time),
            ];
            drop(buf);
            bws.insert((qt, (n, k)), bw);
            for &isa in &o.isas {
                layer.set_isa(isa).expect("ISA was checked");
                for &m in &o.batches {
                    // The scalar kernel (its own ISA, or the fallback of an
                    // ISA without a kernel for this format): batch 1 only.
                    let scalar = isa == Isa::Scalar
                        || !dispatch::kernels(isa)
                            .expect("ISA was checked")
                            .has_kernel(qt);
                    if scalar && m > 1 {
                        scalar_skipped = true;
                        continue;
                    }
                    let x = values(m as u64, m * k, 1.0);
                    let mut y = vec![0.0f32; m * n];
                    // The scaling table: compute-bound batches, the two shapes
                    // with K = 4096.
                    let mut threads = vec![1];
                    if m >= 32 && isa != Isa::Scalar && tt > 1 && k == 4096 {
                        threads.push(tt);
                    }
                    for t in threads {
                        let p = if t == 1 { &p1 } else { &pt };
                        let runs = p.install(|| {
                            run_times(o.min_time, || {
                                layer.forward_into(&x, m, &mut y).expect("shapes match")
                            })
                        });
                        let (secs, best) = (runs[runs.len() / 2], runs[0]);
                        let c = Case {
                            isa,
                            qt,
                            shape: (n, k),
                            m,
                            threads: t,
                            secs,
                            best,
                            bytes,
                        };
                        let pk = peaks[&isa][usize::from(t > 1)];
                        let (bound, pct) = c.limit(bw[usize::from(t > 1)], pk);
                        println!(
                            "{:<11} {:<5} {:<8} {:>11} {:>4} {:>3} {:>10.3} {:>9.3} {:>8.1} {:>8.1} {:>8.1} {:>5} {:>5.0}%",
                            isa.name(),
                            qt.name(),
                            if dispatch::kernels(isa).expect("ISA was checked").has_kernel(qt) {
                                "own"
                            } else {
                                "fallback"
                            },
                            format!("{n}x{k}"),
                            m,
                            t,
                            secs * 1e3,
                            c.best * 1e3,
                            c.gbs(),
                            c.gops(),
                            bw[usize::from(t > 1)],
                            bound,
                            pct
                        );
                        cases.push(c);
                    }
                }
            }
        }
    }
    if scalar_skipped {
        println!("(scalar kernel, own or fallback: batch > 1 skipped, it takes seconds per call)");
    }
    summary(&o, &p1, &cases, &bws, &peaks);
    if o.load {
        load_section(&o, &p1, &pt);
    }
    println!(
        "\nreport time: {:.1} s; {}",
        started.elapsed().as_secs_f64(),
        load()
    );
}

/// Prints each target with, per ISA that ran it, the number and met / NOT MET.
fn summary(
    o: &Opts,
    p1: &ThreadPool,
    cases: &[Case],
    bws: &HashMap<(QuantType, (usize, usize)), [f64; 2]>,
    peaks: &HashMap<Isa, [Peaks; 2]>,
) {
    let isas: Vec<Isa> = {
        let simd: Vec<Isa> = o
            .isas
            .iter()
            .copied()
            .filter(|&i| i != Isa::Scalar)
            .collect();
        if simd.is_empty() {
            o.isas.clone()
        } else {
            simd
        }
    };
    let find = |isa: Isa, qt: QuantType, shape: (usize, usize), m: usize, t: usize| {
        cases
            .iter()
            .find(|c| c.isa == isa && c.qt == qt && c.shape == shape && c.m == m && c.threads == t)
    };
    let (mut met, mut missed, mut absent) = (0, 0, 0);
    let mut line = |title: String, results: Vec<Option<(String, bool)>>| {
        let parts: Vec<String> = isas
            .iter()
            .zip(results)
            .map(|(isa, r)| match r {
                Some((v, ok)) => {
                    if ok {
                        met += 1;
                    } else {
                        missed += 1;
                    }
                    format!("{isa} {v} {}", if ok { "met" } else { "NOT MET" })
                }
                None => {
                    absent += 1;
                    format!("{isa} not measured")
                }
            })
            .collect();
        println!("- {title}: {}", parts.join("; "));
    };
    println!("\ntargets (1 thread unless said; per ISA):");
    let big = (14336, 4096);
    let small = (4096, 4096);
    for qt in o.formats.iter().copied().filter(|&q| q != QuantType::F32) {
        for shape in [big, small] {
            // The older formats' target is on the large shape only.
            let old = [QuantType::Q4_0, QuantType::Q8_0, QuantType::F16].contains(&qt);
            if old && shape == small {
                continue;
            }
            let bw = bws.get(&(qt, shape)).map(|b| b[0]);
            let title = format!(
                "M=1 {}x{} {qt} >= 90% of 1-thread read bandwidth ({} GB/s)",
                shape.0,
                shape.1,
                fmt_opt(bw)
            );
            let r = isas
                .iter()
                .map(|&isa| {
                    let c = find(isa, qt, shape, 1, 1)?;
                    let pct = 100.0 * c.gbs() / bw?;
                    Some((format!("{:.1} GB/s = {pct:.1}%", c.gbs()), pct >= 90.0))
                })
                .collect();
            line(title, r);
        }
    }
    // Batched: new formats against their same-run sibling, judged by calls
    // of the two layers in alternation (the cases above ran seconds apart).
    // The layers are made once per format, and only if a target needs them.
    let (n, k) = small;
    let inputs = std::cell::OnceCell::new();
    let layers = std::cell::RefCell::new(HashMap::<QuantType, QuantizedLinear>::new());
    let mut ys = [vec![0.0f32; 128 * n], vec![0.0f32; 128 * n]];
    let mut alternated = |isa: Isa, qt: QuantType, base: QuantType| {
        let (w, bias, x) = inputs.get_or_init(|| {
            (
                values(n as u64 * 31 + k as u64, n * k, 0.05),
                values(7, n, 0.5),
                values(128, 128 * k, 1.0),
            )
        });
        let mut layers = layers.borrow_mut();
        for q in [qt, base] {
            layers
                .entry(q)
                .or_insert_with(|| QuantizedLinear::from_linear_params(w, Some(bias), k, n, q))
                .set_isa(isa)
                .expect("ISA was checked");
        }
        let (l, b) = (&layers[&qt], &layers[&base]);
        let [yl, yb] = &mut ys;
        p1.install(|| {
            alternated_ratios(
                o.min_time,
                || b.forward_into(x, 128, yb).expect("shapes match"),
                || l.forward_into(x, 128, yl).expect("shapes match"),
            )
        })
    };
    for (qt, base, want) in [
        (QuantType::Q4_1, QuantType::Q4_0, 85.0),
        (QuantType::Q5_0, QuantType::Q4_0, 85.0),
        (QuantType::Q5_1, QuantType::Q4_0, 85.0),
        (QuantType::BF16, QuantType::F16, 90.0),
        (QuantType::Q4_K, QuantType::Q4_0, 90.0),
        (QuantType::Q6_K, QuantType::Q4_0, 80.0),
    ] {
        let r = isas
            .iter()
            .map(|&isa| {
                let c = find(isa, qt, small, 128, 1)?;
                let b = find(isa, base, small, 128, 1)?;
                let pct = 100.0 * c.gops() / b.gops();
                let r = alternated(isa, qt, base);
                let alt = 100.0 * r[r.len() / 2];
                Some((
                    format!(
                        "{:.0}/{:.0} GOPS = {pct:.1}%; alternated: {alt:.1}% ({:.1}-{:.1}, {} pairs)",
                        c.gops(),
                        b.gops(),
                        100.0 * r[0],
                        100.0 * r[r.len() - 1],
                        r.len()
                    ),
                    alt >= want,
                ))
            })
            .collect();
        line(
            format!("M=128 4096x4096 {qt} >= {want:.0}% of {base}'s GOPS (judged alternated)"),
            r,
        );
    }
    let r = isas
        .iter()
        .map(|&isa| {
            let c = find(isa, QuantType::Q4_0, small, 1, 1)?;
            Some((format!("{:.1} GB/s", c.gbs()), c.gbs() >= 40.0))
        })
        .collect();
    line("M=1 4096x4096 Q4_0 >= 40 GB/s of weights".into(), r);
    for (qt, want) in [
        (QuantType::Q8_0, 60.0),
        (QuantType::Q4_0, 50.0),
        (QuantType::F16, 90.0),
    ] {
        let what = if qt == QuantType::F16 {
            "f32 FMA"
        } else {
            "int8"
        };
        let r = isas
            .iter()
            .map(|&isa| {
                let c = find(isa, qt, small, 128, 1)?;
                let pk = c.peak(peaks[&isa][0])?;
                let pct = 100.0 * c.gops() / pk;
                Some((
                    format!("{:.0}/{pk:.0} GOPS = {pct:.1}%", c.gops()),
                    pct >= want,
                ))
            })
            .collect();
        line(
            format!("M=128 4096x4096 {qt} >= {want:.0}% of {what} peak"),
            r,
        );
    }
    let want = 0.85 * o.threads as f64;
    let mut scaled: Vec<(QuantType, (usize, usize), usize)> = Vec::new();
    for c in cases.iter().filter(|c| c.threads > 1) {
        if !scaled.contains(&(c.qt, c.shape, c.m)) {
            scaled.push((c.qt, c.shape, c.m));
        }
    }
    for (qt, shape, m) in scaled {
        let r = isas
            .iter()
            .map(|&isa| {
                let s = find(isa, qt, shape, m, 1)?.secs / find(isa, qt, shape, m, o.threads)?.secs;
                Some((format!("{s:.2}x"), s >= want))
            })
            .collect();
        let title = format!(
            "{} threads >= {want:.2}x 1 thread, {qt} M={m} {}x{}",
            o.threads, shape.0, shape.1
        );
        line(title, r);
    }
    println!("targets: {met} met, {missed} not met, {absent} not measured");
}

/// Run times of `f` on `p1` (sorted; consecutive calls), and, when
/// `threads > 1`, on `pt` with the ratios `time(p1) / time(pt)` of its
/// calls alternated with `p1`'s (a shared machine drifts between two
/// separate runs; a pair sees one state of it). The 1-thread times are not
/// taken from the pairs: on this project's VM a 2-thread call that faults
/// fresh memory slows the 1-thread call after it (F16 `from_gguf_bytes`
/// 7.1-7.6 GB/s in pairs, 8.6-9.4 in consecutive calls).
#[allow(clippy::type_complexity)]
fn timed_on(
    min_time: f64,
    p1: &ThreadPool,
    pt: &ThreadPool,
    threads: usize,
    f: &(dyn Fn() + Sync),
) -> (Vec<f64>, Option<(Vec<f64>, Vec<f64>)>) {
    let t1 = p1.install(|| run_times(min_time, f));
    if threads > 1 {
        let t = alternated(min_time, 5..50, || p1.install(f), || pt.install(f));
        (t1, Some((t.b, t.ratios)))
    } else {
        (t1, None)
    }
}

/// The load section: the paths that touch every weight once per load, on
/// 4096 x 4096 weights (64 MiB of f32), at 1 thread and `--threads`, each
/// with its target. GB/s count f32 values (4 bytes each) except
/// `from_gguf_bytes`, which counts the tensor's GGUF bytes. The dequantization
/// into a reused buffer excludes the page faults of a fresh one, which
/// `dequantize_weights()` (a new Vec per call) includes. "baseline" is the
/// same loop's baseline x86-64 clone, for what the ISA clones add. The
/// scaling is the median of pairs of calls alternated between the pools.
fn load_section(o: &Opts, p1: &ThreadPool, pt: &ThreadPool) {
    use blockq::kernels::load::{self as kload, Level};
    use half::{bf16, f16};
    let (n, k) = (4096, 4096);
    let w = values(11, n * k, 1.0);
    let f32_bytes = (n * k * 4) as f64;
    let tt = o.threads;
    let levels: Vec<String> = Level::ALL
        .iter()
        .map(|l| {
            let state = if !l.available() {
                "SKIPPED (not on this CPU)"
            } else if *l == Level::selected() {
                "dispatched"
            } else {
                "available"
            };
            format!("{l} {state}")
        })
        .collect();
    println!(
        "\nload paths, {n}x{k} ({:.0} MiB of f32); clones: {}",
        f32_bytes / (1 << 20) as f64,
        levels.join(", ")
    );
    println!(
        "{:<34} {:<5} {:>16} {:>16} {:>7}",
        "path",
        "fmt",
        "GB/s 1t (best)",
        format!("GB/s {tt}t (best)"),
        "scale"
    );
    // A process's first fresh buffers fault slower than later ones (on
    // this project's VM, 64 MiB took 8.5 ms falling to 4.5 over the first
    // 15): fault and free some first, so that the first rows do not pay.
    let warm = std::time::Instant::now();
    while warm.elapsed().as_secs_f64() < 0.3 {
        pt.install(|| {
            let mut v = blockq::kernels::mmap::zeroed_vec_huge::<u8>(n * k * 4);
            v.par_chunks_mut(4096).for_each(|c| c[0] = 1);
            black_box(&v);
        });
    }
    // (path, format, 1-thread median GB/s, scaling)
    let mut rows: Vec<(&str, QuantType, f64, f64)> = Vec::new();
    let mut measure = |path: &'static str, qt: QuantType, bytes: f64, f: &(dyn Fn() + Sync)| {
        let (t1, tn) = timed_on(o.min_time, p1, pt, tt, f);
        let gbs = |t: &[f64]| (bytes / t[t.len() / 2] / 1e9, bytes / t[0] / 1e9);
        let (m1, b1) = gbs(&t1);
        let (mn, bn, scale) = match &tn {
            Some((t, ratios)) => {
                let (m, b) = gbs(t);
                (
                    format!("{m:.2}"),
                    format!("{b:.2}"),
                    ratios[ratios.len() / 2],
                )
            }
            None => ("-".into(), "-".into(), 1.0),
        };
        println!(
            "{path:<34} {qt:<5} {:>16} {:>16} {:>6.2}x",
            format!("{m1:.2} ({b1:.2})"),
            format!("{mn} ({bn})"),
            scale
        );
        rows.push((path, qt, m1, scale));
    };
    for qt in o.formats.iter().copied() {
        measure("from_linear_params (f32 in)", qt, f32_bytes, &|| {
            black_box(QuantizedLinear::from_linear_params(&w, None, k, n, qt));
        });
        let layer = QuantizedLinear::from_linear_params(&w, None, k, n, qt);
        measure("dequantize_weights() (f32 out)", qt, f32_bytes, &|| {
            black_box(layer.dequantize_weights());
        });
        let out = std::sync::Mutex::new(vec![0.0f32; n * k]);
        measure("dequantize_weights_into (reused)", qt, f32_bytes, &|| {
            let mut out = out.lock().unwrap();
            layer.dequantize_weights_into(&mut out).unwrap();
            black_box(&out);
        });
        let bytes = layer.to_gguf_bytes();
        measure(
            "from_gguf_bytes (GGUF bytes in)",
            qt,
            bytes.len() as f64,
            &|| {
                black_box(QuantizedLinear::from_gguf_bytes(&bytes, None, k, n, qt).unwrap());
            },
        );
    }
    let h = std::sync::Mutex::new(vec![f16::ZERO; n * k]);
    let b = std::sync::Mutex::new(vec![bf16::ZERO; n * k]);
    let o32 = std::sync::Mutex::new(vec![0.0f32; n * k]);
    measure(
        "f32 -> f16 (floats_from_f32)",
        QuantType::F16,
        f32_bytes,
        &|| {
            kload::floats_from_f32(&w, &mut h.lock().unwrap());
        },
    );
    measure(
        "f16 -> f32 (floats_to_f32)",
        QuantType::F16,
        f32_bytes,
        &|| {
            kload::floats_to_f32(&h.lock().unwrap(), &mut o32.lock().unwrap());
        },
    );
    measure(
        "f32 -> bf16 (quantize_row_bf16)",
        QuantType::BF16,
        f32_bytes,
        &|| {
            blockq::quantize_row_bf16(&w, &mut b.lock().unwrap());
        },
    );
    measure(
        "bf16 -> f32 (dequantize_row_bf16)",
        QuantType::BF16,
        f32_bytes,
        &|| {
            blockq::dequantize_row_bf16(&b.lock().unwrap(), &mut o32.lock().unwrap());
        },
    );
    // The bound of every path that returns a fresh buffer: first touch of
    // new pages (one write per 4 KiB page of a 64 MiB allocation, 2 MiB
    // pieces over the pool), on one thread and on the scaling table's
    // threads: the kernel clears the pages, and how that scales bounds the
    // scaling of those paths.
    // Beside them, the same bytes written to a buffer whose pages are
    // already there: what the memory itself does on more threads. Last, the
    // least any path that returns fresh memory does: a plain copy
    // (`copy_from_slice`, in 1 MiB pieces over the pool) of an F16
    // matrix's bytes into a buffer made as packed matrices are (`PageBuf`),
    // which the float formats' `from_gguf_bytes` is, reordered.
    let reused = std::sync::Mutex::new(vec![0u8; n * k * 4]);
    let src = vec![1u8; n * k * 2];
    let mut fresh_copy = (0.0, 0.0);
    #[derive(Clone, Copy, PartialEq)]
    enum Row {
        /// One write per 4 KiB page of a fresh buffer.
        Fresh,
        /// The same, the buffer advised to huge pages.
        FreshHuge,
        /// Every byte of a buffer whose pages are there.
        Reused,
        /// `copy_from_slice` into a fresh `PageBuf`.
        Copy,
    }
    for (label, row) in [
        ("first touch of a fresh buffer", Row::Fresh),
        ("  the same, huge pages advised", Row::FreshHuge),
        ("  writes to a reused buffer", Row::Reused),
        ("copy into a fresh buffer (F16)", Row::Copy),
    ] {
        let bytes = if row == Row::Copy {
            src.len()
        } else {
            n * k * 4
        } as f64;
        let touch = || match row {
            Row::Copy => {
                let mut v = blockq::kernels::mmap::PageBuf::<[u8; 64]>::zeroed(src.len() / 64);
                let d: &mut [u8] = bytemuck::cast_slice_mut(&mut v[..]);
                d.par_chunks_mut(1 << 20)
                    .zip(src.par_chunks(1 << 20))
                    .for_each(|(d, s)| d.copy_from_slice(s));
                black_box(&v);
            }
            Row::Reused => {
                let mut v = reused.lock().unwrap();
                v.par_chunks_mut(2 << 20).for_each(|c| c.fill(1));
                black_box(&*v);
            }
            Row::Fresh | Row::FreshHuge => {
                let mut v: Vec<u8> = if row == Row::FreshHuge {
                    blockq::kernels::mmap::zeroed_vec_huge(n * k * 4)
                } else {
                    vec![0u8; n * k * 4]
                };
                v.par_chunks_mut(2 << 20).for_each(|c| {
                    for p in c.iter_mut().step_by(4096) {
                        *p = 1;
                    }
                });
                black_box(&v);
            }
        };
        let (t1, tn) = timed_on(o.min_time, p1, pt, tt, &touch);
        let gbs = |t: &[f64]| (bytes / t[t.len() / 2] / 1e9, bytes / t[0] / 1e9);
        let (m1, b1) = gbs(&t1);
        let (tn, scale, r) = match tn {
            Some((t, ratios)) => {
                let (m, b) = gbs(&t);
                let r = ratios[ratios.len() / 2];
                (format!("{m:.2} ({b:.2})"), format!("{r:>6.2}x"), r)
            }
            None => ("- (-)".into(), String::new(), 1.0),
        };
        if row == Row::Copy {
            fresh_copy = (m1, r);
        }
        println!(
            "{label:<34} {:<5} {:>16} {tn:>16} {scale}",
            "-",
            format!("{m1:.2} ({b1:.2})")
        );
    }
    // The row quantizers alone (no scan, no packing), dispatched.
    for qt in o.formats.iter().copied().filter(|q| q.is_block_quantized()) {
        let mut q = vec![0u8; qt.row_bytes(n * k)];
        let t = p1.install(|| {
            run_times(o.min_time, || {
                blockq::kernels::match_format!(
                    qt,
                    B => kload::quantize_blocks::<B>(&w, bytemuck::cast_slice_mut(&mut q[..])),
                    E => unreachable!("{qt} is a float format"),
                );
            })
        });
        println!(
            "{:<34} {qt:<5} {:>16}",
            "quantize_blocks, dispatched",
            format!(
                "{:.2} ({:.2})",
                f32_bytes / t[t.len() / 2] / 1e9,
                f32_bytes / t[0] / 1e9
            )
        );
    }
    // What the ISA clones add: the row quantizer on the baseline clone.
    for qt in o.formats.iter().copied().filter(|q| q.is_block_quantized()) {
        let mut q = vec![0u8; qt.row_bytes(n * k)];
        let t = p1.install(|| {
            run_times(o.min_time, || {
                blockq::kernels::match_format!(
                    qt,
                    B => kload::quantize_blocks_on::<B>(
                        Level::Baseline,
                        &w,
                        bytemuck::cast_slice_mut(&mut q[..]),
                    )
                    .unwrap(),
                    E => unreachable!("{qt} is a float format"),
                );
            })
        });
        println!(
            "{:<34} {qt:<5} {:>16}",
            "quantize_blocks, baseline clone",
            format!(
                "{:.2} ({:.2})",
                f32_bytes / t[t.len() / 2] / 1e9,
                f32_bytes / t[0] / 1e9
            )
        );
    }

    println!(
        "\nload targets (1-thread medians; scaling = median of the 1-thread / {tt}-thread time of alternated pairs):"
    );
    let (mut met, mut missed) = (0, 0);
    let mut check = |title: String, ok: bool| {
        if ok {
            met += 1;
        } else {
            missed += 1;
        }
        println!("- {title} {}", if ok { "met" } else { "NOT MET" });
    };
    for &(path, qt, gbs, scale) in &rows {
        let want = match path {
            "from_linear_params (f32 in)" => match qt {
                QuantType::Q8_0 | QuantType::Q4_0 => Some(4.0),
                QuantType::Q4_1
                | QuantType::Q5_0
                | QuantType::Q5_1
                | QuantType::Q4_K
                | QuantType::Q5_K
                | QuantType::Q6_K => Some(2.0),
                _ => None,
            },
            "dequantize_weights_into (reused)" => Some(6.0),
            "from_gguf_bytes (GGUF bytes in)" if !qt.is_block_quantized() => Some(8.0),
            p if p.contains(" -> ") => Some(8.0),
            _ => None,
        };
        // The float formats' `from_gguf_bytes` against the plain copy into
        // fresh memory of the same run.
        let beside = |x: f64, unit: &str| {
            if path.starts_with("from_gguf_bytes") && !qt.is_block_quantized() {
                format!(" (copy into a fresh buffer: {x:.2}{unit})")
            } else {
                String::new()
            }
        };
        if let Some(want) = want {
            let note = beside(fresh_copy.0, " GB/s");
            check(
                format!("{path} {qt}: {gbs:.2} >= {want} GB/s{note}"),
                gbs >= want,
            );
        }
        if tt > 1 && path != "dequantize_weights() (f32 out)" {
            let note = beside(fresh_copy.1, "x");
            check(
                format!("{path} {qt}: {tt} threads {scale:.2}x >= 1.7x{note}"),
                scale >= 1.7,
            );
        }
    }
    println!("load targets: {met} met, {missed} not met");
}
