//! Differential tests: every ISA this CPU runs must give the scalar bits.
//!
//! ISAs the CPU lacks (or this architecture has no kernels for) are reported as
//! SKIPPED on stderr (run with `--nocapture` to see the report).

mod common;

use blockq::kernels::formats::PackedBlock;
use blockq::kernels::{act::ActBlock, match_format, Kernels, WeightFormat};
use blockq::{dispatch, BlockQ4_0, BlockQ8_0, Isa, QuantType, QuantizedLinear, QK_K};
use bytemuck::Zeroable;
use common::*;
use half::f16;
use quickcheck::{QuickCheck, TestResult};

/// Shapes around every tile edge: K tails, N not a multiple of 16, odd batches
/// (17: the smallest batch whose VNNI tiles split a pass's codes and widen
/// its scales once, in the first row group, for the others).
#[test]
fn every_isa_matches_scalar_on_edge_shapes() {
    let isas = isas_under_test();
    let mut cases = 0;
    for qt in QuantType::ALL {
        for &k in &[1, 31, 32, 33, 64, 95, 160, 512] {
            for &n in &[1, 15, 16, 17, 33, 64, 79] {
                let layer = layer((k * 131 + n) as u64, k, n, qt, n % 2 == 1);
                for &batch in &[1, 2, 3, 5, 8, 13, 17] {
                    let x = values((k + n + batch) as u64, batch * k, 2.5);
                    compare_layer(
                        &layer,
                        &x,
                        batch,
                        &isas,
                        &format!("{qt} k={k} n={n} m={batch}"),
                    );
                    cases += 1;
                }
            }
        }
    }
    for isa in &isas {
        // Formats this ISA has no kernel for ran the scalar kernel: say so,
        // so that "equal to scalar" is not read as a SIMD result.
        let kernels = dispatch::kernels(*isa).unwrap();
        let fallback: Vec<&str> = QuantType::ALL
            .iter()
            .filter(|&&q| !kernels.has_kernel(q))
            .map(|q| q.name())
            .collect();
        let note = if fallback.is_empty() {
            "every format on its own kernels".to_string()
        } else {
            format!("scalar fallback for {}", fallback.join(", "))
        };
        eprintln!("isa {isa}: {cases} layer cases equal to scalar ({note})");
    }
}

/// Batches past one 32-row group and one 128-row tile call, K past several
/// 128-step chunks and 16-block passes, N past one 8-panel tile call (with a
/// partial last panel), on one thread (whole tile calls) and on the default pool.
#[test]
fn every_isa_matches_scalar_on_large_batches() {
    let isas = isas_under_test();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    for qt in QuantType::ALL {
        for &(k, n, batches) in &[
            (300, 40, &[32, 33, 70][..]),
            (1000, 33, &[32, 33, 70]),
            (1100, 150, &[33, 135]),
        ] {
            let layer = layer((k + n) as u64, k, n, qt, true);
            for &batch in batches {
                let x = values((k * batch) as u64, batch * k, 1.5);
                let what = format!("{qt} k={k} n={n} m={batch}");
                compare_layer(&layer, &x, batch, &isas, &what);
                one.install(|| {
                    compare_layer(&layer, &x, batch, &isas, &format!("{what}, 1 thread"))
                });
            }
        }
    }
}

/// The k-quants over whole and partial super-blocks up to K = 2304, N not a
/// multiple of the panel, batches of 1 to 130 rows.
#[test]
fn every_isa_matches_scalar_on_k_quant_shapes() {
    let isas = isas_under_test();
    let kquants = QuantType::ALL
        .into_iter()
        .filter(|q| q.block_size() == QK_K);
    for qt in kquants {
        for &k in &[256, 300, 2304] {
            let layer = layer(k as u64, k, 33, qt, true);
            for &batch in &[1, 9, 130] {
                let x = values((k * batch) as u64, batch * k, 1.5);
                compare_layer(
                    &layer,
                    &x,
                    batch,
                    &isas,
                    &format!("{qt} k={k} n=33 m={batch}"),
                );
            }
        }
    }
}

/// Every tile height (1 thread: a batch of `m <= 128` rows is one tile of
/// `m` rows), so that every row count and row-group split a kernel can be
/// asked for runs: the tiles instantiate only the counts they expect.
#[test]
fn every_isa_matches_scalar_at_every_tile_height() {
    let isas = isas_under_test();
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    // K: a partial block (floats: one chunk); N: a panel pair plus one panel.
    let (k, n) = (40, 48);
    for qt in QuantType::ALL {
        let layer = layer(7, k, n, qt, false);
        let x = values(11, 130 * k, 1.5);
        one.install(|| {
            for m in 1..=130 {
                let what = format!("{qt} k={k} n={n} m={m}, 1 thread");
                compare_layer(&layer, &x[..m * k], m, &isas, &what);
            }
        });
    }
}

#[test]
fn every_isa_matches_scalar_on_extreme_codes() {
    let isas = isas_under_test();
    let (k, n) = (96, 35);
    let nb = 3;
    // Q8_0 codes -128 / -127 / 127 and Q4_0 nibbles 0 / 15 everywhere.
    let pattern = [-128i8, -127, 127, 0, 1, -1];
    let q8: Vec<BlockQ8_0> = (0..n * nb)
        .map(|i| BlockQ8_0 {
            d: f16::from_f32(if i % 7 == 0 { -2.0 } else { 0.75 }),
            qs: core::array::from_fn(|j| pattern[(i + j) % pattern.len()]),
        })
        .collect();
    let q4: Vec<BlockQ4_0> = (0..n * nb)
        .map(|i| BlockQ4_0 {
            d: f16::from_f32(if i % 5 == 0 { -1.5 } else { 3.0 }),
            qs: core::array::from_fn(|j| [0x00, 0xFF, 0x0F, 0xF0][(i + j) % 4]),
        })
        .collect();
    let l8 = QuantizedLinear::from_q8_0_blocks(&q8, None, k, n).unwrap();
    let l4 = QuantizedLinear::from_q4_0_blocks(&q4, Some(&values(1, n, 1.0)), k, n).unwrap();
    // Every block format: code bytes 0x00 / 0xFF / 0x0F / 0xF0 everywhere
    // (Q5: every high-bit pattern too), scales and minimums of both signs.
    let extreme = |qt: QuantType| -> Option<QuantizedLinear> {
        match_format!(
            qt,
            B => {
                let blocks: Vec<B> = (0..n * k.div_ceil(B::VALUES))
                    .map(|i| {
                        let d = f16::from_f32(if i % 5 == 0 { -1.5 } else { 3.0 });
                        let m = f16::from_f32(if i % 3 == 0 { 40.0 } else { -7.25 });
                        B::from_packed([d, m], |c| {
                            core::array::from_fn(|j| [0x00, 0xFF, 0x0F, 0xF0][(i + c + j) % 4])
                        })
                    })
                    .collect();
                Some(QuantizedLinear::from_blocks(&blocks, Some(&values(2, n, 1.0)), k, n).unwrap())
            },
            E => None,
        )
    };
    let layers: Vec<(QuantType, QuantizedLinear)> = QuantType::ALL
        .into_iter()
        .filter_map(|qt| Some((qt, extreme(qt)?)))
        .collect();
    // Inputs whose codes hit +-127 in every position, and NaN / Inf / subnormal blocks.
    for batch in [1, 4, 7] {
        let mut x: Vec<f32> = (0..batch * k)
            .map(|i| if i % 2 == 0 { 5.0 } else { -5.0 })
            .collect();
        x[k - 1] = f32::from_bits(1); // subnormal
        if batch > 1 {
            x[k + 3] = f32::NAN;
            x[2 * k - 40] = f32::NEG_INFINITY;
        }
        compare_layer(&l8, &x, batch, &isas, "extreme Q8_0");
        compare_layer(&l4, &x, batch, &isas, "extreme Q4_0");
        for (qt, l) in &layers {
            compare_layer(l, &x, batch, &isas, &format!("extreme {qt} codes"));
        }
    }
}

#[test]
fn every_isa_quantizes_activations_like_scalar() {
    let isas = isas_under_test();
    let scalar = Kernels::for_isa(Isa::Scalar).unwrap();
    let mut x = values(5, 40 * 32 + 7, 10.0);
    // Ties at x * id = n + 0.5, special values, tiny and huge blocks.
    for (j, v) in x.iter_mut().enumerate().take(32) {
        *v = if j == 0 { 127.0 } else { j as f32 + 0.5 - 16.0 };
    }
    let specials = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        f32::MIN_POSITIVE,
        f32::from_bits(1),
        f32::MAX,
        -f32::MAX,
        1e-37,
    ];
    for (i, s) in specials.iter().enumerate() {
        x[64 + i * 33] = *s;
    }
    for v in &mut x[1000..1032] {
        *v = 1e-38; // whole block below the tiny threshold
    }
    for k in [1usize, 7, 32, 33, 100, x.len()] {
        let rows = x.len() / k;
        let nb = k.div_ceil(32);
        for format in WeightFormat::ALL
            .into_iter()
            .filter(|f| f.is_block_quantized())
        {
            let mut want = vec![ActBlock::zeroed(); rows * nb];
            scalar
                .quantize_rows(&x[..rows * k], k, format, &mut want)
                .unwrap();
            for &isa in &isas {
                let mut got = vec![ActBlock::zeroed(); rows * nb];
                let kernels = Kernels::for_isa(isa).unwrap();
                kernels
                    .quantize_rows(&x[..rows * k], k, format, &mut got)
                    .unwrap();
                for (b, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert_eq!(
                        bytemuck::bytes_of(g),
                        bytemuck::bytes_of(w),
                        "{isa}: activation block {b} (k={k}, {format:?})"
                    );
                }
            }
        }
    }
}

/// Random layers and inputs: every ISA equals scalar (quickcheck).
#[test]
fn quickcheck_every_isa_matches_scalar() {
    isas_under_test();
    fn prop(seed: u64, k: u16, n: u8, m: u8, fmt: u8, scale_exp: i8) -> TestResult {
        let isas: Vec<Isa> = dispatch::available()
            .into_iter()
            .filter(|&i| i != Isa::Scalar)
            .collect();
        let k = (k % 300) as usize + 1;
        let n = (n % 70) as usize + 1;
        let m = (m % 20) as usize + 1;
        let qt = QuantType::ALL[fmt as usize % QuantType::ALL.len()];
        let scale = 2f32.powi((scale_exp % 20) as i32);
        let w = values(seed, n * k, scale);
        let layer = match QuantizedLinear::try_from_linear_params(
            &w,
            Some(&values(seed ^ 1, n, 1.0)),
            k,
            n,
            qt,
        ) {
            Ok(l) => l,
            Err(_) => return TestResult::discard(),
        };
        let x = values(seed ^ 2, m * k, 1.0 / scale);
        compare_layer(
            &layer,
            &x,
            m,
            &isas,
            &format!("quickcheck {qt} k={k} n={n} m={m}"),
        );
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(150)
        .quickcheck(prop as fn(u64, u16, u8, u8, u8, i8) -> TestResult);
}
