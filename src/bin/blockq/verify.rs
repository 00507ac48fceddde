//! `blockq verify FILE`: the determinism contract, checked on the user's own
//! weights and CPU.
//!
//! Every loadable weight is forwarded on the same deterministic batch by
//! every ISA this CPU runs, on one thread and on all, as one batch, row by
//! row and in uneven parts; every output must have the bits of the scalar
//! kernel's one-thread whole-batch output. The error of that output against
//! a float64 product of the same input with the stored weights (what int8
//! activations, or f32 accumulation for float formats, cost) is reported
//! next to it.

use super::{file_error, CliError};
use blockq::{dispatch, Isa, QuantType, QuantizedLinear};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::ThreadPool;
use std::path::Path;
use std::time::Instant;

/// One way of running a batch: ISA, thread pool, how the rows are split.
struct Config<'a> {
    isa: Isa,
    pool: &'a ThreadPool,
    split: &'static str,
}

/// The batch as parts of rows: whole, one row at a time, or uneven.
fn parts(split: &str, m: usize) -> Vec<usize> {
    match split {
        "whole" => vec![m],
        "rows" => vec![1; m],
        _ => {
            // 1, 2, 3, ... rows, the last part what is left.
            let mut v = Vec::new();
            let (mut left, mut p) = (m, 1);
            while left > 0 {
                let n = p.min(left);
                v.push(n);
                left -= n;
                p += 1;
            }
            v
        }
    }
}

/// Deterministic input rows: a fixed xorshift stream, values in [-1, 1)
/// with a few larger ones (as activations have).
fn input(m: usize, k: usize) -> Vec<f32> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..m * k)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            if i % 61 == 0 {
                u * 8.0
            } else {
                u
            }
        })
        .collect()
}

fn forward(layer: &QuantizedLinear, x: &[f32], m: usize, split: &str) -> Vec<f32> {
    let (k, n) = (layer.in_features, layer.out_features);
    let mut y = vec![0.0f32; m * n];
    let mut row = 0;
    for p in parts(split, m) {
        layer
            .forward_into(
                &x[row * k..(row + p) * k],
                p,
                &mut y[row * n..(row + p) * n],
            )
            .expect("shapes match");
        row += p;
    }
    y
}

/// Relative L2 error of `y` against the float64 product of `x` and the
/// layer's stored weights.
fn error_vs_f64(layer: &QuantizedLinear, x: &[f32], m: usize, y: &[f32]) -> f64 {
    let (k, n) = (layer.in_features, layer.out_features);
    super::rel_error_f64(&layer.dequantize_weights(), x, y, (m, k, n))
}

pub(crate) fn run(
    path: &Path,
    batch: usize,
    filter: Option<&str>,
    quant_type: Option<QuantType>,
) -> Result<(), CliError> {
    let t0 = Instant::now();
    let err = |e: blockq::Error| file_error(path, e);
    let (weights, load) = super::open_weights(path, quant_type)?;
    let names: Vec<String> = weights.into_iter().map(|w| w.name).collect();
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| filter.is_none_or(|f| n.contains(f)))
        .collect();
    if names.is_empty() {
        return Err(file_error(path, "no loadable weight (matching the filter)"));
    }

    let isas = dispatch::available();
    let all = rayon::current_num_threads();
    let pools: Vec<ThreadPool> = [1, all]
        .iter()
        .take(if all > 1 { 2 } else { 1 })
        .map(|&t| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .expect("thread pool")
        })
        .collect();
    let mut configs = Vec::new();
    for &isa in &isas {
        for pool in &pools {
            for split in ["whole", "rows", "uneven"] {
                configs.push(Config { isa, pool, split });
            }
        }
    }
    let threads: Vec<String> = pools
        .iter()
        .map(|p| p.current_num_threads().to_string())
        .collect();
    println!(
        "{}: {} weights; a batch of {batch} rows on {} ISAs ({}) x {} thread counts ({}) x 3 splits (whole, row by row, uneven) = {} runs each, compared bit for bit with the scalar kernel's (1 thread, whole batch)",
        path.display(),
        names.len(),
        isas.len(),
        isas.iter().map(|i| i.name()).collect::<Vec<_>>().join(", "),
        pools.len(),
        threads.join(", "),
        configs.len()
    );
    let bar = ProgressBar::new(names.len() as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("a valid template"),
    );
    let w = names.iter().map(|n| n.len()).max().unwrap_or(4).max(4);
    let mut lines = Vec::new();
    let mut failures = 0;
    for name in &names {
        bar.set_message(name.clone());
        let mut layer = load(name).map_err(err)?;
        let (k, m) = (layer.in_features, batch);
        let x = input(m, k);
        layer.set_isa(Isa::Scalar).expect("scalar runs everywhere");
        let reference = pools[0].install(|| forward(&layer, &x, m, "whole"));
        let mut first_diff = None;
        for c in &configs {
            layer.set_isa(c.isa).expect("an available ISA");
            let y = c.pool.install(|| forward(&layer, &x, m, c.split));
            if let Some(i) = (0..y.len()).find(|&i| y[i].to_bits() != reference[i].to_bits()) {
                let n = layer.out_features;
                first_diff = Some(format!(
                    "DIFFERS: {} {} thread(s) {}: row {}, output {}: {:e} vs scalar {:e}",
                    c.isa,
                    c.pool.current_num_threads(),
                    c.split,
                    i / n,
                    i % n,
                    y[i],
                    reference[i]
                ));
                break;
            }
        }
        let rel = error_vs_f64(&layer, &x, m, &reference);
        let verdict = match first_diff {
            Some(d) => {
                failures += 1;
                d
            }
            None => "identical".to_string(),
        };
        lines.push(format!(
            "{name:<w$}  {:<5}  {:>12}  {verdict:<9}  {rel:.2e}",
            layer.quant_type.name(),
            format!("{}x{}", layer.out_features, k),
        ));
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "\n{:<w$}  {:<5}  {:>12}  {:<9}  rel. error vs f64",
        "name", "type", "NxK", "bits"
    );
    for l in &lines {
        println!("{l}");
    }
    println!(
        "\n{} of {} weights give identical bits in all {} runs ({:.1} s). The error is the \
         relative L2 distance of the output from a float64 product with the stored \
         weights: what rounding the activations to int8 (block formats) or f32 \
         accumulation (F16 / BF16 / F32) costs, not the weights' quantization.",
        names.len() - failures,
        names.len(),
        configs.len(),
        t0.elapsed().as_secs_f64()
    );
    if failures > 0 {
        return Err(CliError {
            msg: format!(
                "{failures} weights differ between ISAs, thread counts or batch splits: a blockq bug, please report it with this output"
            ),
            code: 1,
        });
    }
    Ok(())
}
