//! Loads linear layers from a GGUF file and runs them.
//!
//! ```text
//! cargo run --release --example gguf_layer                         # demo file
//! cargo run --release --example gguf_layer -- FILE.gguf TENSOR [BIAS]
//! ```
//!
//! Without arguments it writes a small GGUF v3 file (Q8_0, Q4_0, F16 and F32
//! weights made by blockq's quantizers, plus a bias) to the temp directory and
//! loads every weight from it. It prints the tensor table, loads each layer
//! without re-quantizing, runs one input row and checks every output against
//! f64 arithmetic on the operands the kernels multiply (dequantized weights and
//! activations), within a bound derived from f32 rounding.

mod common;

use blockq::gguf::GgufFile;
use blockq::{BlockQ4_0, BlockQ8_0, QuantizedLinear, QK};
use bytemuck::Zeroable;
use common::values;
use half::f16;
use std::process::ExitCode;

/// A minimal GGUF v3 writer: a few metadata pairs, then `(name, ggml type,
/// ne, bytes)` tensors, each at an offset aligned to 32 bytes.
fn write_gguf(tensors: &[(&str, u32, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
    fn put_str(out: &mut Vec<u8>, s: &str) {
        out.extend((s.len() as u64).to_le_bytes());
        out.extend(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend((tensors.len() as u64).to_le_bytes());
    out.extend(2u64.to_le_bytes()); // metadata pairs
    put_str(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes()); // string
    put_str(&mut out, "blockq-demo");
    put_str(&mut out, "general.alignment");
    out.extend(4u32.to_le_bytes()); // u32
    out.extend(32u32.to_le_bytes());
    let mut offset = 0u64;
    for (name, ty, ne, data) in tensors {
        put_str(&mut out, name);
        out.extend((ne.len() as u32).to_le_bytes());
        for d in ne {
            out.extend(d.to_le_bytes());
        }
        out.extend(ty.to_le_bytes());
        out.extend(offset.to_le_bytes());
        offset = (offset + data.len() as u64).next_multiple_of(32);
    }
    for (_, _, _, data) in tensors {
        out.resize(out.len().next_multiple_of(32), 0);
        out.extend(data);
    }
    out
}

fn demo_file() -> Vec<u8> {
    let (k, n) = (256usize, 48usize);
    let w = values(1, n * k, 0.2);
    let mut q8 = vec![BlockQ8_0::zeroed(); n * k / QK];
    blockq::quantize_row_q8_0(&w, &mut q8);
    let mut q4 = vec![BlockQ4_0::zeroed(); n * k / QK];
    blockq::quantize_row_q4_0(&w, &mut q4);
    let f16s: Vec<u8> = w
        .iter()
        .flat_map(|&v| f16::from_f32(v).to_le_bytes())
        .collect();
    let f32s: Vec<u8> = w.iter().flat_map(|v| v.to_le_bytes()).collect();
    let bias: Vec<u8> = values(2, n, 0.5)
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let ne = vec![k as u64, n as u64];
    write_gguf(&[
        (
            "blk.0.q8_0.weight",
            8,
            ne.clone(),
            bytemuck::cast_slice(&q8).to_vec(),
        ),
        (
            "blk.0.q4_0.weight",
            2,
            ne.clone(),
            bytemuck::cast_slice(&q4).to_vec(),
        ),
        ("blk.0.f16.weight", 1, ne.clone(), f16s),
        ("blk.0.f32.weight", 0, ne, f32s),
        ("blk.0.bias", 0, vec![n as u64], bias),
    ])
}

/// Activations as the kernels quantize them (the crate docs' canonical
/// arithmetic), dequantized: per 32-block, `amax` from the largest |x| bit
/// pattern, `d = amax / 127`, `q = round_half_even(x * (127 / amax))`.
fn dequantized_acts(x: &[f32]) -> Vec<f64> {
    x.chunks(QK)
        .flat_map(|block| {
            let a = block
                .iter()
                .map(|v| v.to_bits() & 0x7FFF_FFFF)
                .max()
                .unwrap_or(0);
            let (d, id) = if a >= 0x7F80_0000 {
                (f32::NAN, 0.0) // NaN or Inf in the block
            } else if a < (2.0f32).powi(-120).to_bits() {
                (0.0, 0.0)
            } else {
                let amax = f32::from_bits(a);
                (amax / 127.0, 127.0 / amax)
            };
            block
                .iter()
                .map(move |&v| (v * id).round_ties_even() as f64 * d as f64)
        })
        .collect()
}

/// Runs `layer` on one row and checks it against f64 math; returns the
/// largest error as a fraction of its bound.
fn run_and_check(layer: &QuantizedLinear, x: &[f32]) -> Result<f64, String> {
    let (k, n) = (layer.in_features, layer.out_features);
    let y = layer.try_forward_f32(x, 1).map_err(|e| e.to_string())?;
    let w = layer.dequantize_weights();
    // The activations the kernels see: quantized per 32-block for Q8_0/Q4_0.
    let xq: Vec<f64> = if layer.quant_type.is_block_quantized() {
        dequantized_acts(x)
    } else {
        x.iter().map(|&v| v as f64).collect()
    };
    let steps = if layer.quant_type.is_block_quantized() {
        k.div_ceil(QK)
    } else {
        k
    };
    let eps = f32::EPSILON as f64;
    let mut worst = 0.0f64;
    for r in 0..n {
        let b = layer.bias().map_or(0.0, |b| b[r] as f64);
        let (mut exact, mut mag) = (b, b.abs());
        for c in 0..k {
            let t = w[r * k + c] as f64 * xq[c];
            exact += t;
            mag += t.abs();
        }
        let bound = (2.0 * steps as f64 + 2.0) * eps * mag + 1e-30;
        let err = (y[r] as f64 - exact).abs();
        if err > bound {
            return Err(format!(
                "output {r}: {} vs f64 {exact} (bound {bound})",
                y[r]
            ));
        }
        worst = worst.max(err / bound);
    }
    Ok(worst)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, cleanup) = match args.first() {
        Some(p) => (std::path::PathBuf::from(p), false),
        None => {
            let p = std::env::temp_dir().join(format!("blockq-demo-{}.gguf", std::process::id()));
            std::fs::write(&p, demo_file()).expect("write demo file");
            println!("wrote demo file {}", p.display());
            (p, true)
        }
    };
    let result = run(&path, &args);
    if cleanup {
        let _ = std::fs::remove_file(&path);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path, args: &[String]) -> Result<(), String> {
    let file = GgufFile::open(path).map_err(|e| e.to_string())?;
    println!(
        "GGUF v{}, alignment {}, {} metadata pairs, {} tensors, data at byte {}",
        file.version(),
        file.alignment(),
        file.metadata().len(),
        file.tensors().len(),
        file.data_offset()
    );
    if let Some(arch) = file.get("general.architecture") {
        println!("general.architecture = {arch:?}");
    }
    println!(
        "\n{:<32} {:<16} {:<20} {:>12}",
        "tensor", "type", "ne", "bytes"
    );
    for t in file.tensors().iter().take(40) {
        println!(
            "{:<32} {:<16} {:<20} {:>12}",
            t.name,
            t.ggml_type.to_string(),
            format!("{:?}", t.ne),
            t.size
        );
    }
    if file.tensors().len() > 40 {
        println!("... and {} more", file.tensors().len() - 40);
    }

    // (weight, bias) pairs to load: the ones named, or every demo weight.
    let pairs: Vec<(String, Option<String>)> = match args {
        [_, w] => vec![(w.clone(), None)],
        [_, w, b] => vec![(w.clone(), Some(b.clone()))],
        [] => file
            .tensors()
            .iter()
            .filter(|t| t.name.ends_with(".weight"))
            .map(|t| (t.name.clone(), Some("blk.0.bias".to_string())))
            .collect(),
        _ => return Err("usage: gguf_layer [FILE.gguf TENSOR [BIAS]]".into()),
    };
    println!();
    for (w, b) in pairs {
        let layer = file.linear(&w, b.as_deref()).map_err(|e| e.to_string())?;
        let x = values(3, layer.in_features, 1.0);
        let worst = run_and_check(&layer, &x)?;
        println!(
            "{w}: {} [{} -> {}], {} weight bytes ({:.2}x smaller than f32), isa {}: \
             output matches f64 math (largest error {:.3} of its bound)",
            layer.quant_type,
            layer.in_features,
            layer.out_features,
            layer.weight_bytes(),
            layer.compression_ratio(),
            layer.isa(),
            worst
        );
    }
    Ok(())
}
