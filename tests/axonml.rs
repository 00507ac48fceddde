//! axonml integration: a QuantizedLinear against axonml's own `Linear` on the
//! same weights and inputs, with bounds derived from f32 rounding and the
//! quantization error of each operand.
#![cfg(feature = "axonml")]

mod common;

use axonml_autograd::Variable;
use axonml_nn::{Linear, Module, Sequential};
use axonml_tensor::Tensor;
use blockq::{Error, QuantType, QuantizedLinear};
use common::{assert_same_bits, dequantized_acts, values};

fn axonml_linear(seed: u64, k: usize, n: usize, bias: bool) -> (Linear, Vec<f32>, Vec<f32>) {
    let w = values(seed, n * k, 1.0);
    let b = values(seed + 1, n, 0.5);
    let linear = Linear::from_weights(
        Tensor::from_vec(w.clone(), &[n, k]).unwrap(),
        bias.then(|| Tensor::from_vec(b.clone(), &[n]).unwrap()),
    );
    (linear, w, if bias { b } else { vec![0.0; n] })
}

fn var(data: Vec<f32>, shape: &[usize]) -> Variable {
    Variable::new(Tensor::from_vec(data, shape).unwrap(), false)
}

/// Checks both outputs (one row each) against f64 math; returns the largest
/// quantization-error term of the bound.
///
/// `exact_q` uses the operands the quantized layer really multiplies (its
/// dequantized weights and, for block formats, dequantized activations);
/// `exact` uses the original f32 operands. Each f32 dot product of length `k`
/// (any summation order, FMA or not) is within `(k + 1) * eps * Σ|w x|` of its
/// exact value, plus one rounding for the bias; the block formats' canonical
/// sum has `ceil(k/32)` scale products and FMAs instead, within
/// `(2 ceil(k/32) + 1) * eps * Σ|wq xq|`. The quantized layer may
/// further differ from `exact` by `Σ |w - wq| |x| + |wq| |x - xq|`.
fn check_row(
    layer: &QuantizedLinear,
    w: &[f32],
    b: &[f32],
    x: &[f32],
    y_axonml: &[f32],
    y_quant: &[f32],
) -> f64 {
    let (k, n) = (layer.in_features, layer.out_features);
    let wq = layer.dequantize_weights();
    let xq: Vec<f64> = if layer.quant_type.is_block_quantized() {
        dequantized_acts(x)
    } else {
        x.iter().map(|&v| v as f64).collect()
    };
    let eps = f32::EPSILON as f64;
    let steps = if layer.quant_type.is_block_quantized() {
        2.0 * k.div_ceil(32) as f64 + 1.0
    } else {
        k as f64 + 1.0
    };
    let mut worst_qerr = 0.0f64;
    for r in 0..n {
        let (mut exact, mut exact_q, mut mag, mut mag_q, mut qerr) =
            (b[r] as f64, b[r] as f64, 0.0, 0.0, 0.0);
        for c in 0..k {
            let (wv, xv) = (w[r * k + c] as f64, x[c] as f64);
            let (wqv, xqv) = (wq[r * k + c] as f64, xq[c]);
            exact += wv * xv;
            exact_q += wqv * xqv;
            mag += (wv * xv).abs();
            mag_q += (wqv * xqv).abs();
            qerr += (wv - wqv).abs() * xv.abs() + wqv.abs() * (xv - xqv).abs();
        }
        let fp = |steps: f64, m: f64, e: f64| steps * eps * m + eps * e.abs() + 1e-30;
        let (ya, yq) = (y_axonml[r] as f64, y_quant[r] as f64);
        let ref_bound = fp(k as f64 + 1.0, mag, exact);
        let quant_bound = fp(steps, mag_q, exact_q);
        assert!(
            (ya - exact).abs() <= ref_bound,
            "axonml row {r}: {ya} vs {exact}"
        );
        assert!(
            (yq - exact_q).abs() <= quant_bound,
            "{} row {r}: {yq} vs dequantized reference {exact_q}",
            layer.quant_type
        );
        let bound = ref_bound + quant_bound + qerr;
        assert!(
            (yq - ya).abs() <= bound,
            "{} row {r}: {yq} vs axonml {ya} (bound {bound})",
            layer.quant_type
        );
        worst_qerr = worst_qerr.max(qerr);
    }
    worst_qerr
}

#[test]
fn matches_axonml_linear_within_derived_bounds() {
    for (i, &(k, n)) in [(32, 8), (100, 17), (256, 33)].iter().enumerate() {
        for bias in [true, false] {
            let (linear, w, b) = axonml_linear(10 * i as u64, k, n, bias);
            let batch = 4;
            let xs = values(99 + i as u64, batch * k, 2.0);
            let x = var(xs.clone(), &[batch, k]);
            let y_ref = linear.forward(&x);
            assert_eq!(y_ref.shape(), vec![batch, n]);
            let y_ref = y_ref.data().to_vec();
            for qt in QuantType::ALL {
                let layer = QuantizedLinear::from_axonml_linear(&linear, qt).unwrap();
                let direct =
                    QuantizedLinear::from_linear_params(&w, bias.then_some(&b[..]), k, n, qt);
                assert_eq!(layer.to_gguf_bytes(), direct.to_gguf_bytes());
                let y = layer.forward_var(&x);
                assert!(!y.requires_grad());
                assert_eq!(y.shape(), vec![batch, n]);
                let y = y.data().to_vec();
                assert_same_bits(&y, &direct.forward_f32(&xs, batch), "forward_var");
                for r in 0..batch {
                    check_row(
                        &layer,
                        &w,
                        &b,
                        &xs[r * k..(r + 1) * k],
                        &y_ref[r * n..(r + 1) * n],
                        &y[r * n..(r + 1) * n],
                    );
                }
            }
        }
    }
}

#[test]
fn f32_layer_is_close_to_axonml() {
    // With F32 weights nothing is quantized: the bound between the two layers
    // is f32 rounding alone (about k ulps of the magnitude of the terms).
    let (k, n) = (512, 64);
    let (linear, w, b) = axonml_linear(5, k, n, true);
    let xs = values(6, k, 1.0);
    let x = var(xs.clone(), &[k]);
    let layer = QuantizedLinear::from_axonml_linear(&linear, QuantType::F32).unwrap();
    let y = layer.forward_var(&x);
    assert_eq!(y.shape(), vec![1, n]);
    let y_ref = linear.forward(&var(xs.clone(), &[1, k])).data().to_vec();
    let qerr = check_row(&layer, &w, &b, &xs, &y_ref, &y.data().to_vec());
    assert_eq!(qerr, 0.0);
}

#[test]
fn higher_rank_inputs_flatten_leading_dimensions() {
    let (k, n) = (64, 5);
    let (linear, _, _) = axonml_linear(7, k, n, true);
    let layer = QuantizedLinear::from_axonml_linear(&linear, QuantType::Q4_0).unwrap();
    let xs = values(8, 2 * 3 * k, 1.0);
    let y = layer.forward_var(&var(xs.clone(), &[2, 3, k]));
    assert_eq!(y.shape(), vec![2, 3, n]);
    assert_same_bits(&y.data().to_vec(), &layer.forward_f32(&xs, 6), "rank 3");
    // axonml's Linear gives the same shape.
    assert_eq!(linear.forward(&var(xs, &[2, 3, k])).shape(), vec![2, 3, n]);
}

#[test]
fn dequantized_tensor_and_module_use() {
    let (k, n) = (96, 7);
    let (linear, _, _) = axonml_linear(9, k, n, true);
    let layer = QuantizedLinear::from_axonml_linear(&linear, QuantType::Q8_0).unwrap();
    let t = layer.dequantize_weights_tensor();
    assert_eq!(t.shape(), &[n, k]);
    assert_same_bits(&t.to_vec(), &layer.dequantize_weights(), "tensor");

    // As a module inside an axonml Sequential.
    let xs = values(10, 3 * k, 1.0);
    let expect = layer.forward_f32(&xs, 3);
    assert!(Module::parameters(&layer).is_empty());
    assert_eq!(Module::name(&layer), "QuantizedLinear");
    let model = Sequential::new().add(layer.clone());
    let y = model.forward(&var(xs, &[3, k]));
    assert_same_bits(&y.data().to_vec(), &expect, "Sequential");
}

#[test]
fn wrong_shapes_are_errors() {
    let (linear, _, _) = axonml_linear(11, 32, 4, false);
    let layer = QuantizedLinear::from_axonml_linear(&linear, QuantType::F16).unwrap();
    assert!(matches!(
        layer.try_forward_var(&var(vec![0.0; 62], &[2, 31])),
        Err(Error::LengthMismatch {
            expected: 32,
            actual: 31,
            ..
        })
    ));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        layer.forward_var(&var(vec![0.0; 33], &[33]))
    }));
    let msg = *r.unwrap_err().downcast::<String>().unwrap();
    assert!(msg.contains("forward_var") && msg.contains("33"), "{msg}");
}
