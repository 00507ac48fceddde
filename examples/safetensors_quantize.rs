//! Quantizes a safetensors weight to each format and reports size and error.
//!
//! ```text
//! cargo run --release --example safetensors_quantize                     # demo file
//! cargo run --release --example safetensors_quantize -- FILE WEIGHT [BIAS]
//! ```
//!
//! Without arguments it writes a BF16 weight `[512, 1024]` and an F32 bias to
//! a safetensors file in the temp directory. For every format (F32: the
//! weights as loaded; the file's own BF16: its bytes as they are) it prints
//! the weight bytes, the compression against f32,
//! the error of the dequantized weights, and the error of one forward pass
//! against f64 math on the unquantized weights.

mod common;

use blockq::safetensors::SafetensorsFile;
use blockq::{QuantType, QuantizedLinear};
use common::values;
use half::bf16;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::process::ExitCode;

fn demo_file() -> Vec<u8> {
    let (n, k) = (512usize, 1024usize);
    let w: Vec<u8> = values(1, n * k, 0.05)
        .into_iter()
        .flat_map(|v| bf16::from_f32(v).to_le_bytes())
        .collect();
    let b: Vec<u8> = values(2, n, 0.1)
        .into_iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let tensors = [
        (
            "mlp.up.weight",
            TensorView::new(Dtype::BF16, vec![n, k], &w).expect("shape"),
        ),
        (
            "mlp.up.bias",
            TensorView::new(Dtype::F32, vec![n], &b).expect("shape"),
        ),
    ];
    safetensors::serialize(tensors, None).expect("serialize")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (path, weight, bias, cleanup) = match &args[..] {
        [] => {
            let p = std::env::temp_dir()
                .join(format!("blockq-demo-{}.safetensors", std::process::id()));
            std::fs::write(&p, demo_file()).expect("write demo file");
            println!("wrote demo file {}", p.display());
            (
                p,
                "mlp.up.weight".to_string(),
                Some("mlp.up.bias".to_string()),
                true,
            )
        }
        [p, w] => (p.into(), w.clone(), None, false),
        [p, w, b] => (p.into(), w.clone(), Some(b.clone()), false),
        _ => {
            eprintln!("usage: safetensors_quantize [FILE WEIGHT [BIAS]]");
            return ExitCode::FAILURE;
        }
    };
    let result = run(&path, &weight, bias.as_deref());
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

fn run(path: &std::path::Path, weight: &str, bias: Option<&str>) -> Result<(), blockq::Error> {
    let file = SafetensorsFile::open(path)?;
    println!("{} tensors:", file.tensors().len());
    for t in file.tensors().iter().take(20) {
        println!("  {:<40} {:<5} {:?}", t.name, t.dtype, t.shape);
    }
    // The weights as stored (F16/BF16 widened exactly): the reference.
    let w = file.tensor_f32(weight)?;
    let b = bias.map(|b| file.tensor_f32(b)).transpose()?;
    let reference = file.linear(weight, bias, QuantType::F32)?;
    let (k, n) = (reference.in_features, reference.out_features);
    let x = values(3, k, 1.0);

    println!(
        "\n{weight}: [{n}, {k}]\n{:<5} {:>12} {:>7} {:>14} {:>14} {:>14}",
        "fmt", "weight bytes", "ratio", "max |dw|", "rms dw / rms w", "rel. rms dy"
    );
    let rms = |v: &mut dyn Iterator<Item = f64>| {
        let (s, c) = v.fold((0.0, 0usize), |(s, c), x| (s + x * x, c + 1));
        (s / c.max(1) as f64).sqrt()
    };
    for qt in QuantType::ALL {
        let layer: QuantizedLinear = file.linear(weight, bias, qt)?;
        let dq = layer.dequantize_weights();
        let max_dw = w
            .iter()
            .zip(&dq)
            .map(|(&a, &b)| (a as f64 - b as f64).abs())
            .fold(0.0, f64::max);
        let rel_w = rms(&mut w.iter().zip(&dq).map(|(&a, &b)| a as f64 - b as f64))
            / rms(&mut w.iter().map(|&a| a as f64));
        // Output error against f64 math on the unquantized weights and input.
        let y = layer.try_forward_f32(&x, 1)?;
        let exact: Vec<f64> = (0..n)
            .map(|r| {
                b.as_ref().map_or(0.0, |b| b[r] as f64)
                    + (0..k)
                        .map(|c| w[r * k + c] as f64 * x[c] as f64)
                        .sum::<f64>()
            })
            .collect();
        let rel_y = rms(&mut y.iter().zip(&exact).map(|(&a, &e)| a as f64 - e))
            / rms(&mut exact.iter().copied());
        println!(
            "{:<5} {:>12} {:>6.2}x {:>14.3e} {:>14.3e} {:>14.3e}",
            qt.name(),
            layer.weight_bytes(),
            layer.compression_ratio(),
            max_dw,
            rel_w,
            rel_y
        );
    }
    Ok(())
}
