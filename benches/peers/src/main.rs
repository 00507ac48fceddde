//! blockq next to its peers on the same layers, one thread each:
//! candle-core's `QMatMul` (GGUF `QTensor`s of the same format) and axonml-quant's
//! `QuantizedLinear::forward_f32`, both as published with default features.
//!
//! `cargo run --release -p blockq-peers [-- --threads N --all-shapes --min-time S]`
//!
//! Per case: each library's median time, blockq's speed-up over each peer
//! (peer time / blockq time) and each output's relative error (L2 norm of the
//! error over L2 norm of the result) against an f64 evaluation of the f32
//! layer, on the first rows of the batch.
//!
//! Threads: `RAYON_NUM_THREADS` (read by blockq's and axonml's rayon pools and
//! by candle's matmul) and `CANDLE_NUM_THREADS` (candle's quantized-matmul
//! pool) are set to `--threads` (default 1) before any pool starts. The `cpu`
//! column (process CPU time over wall time while the library ran) shows the
//! threads actually busy.

#[path = "../../../examples/common/mod.rs"]
mod common;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{Device, Module, Tensor};
use common::values;
use std::time::Instant;

const USAGE: &str = "\
usage: blockq-peers [--threads N] [--formats LIST] [--all-shapes] [--min-time SECS]
                    [--axonml-max-secs SECS]
  --threads N            threads for every library (default 1)
  --formats LIST         q4_0,q4_1,q5_0,q5_1,q8_0,f16 (default; q4_k, q5_k, q6_k, bf16, f32 too)
  --all-shapes           add 4096x14336 to 4096x4096 and 14336x4096 (NxK)
  --min-time SECS        time per library and case, at least 3 runs (default 0.5)
  --axonml-max-secs S    skip axonml where one call would exceed S (default 2)";

struct Opts {
    formats: Vec<blockq::QuantType>,
    threads: usize,
    shapes: Vec<(usize, usize)>,
    min_time: f64,
    axonml_max: f64,
}

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        formats: FORMATS.to_vec(),
        threads: 1,
        shapes: vec![(4096, 4096), (14336, 4096)],
        min_time: 0.5,
        axonml_max: 2.0,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<f64, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse::<f64>().map_err(|e| format!("{name} {v:?}: {e}"))
        };
        match a.as_str() {
            "--threads" => o.threads = num("--threads")? as usize,
            "--formats" => {
                let v = args.next().ok_or("--formats needs a value")?;
                o.formats = v
                    .split(',')
                    .map(|s| s.parse().map_err(|e| format!("{e}")))
                    .collect::<Result<_, String>>()?;
            }
            "--all-shapes" => o.shapes.push((4096, 14336)),
            "--min-time" => o.min_time = num("--min-time")?,
            "--axonml-max-secs" => o.axonml_max = num("--axonml-max-secs")?,
            "-h" | "--help" => return Err(String::new()),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    if o.threads == 0 {
        return Err("--threads must be > 0".into());
    }
    Ok(o)
}

/// User + system CPU seconds of this process (Linux), for the `cpu` column.
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which is in parentheses): utime is 14th,
    // stime 15th of the whole line, i.e. the 12th and 13th after ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    // Clock ticks are 100 per second on Linux for every common configuration.
    f.iter().sum::<f64>() / 100.0
}

struct Timing {
    median: f64,
    cpu_ratio: f64,
    out: Vec<f32>,
}

/// One warm-up call (also the output checked for error), then runs until
/// `min_time` passes, at least `min_runs`, at most 50.
fn time(min_time: f64, min_runs: usize, mut f: impl FnMut() -> Vec<f32>) -> Timing {
    let out = f();
    let (wall0, cpu0) = (Instant::now(), cpu_secs());
    let mut t = Vec::new();
    while t.len() < min_runs || (t.len() < 50 && wall0.elapsed().as_secs_f64() < min_time) {
        let s = Instant::now();
        std::hint::black_box(f());
        t.push(s.elapsed().as_secs_f64());
    }
    let cpu_ratio = (cpu_secs() - cpu0) / wall0.elapsed().as_secs_f64();
    t.sort_by(f64::total_cmp);
    Timing {
        median: t[t.len() / 2],
        cpu_ratio,
        out,
    }
}

/// Relative L2 error of `y` against the f64 reference rows `want`.
fn rel_err(y: &[f32], want: &[f64]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&a, &b) in y.iter().zip(want) {
        num += (a as f64 - b).powi(2);
        den += b * b;
    }
    (num / den).sqrt()
}

/// The formats compared: blockq's, with each peer's equivalent.
const FORMATS: [blockq::QuantType; 6] = [
    blockq::QuantType::Q4_0,
    blockq::QuantType::Q4_1,
    blockq::QuantType::Q5_0,
    blockq::QuantType::Q5_1,
    blockq::QuantType::Q8_0,
    blockq::QuantType::F16,
];

fn candle_dtype(q: blockq::QuantType) -> GgmlDType {
    use blockq::QuantType as Q;
    match q {
        Q::Q4_0 => GgmlDType::Q4_0,
        Q::Q4_1 => GgmlDType::Q4_1,
        Q::Q5_0 => GgmlDType::Q5_0,
        Q::Q5_1 => GgmlDType::Q5_1,
        Q::Q8_0 => GgmlDType::Q8_0,
        Q::Q4_K => GgmlDType::Q4K,
        Q::Q5_K => GgmlDType::Q5K,
        Q::Q6_K => GgmlDType::Q6K,
        Q::F16 => GgmlDType::F16,
        Q::BF16 => GgmlDType::BF16,
        Q::F32 => GgmlDType::F32,
    }
}

fn axonml_type(q: blockq::QuantType) -> Option<axonml_quant::QuantType> {
    use blockq::QuantType as Q;
    Some(match q {
        Q::Q4_0 => axonml_quant::QuantType::Q4_0,
        Q::Q4_1 => axonml_quant::QuantType::Q4_1,
        Q::Q5_0 => axonml_quant::QuantType::Q5_0,
        Q::Q5_1 => axonml_quant::QuantType::Q5_1,
        Q::Q8_0 => axonml_quant::QuantType::Q8_0,
        Q::F16 => axonml_quant::QuantType::F16,
        Q::F32 => axonml_quant::QuantType::F32,
        // axonml-quant has neither BF16 nor the k-quants.
        Q::BF16 | Q::Q4_K | Q::Q5_K | Q::Q6_K => return None,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
    // Before any thread pool exists (all three read these on first use).
    let threads = o.threads.to_string();
    std::env::set_var("RAYON_NUM_THREADS", &threads);
    std::env::set_var("CANDLE_NUM_THREADS", &threads);

    let isa = blockq::dispatch::default_isa()?;
    println!("blockq ({isa}) vs candle-core 0.11 QMatMul vs axonml-quant 0.6 QuantizedLinear");
    println!(
        "threads: {} (RAYON_NUM_THREADS = CANDLE_NUM_THREADS = {threads}); times are medians",
        o.threads
    );
    println!("x = blockq speed-up (peer time / blockq time); err = relative L2 error vs f64");
    println!("candle F16: QMatMul::from_qtensor turns F16 weights into f32 at load (f32 matmul)\n");
    println!(
        "{:<11} {:>4} {:<5} {:>9} {:>9} {:>9} {:>7} {:>7} {:>9} {:>9} {:>9} {:>11}",
        "NxK",
        "M",
        "fmt",
        "blockq ms",
        "candle ms",
        "axonml ms",
        "x cand",
        "x axon",
        "err blkq",
        "err cand",
        "err axon",
        "cpu b/c/a"
    );
    let dev = Device::Cpu;
    let mut skipped = Vec::new();
    for (n, k) in o.shapes.iter().copied() {
        let w = values(n as u64 * 31 + k as u64, n * k, 0.05);
        for fmt in o.formats.iter().copied() {
            let ours = blockq::QuantizedLinear::from_linear_params(&w, None, k, n, fmt);
            let wt = Tensor::from_slice(&w, (n, k), &dev)?;
            let theirs = QMatMul::from_qtensor(QTensor::quantize(&wt, candle_dtype(fmt))?)?;
            drop(wt);
            let axon = axonml_type(fmt)
                .map(|t| axonml_quant::QuantizedLinear::from_linear_params(&w, None, k, n, t));
            let mut axon_one = f64::NAN; // axonml's batch-1 time, to predict larger batches
            for m in [1usize, 8, 32, 128] {
                let x = values(1000 + m as u64, m * k, 1.0);
                // f64 reference of the first rows (all rows would take long).
                let rows = m.min(4);
                let want: Vec<f64> = (0..rows * n)
                    .map(|i| {
                        let (r, c) = (i / n, i % n);
                        let (xr, wr) = (&x[r * k..(r + 1) * k], &w[c * k..(c + 1) * k]);
                        xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum()
                    })
                    .collect();
                let b = time(o.min_time, 3, || ours.forward_f32(&x, m));
                let xt = Tensor::from_slice(&x, (m, k), &dev)?;
                let c = time(o.min_time, 3, || {
                    let y = theirs.forward(&xt).expect("candle forward");
                    y.flatten_all()
                        .and_then(|y| y.to_vec1())
                        .expect("candle output")
                });
                let predicted = axon_one * m as f64;
                let a = if axon.is_none() {
                    None
                } else if m == 1 || predicted <= o.axonml_max {
                    let axon = axon.as_ref().expect("checked");
                    let t = time(o.min_time.min(1.0), 1, || axon.forward_f32(&x, m));
                    if m == 1 {
                        axon_one = t.median;
                    }
                    Some(t)
                } else {
                    skipped.push(format!("{n}x{k} M={m} {} (~{predicted:.0} s/call)", fmt));
                    None
                };
                let err = |t: &Timing| rel_err(&t.out[..rows * n], &want);
                let cpu =
                    |t: Option<&Timing>| t.map_or("-".into(), |t| format!("{:.1}", t.cpu_ratio));
                println!(
                    "{:<11} {:>4} {:<5} {:>9.3} {:>9.3} {:>9} {:>7.2} {:>7} {:>9.2e} {:>9.2e} {:>9} {:>11}",
                    format!("{n}x{k}"),
                    m,
                    fmt,
                    b.median * 1e3,
                    c.median * 1e3,
                    a.as_ref().map_or("skipped".into(), |a| format!("{:.1}", a.median * 1e3)),
                    c.median / b.median,
                    a.as_ref().map_or("-".into(), |a| format!("{:.1}", a.median / b.median)),
                    err(&b),
                    err(&c),
                    a.as_ref().map_or("-".into(), |a| format!("{:.2e}", err(a))),
                    format!("{}/{}/{}", cpu(Some(&b)), cpu(Some(&c)), cpu(a.as_ref())),
                );
            }
        }
    }
    if !skipped.is_empty() {
        println!(
            "\naxonml skipped (one call predicted above --axonml-max-secs {}):",
            o.axonml_max
        );
        for s in skipped {
            println!("  {s}");
        }
    }
    Ok(())
}
