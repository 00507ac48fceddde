//! A tour of blockq on this CPU: detected ISAs, then a 4096 x 4096 layer in each
//! format with its compression, its error against f32 and its forward time.
//!
//! `cargo run --release --example tour` (set `BLOCKQ_ISA` to force an ISA).

mod common;

use blockq::{dispatch, QuantType, QuantizedLinear};
use common::values;
use std::time::Instant;

fn median_secs(mut f: impl FnMut(), reps: usize) -> f64 {
    f();
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    t[t.len() / 2]
}

fn main() {
    let (k, n) = (4096usize, 4096usize);
    let names: Vec<&str> = dispatch::available().iter().map(|i| i.name()).collect();
    println!("blockq tour: {k} x {n} linear layer");
    println!("build: {}", blockq::build_info());
    println!("ISAs available here: {}", names.join(", "));
    let isa = dispatch::default_isa().expect("BLOCKQ_ISA");
    println!("using: {isa} (threads: {})\n", rayon::current_num_threads());

    let w: Vec<f32> = values(1, n * k, 0.05);
    let bias = values(2, n, 1.0);
    println!(
        "{:<5} {:>10} {:>7} {:>10} {:>12} {:>12} {:>10}",
        "fmt", "weights", "ratio", "rel.err", "M=1 (ms)", "M=32 (ms)", "GB/s M=1"
    );
    for qt in QuantType::ALL {
        let layer = QuantizedLinear::from_linear_params(&w, Some(&bias), k, n, qt);
        let x1 = values(3, k, 1.0);
        let y = layer.forward_f32(&x1, 1);
        // Error of the output against an f64 evaluation of the f32 layer.
        let (mut num, mut den) = (0.0f64, 0.0f64);
        for r in 0..n {
            let exact: f64 = bias[r] as f64
                + (0..k)
                    .map(|c| w[r * k + c] as f64 * x1[c] as f64)
                    .sum::<f64>();
            num += (y[r] as f64 - exact).powi(2);
            den += exact.powi(2);
        }
        let mut out1 = vec![0.0f32; n];
        let t1 = median_secs(|| layer.forward_into(&x1, 1, &mut out1).unwrap(), 21);
        let x32 = values(4, 32 * k, 1.0);
        let mut out32 = vec![0.0f32; 32 * n];
        let t32 = median_secs(|| layer.forward_into(&x32, 32, &mut out32).unwrap(), 5);
        println!(
            "{:<5} {:>8.1}MB {:>6.2}x {:>10.2e} {:>12.3} {:>12.3} {:>10.1}",
            qt.name(),
            layer.weight_bytes() as f64 / 1e6,
            layer.compression_ratio(),
            (num / den).sqrt(),
            t1 * 1e3,
            t32 * 1e3,
            layer.weight_bytes() as f64 / t1 / 1e9
        );
    }
}
