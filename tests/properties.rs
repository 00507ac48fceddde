//! quickcheck properties of the formats and the layer.

mod common;

use blockq::{BlockQ4_0, BlockQ8_0, QuantType, QuantizedLinear, QK};
use common::*;
use half::f16;
use quickcheck::{QuickCheck, TestResult};

/// Finite test values at a random scale (keeps the block scale inside f16).
fn row(seed: u64, len: usize, exp: i8) -> Vec<f32> {
    // 2^-15 .. 2^15: block scales stay finite in f16 for both formats.
    let scale = 2f32.powi((exp % 16) as i32);
    values(seed, len, scale)
}

#[test]
fn quantize_dequantize_error_is_within_half_a_step() {
    fn prop(seed: u64, blocks: u8, exp: i8) -> bool {
        let nb = blocks as usize % 8 + 1;
        let x = row(seed, nb * QK, exp);
        let mut q8 = vec![
            BlockQ8_0 {
                d: f16::ZERO,
                qs: [0; QK]
            };
            nb
        ];
        let mut q4 = vec![
            BlockQ4_0 {
                d: f16::ZERO,
                qs: [0; 16]
            };
            nb
        ];
        blockq::quantize_row_q8_0(&x, &mut q8);
        blockq::quantize_row_q4_0(&x, &mut q4);
        let (mut y8, mut y4) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        blockq::dequantize_row_q8_0(&q8, &mut y8);
        blockq::dequantize_row_q4_0(&q4, &mut y4);
        x.iter().enumerate().all(|(i, &v)| {
            // The codes come from the f32 scale d32; the stored scale d16 is d32
            // rounded to f16, which moves each dequantized value by |q| * |d16 - d32|.
            let b = &x[i / QK * QK..(i / QK + 1) * QK];
            let amax = b.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            let max = b.iter().copied().find(|v| v.abs() == amax).unwrap();
            let (d8, d4) = (amax / 127.0, max / -8.0);
            let (s8, s4) = (q8[i / QK].d.to_f32(), q4[i / QK].d.to_f32());
            let slack = 1e-6 * amax + 1e-30;
            let e8 = (y8[i] - v).abs() <= d8.abs() * 0.5 + 127.0 * (s8 - d8).abs() + slack;
            // Q4_0: half a step, or a whole step where +8 is clamped to code 7.
            let e4 = (y4[i] - v).abs() <= d4.abs() + 8.0 * (s4 - d4).abs() + slack;
            e8 && e4
        })
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(u64, u8, i8) -> bool);
}

#[test]
fn gguf_blocks_round_trip_through_a_layer() {
    fn prop(seed: u64, k: u16, n: u8, codes: Vec<i8>, scales: Vec<u16>) -> TestResult {
        let k = k as usize % 200 + 1;
        let n = n as usize % 40 + 1;
        let nb = k.div_ceil(QK);
        let code = |i: usize| codes.get(i % codes.len().max(1)).copied().unwrap_or(0);
        let scale = |i: usize| {
            let bits = scales
                .get(i % scales.len().max(1))
                .copied()
                .unwrap_or(0x3C00);
            let d = f16::from_bits(bits);
            if d.is_finite() {
                d
            } else {
                f16::from_bits(bits & 0x3FFF)
            }
        };
        let q8: Vec<BlockQ8_0> = (0..n * nb)
            .map(|b| BlockQ8_0 {
                d: scale(b),
                qs: core::array::from_fn(|j| code(b * 32 + j + seed as usize)),
            })
            .collect();
        let q4: Vec<BlockQ4_0> = (0..n * nb)
            .map(|b| BlockQ4_0 {
                d: scale(b + 1),
                qs: core::array::from_fn(|j| code(b * 16 + j) as u8),
            })
            .collect();
        let l8 = QuantizedLinear::from_q8_0_blocks(&q8, None, k, n).unwrap();
        let l4 = QuantizedLinear::from_q4_0_blocks(&q4, None, k, n).unwrap();
        let ok8 = l8.to_gguf_bytes() == bytemuck::cast_slice::<_, u8>(&q8);
        let ok4 = l4.to_gguf_bytes() == bytemuck::cast_slice::<_, u8>(&q4);
        // dequantize_weights returns exactly `in_features` values per row.
        let mut deq = vec![0.0; n * nb * QK];
        blockq::dequantize_row_q8_0(&q8, &mut deq);
        let w = l8.dequantize_weights();
        let rows_ok = (0..n).all(|r| {
            first_difference_ok(&w[r * k..(r + 1) * k], &deq[r * nb * QK..r * nb * QK + k])
        });
        TestResult::from_bool(ok8 && ok4 && rows_ok)
    }
    QuickCheck::new()
        .tests(200)
        .quickcheck(prop as fn(u64, u16, u8, Vec<i8>, Vec<u16>) -> TestResult);
}

fn first_difference_ok(a: &[f32], b: &[f32]) -> bool {
    blockq::first_difference(a, b).is_none()
}

#[test]
fn batch_rows_equal_single_rows_for_random_shapes() {
    fn prop(seed: u64, k: u16, n: u8, m: u8, fmt: u8) -> TestResult {
        let (k, n, m) = (
            k as usize % 300 + 1,
            n as usize % 50 + 1,
            m as usize % 40 + 2,
        );
        let qt = QuantType::ALL[fmt as usize % QuantType::ALL.len()];
        let layer = layer(seed, k, n, qt, seed.is_multiple_of(2));
        let x = values(seed ^ 7, m * k, 2.0);
        let y = layer.forward_f32(&x, m);
        let ok = (0..m).all(|i| {
            let alone = layer.forward_f32(&x[i * k..(i + 1) * k], 1);
            first_difference_ok(&y[i * n..(i + 1) * n], &alone)
        });
        TestResult::from_bool(ok)
    }
    QuickCheck::new()
        .tests(100)
        .quickcheck(prop as fn(u64, u16, u8, u8, u8) -> TestResult);
}

/// A layer's output `n` depends on weight row `n` alone: a layer whose rows
/// are two layers' rows one after another (as a model fuses its Q / K / V
/// projections) gives their outputs, bit for bit.
#[test]
fn stacked_rows_give_the_parts_outputs() {
    fn prop(seed: u64, k: u16, n1: u8, n2: u8, m: u8, fmt: u8) -> TestResult {
        let (k, n1, n2, m) = (
            k as usize % 600 + 1,
            n1 as usize % 40 + 1,
            n2 as usize % 40 + 1,
            m as usize % 20 + 1,
        );
        let qt = QuantType::ALL[fmt as usize % QuantType::ALL.len()];
        let bias = seed.is_multiple_of(3);
        let (a, b) = (
            layer(seed, k, n1, qt, bias),
            layer(seed ^ 5, k, n2, qt, bias),
        );
        let mut bytes = a.to_gguf_bytes();
        bytes.extend(b.to_gguf_bytes());
        let both_bias: Option<Vec<f32>> =
            bias.then(|| [a.bias().unwrap(), b.bias().unwrap()].concat());
        let both = QuantizedLinear::from_gguf_bytes(&bytes, both_bias.as_deref(), k, n1 + n2, qt)
            .expect("stacked bytes load");
        let x = values(seed ^ 9, m * k, 2.0);
        let (y, ya, yb) = (
            both.forward_f32(&x, m),
            a.forward_f32(&x, m),
            b.forward_f32(&x, m),
        );
        let ok = (0..m).all(|i| {
            let row = &y[i * (n1 + n2)..(i + 1) * (n1 + n2)];
            first_difference_ok(&row[..n1], &ya[i * n1..(i + 1) * n1])
                && first_difference_ok(&row[n1..], &yb[i * n2..(i + 1) * n2])
        });
        TestResult::from_bool(ok)
    }
    QuickCheck::new()
        .tests(100)
        .quickcheck(prop as fn(u64, u16, u8, u8, u8, u8) -> TestResult);
}

#[test]
fn layer_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + std::fmt::Debug>() {}
    check::<QuantizedLinear>();
    let l = layer(3, 40, 5, QuantType::Q4_0, true);
    let c = l.clone();
    let x = values(4, 40, 1.0);
    assert!(first_difference_ok(
        &l.forward_f32(&x, 1),
        &c.forward_f32(&x, 1)
    ));
}
