//! Shared helpers for the integration tests.
#![allow(dead_code)]

#[path = "../../examples/common/mod.rs"]
mod data;
pub use data::values;

use blockq::kernels::act::{quantize_row_scalar, ActBlock};
use blockq::kernels::formats::{PackedBlock, SubScale};
use blockq::kernels::match_format;
use blockq::{dispatch, Isa, QuantType, QuantizedLinear, QK};
use bytemuck::Zeroable;
use std::path::PathBuf;

pub fn layer(seed: u64, k: usize, n: usize, qt: QuantType, bias: bool) -> QuantizedLinear {
    let w = values(seed, n * k, 1.0);
    let b = values(seed + 1, n, 0.5);
    QuantizedLinear::from_linear_params(&w, bias.then_some(&b[..]), k, n, qt)
}

/// Dequantized activations, exactly as the kernels see them.
pub fn dequantized_acts(x: &[f32]) -> Vec<f64> {
    let nb = x.len().div_ceil(QK);
    let mut blocks = vec![ActBlock::zeroed(); nb];
    quantize_row_scalar(x, 8, &mut blocks);
    let mut out = Vec::with_capacity(x.len());
    for (i, _) in x.iter().enumerate() {
        let b = &blocks[i / QK];
        out.push(b.qs[i % QK] as f64 * b.d as f64);
    }
    out
}

/// Checks `y` (one row of output) against f64 arithmetic, with a bound derived
/// from the formats: first against the dequantized operands (only float
/// rounding differs), then against the original f32 weights and inputs (plus
/// the quantization error of each operand).
pub fn check_against_f64(
    layer: &QuantizedLinear,
    w: &[f32],
    bias: Option<&[f32]>,
    x: &[f32],
    y: &[f32],
) {
    let (k, n) = (layer.in_features, layer.out_features);
    let wq = layer.dequantize_weights();
    let xq: Vec<f64> = if layer.quant_type.is_block_quantized() {
        dequantized_acts(x)
    } else {
        x.iter().map(|&v| v as f64).collect()
    };
    let nb = k.div_ceil(QK) as f64;
    // Each block of a format with a minimum m adds two products (d * isum,
    // m * Σa): twice the roundings, and terms of up to (|w| + 2|m|)|x|.
    let mins = block_minimums(layer);
    let steps = if layer.quant_type.is_block_quantized() {
        nb * if mins.is_empty() { 1.0 } else { 2.0 }
    } else {
        k as f64
    };
    let eps = f32::EPSILON as f64;
    for r in 0..n {
        let b = bias.map_or(0.0, |b| b[r] as f64);
        let (mut exact, mut mag, mut quant_err, mut orig) = (b, b.abs(), 0.0f64, b);
        for c in 0..k {
            let (wv, xv) = (wq[r * k + c] as f64, xq[c]);
            exact += wv * xv;
            let m = mins
                .get(r * k.div_ceil(QK) + c / QK)
                .map_or(0.0, |&m| m.abs());
            mag += (wv.abs() + 2.0 * m) * xv.abs();
            orig += w[r * k + c] as f64 * x[c] as f64;
            quant_err += wv.abs() * (x[c] as f64 - xv).abs()
                + (w[r * k + c] as f64 - wv).abs() * (x[c] as f64).abs();
        }
        let fp_bound = (2.0 * steps + 2.0) * eps * mag + 1e-30;
        let got = y[r] as f64;
        assert!(
            (got - exact).abs() <= fp_bound,
            "row {r}: {got} vs dequantized reference {exact} (bound {fp_bound})"
        );
        assert!(
            (got - orig).abs() <= quant_err + fp_bound + 1e-6 * mag,
            "row {r}: {got} vs f32 reference {orig} (bound {})",
            quant_err + fp_bound
        );
    }
}

/// The minimum `m` of every block (row-major), for formats that have one;
/// empty for the others.
pub fn block_minimums(layer: &QuantizedLinear) -> Vec<f64> {
    let w = layer.packed();
    match_format!(
        w.format(),
        B => {
            if B::SCALES < 2 {
                return Vec::new();
            }
            // One minimum per 32-value (sub-)block.
            let (nb, subs) = (w.blocks_per_row(), B::VALUES / QK);
            (0..w.n() * nb)
                .map(|i| match w.block::<B>(i / nb, i % nb / subs).sub_scale(i % nb % subs) {
                    SubScale::Min { m, .. } => m as f64,
                    s => unreachable!("{s:?} of a format with two scales"),
                })
                .collect()
        },
        E => Vec::new(),
    )
}

/// Bitwise equality with all NaNs equal; panics with the first difference.
pub fn assert_same_bits(a: &[f32], b: &[f32], what: &str) {
    if let Some(i) = blockq::first_difference(a, b) {
        panic!(
            "{what}: differs at {i}: {:?} ({:#010x}) vs {:?} ({:#010x})",
            a.get(i),
            a.get(i).map_or(0, |v| v.to_bits()),
            b.get(i),
            b.get(i).map_or(0, |v| v.to_bits())
        );
    }
}

/// The ISAs to compare with scalar; prints the ones skipped.
pub fn isas_under_test() -> Vec<Isa> {
    let mut run = Vec::new();
    for isa in Isa::ALL.into_iter().filter(|&i| i != Isa::Scalar) {
        match dispatch::kernels(isa) {
            Ok(_) => run.push(isa),
            Err(e) => eprintln!("isa {isa}: SKIPPED ({e})"),
        }
    }
    run
}

/// `layer` forwarded by each of `isas` gives the scalar bits for `x`.
pub fn compare_layer(layer: &QuantizedLinear, x: &[f32], batch: usize, isas: &[Isa], what: &str) {
    let scalar = layer.clone().with_isa(Isa::Scalar).unwrap();
    let want = scalar.forward_f32(x, batch);
    for &isa in isas {
        let l = layer.clone().with_isa(isa).unwrap();
        let got = l.forward_f32(x, batch);
        assert_same_bits(&got, &want, &format!("{isa} vs scalar: {what}"));
    }
}

/// File name of the real model the tests load (`.ci/fetch-models.sh`).
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// File name of the Q4_K_M model `.ci/fetch-models.sh` fetches.
pub const GEMMA3_FILE: &str = "gemma-3-270m-Q4_K_M.gguf";

/// The SmolLM2 GGUF: `$BLOCKQ_SMOLLM2_GGUF`, else
/// `${BLOCKQ_MODELS:-$HOME/.cache/blockq-models}/SmolLM2-135M-Instruct.Q4_1.gguf`;
/// or `None` (after printing SKIPPED and why) when the test must skip: the
/// file is missing and either CI is not set or the fetch script left its
/// `.skipped` note (no network). Under `CI=true` a missing file is a failure.
pub fn smollm2_path() -> Option<PathBuf> {
    model_path("BLOCKQ_SMOLLM2_GGUF", SMOLLM2_FILE)
}

/// The Gemma-3 270M Q4_K_M GGUF, as [`smollm2_path`] finds its file
/// (`$BLOCKQ_GEMMA3_GGUF`, else [`GEMMA3_FILE`] in the models directory).
pub fn gemma3_path() -> Option<PathBuf> {
    model_path("BLOCKQ_GEMMA3_GGUF", GEMMA3_FILE)
}

fn model_path(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{var}={}: no such file", p.display());
        return Some(p);
    }
    let dir = match std::env::var_os("BLOCKQ_MODELS").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/blockq-models"),
    };
    let file = dir.join(name);
    if file.is_file() {
        return Some(file);
    }
    let marker = dir.join(format!("{name}.skipped"));
    let skipped = std::fs::read_to_string(&marker).ok();
    assert!(
        skipped.is_some() || std::env::var("CI").as_deref() != Ok("true"),
        "CI=true and {} is missing: .ci/fetch-models.sh fetches it before the tests \
         (or writes {} when it cannot download)",
        file.display(),
        marker.display()
    );
    println!("SKIPPED: {name} not found (run .ci/fetch-models.sh)");
    if let Some(why) = skipped {
        println!("  the fetch script skipped the download: {}", why.trim());
    }
    None
}
