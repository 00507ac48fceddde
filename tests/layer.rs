//! QuantizedLinear: construction, forward against f64, invariances, errors.

mod common;

use blockq::{BlockQ4_0, BlockQ8_0, Error, Isa, QuantType, QuantizedLinear};
use common::*;
use half::f16;

const SHAPES: &[(usize, usize)] = &[(32, 16), (64, 33), (100, 7), (31, 1), (257, 40), (1, 3)];

#[test]
fn forward_matches_f64_reference_within_format_bounds() {
    for qt in QuantType::ALL {
        for &(k, n) in SHAPES {
            let w = values(1, n * k, 1.0);
            let b = values(2, n, 0.5);
            let layer = QuantizedLinear::from_linear_params(&w, Some(&b), k, n, qt);
            for batch in [1, 3] {
                let x = values(3 + batch as u64, batch * k, 2.0);
                let y = layer.forward_f32(&x, batch);
                for i in 0..batch {
                    check_against_f64(
                        &layer,
                        &w,
                        Some(&b),
                        &x[i * k..(i + 1) * k],
                        &y[i * n..(i + 1) * n],
                    );
                }
            }
        }
    }
}

#[test]
fn batch_rows_equal_rows_forwarded_alone() {
    for qt in QuantType::ALL {
        for &(k, n) in SHAPES {
            let layer = layer(7, k, n, qt, true);
            for batch in [2, 5, 9, 17] {
                let x = values(8, batch * k, 3.0);
                let y = layer.forward_f32(&x, batch);
                for i in 0..batch {
                    let alone = layer.forward_f32(&x[i * k..(i + 1) * k], 1);
                    assert_same_bits(
                        &y[i * n..(i + 1) * n],
                        &alone,
                        &format!("{qt} {k}x{n} batch {batch} row {i}"),
                    );
                }
            }
        }
    }
}

#[test]
fn thread_count_does_not_change_bits() {
    // Large enough to take the parallel path.
    let (k, n, batch) = (1024, 272, 16);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let two = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let three = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    // Many panels (split over panels) and few panels with a large batch (split
    // over 32-row tiles as well).
    for (k, n, batch) in [(k, n, batch), (1024, 20, 256)] {
        for qt in QuantType::ALL {
            let layer = layer(11, k, n, qt, true);
            let x = values(12, batch * k, 1.0);
            let y1 = one.install(|| layer.forward_f32(&x, batch));
            let y2 = two.install(|| layer.forward_f32(&x, batch));
            let y3 = three.install(|| layer.forward_f32(&x, batch));
            assert_same_bits(&y1, &y2, &format!("{qt} {k}x{n} m={batch}: 1 vs 2 threads"));
            assert_same_bits(&y1, &y3, &format!("{qt} {k}x{n} m={batch}: 1 vs 3 threads"));
        }
    }
}

#[test]
fn shared_layer_forwards_concurrently() {
    let layer = layer(21, 512, 300, QuantType::Q4_0, true);
    let inputs: Vec<Vec<f32>> = (0..4).map(|t| values(30 + t, 3 * 512, 1.0)).collect();
    let sequential: Vec<Vec<f32>> = inputs.iter().map(|x| layer.forward_f32(x, 3)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .iter()
            .map(|x| {
                let layer = &layer;
                s.spawn(move || (0..5).map(|_| layer.forward_f32(x, 3)).collect::<Vec<_>>())
            })
            .collect();
        for (h, want) in handles.into_iter().zip(&sequential) {
            for got in h.join().unwrap() {
                assert_same_bits(&got, want, "concurrent forward");
            }
        }
    });
}

/// Batched calls keep their large buffers off the stack: a thread with a
/// 128 KiB stack (tile calls run inline there: the layer is below the
/// parallel threshold) gives the same bits as the main thread.
#[test]
fn batched_forward_runs_on_a_small_stack() {
    for qt in QuantType::ALL {
        let layer = layer(41, 300, 150, qt, true);
        let x = values(42, 40 * 300, 1.0);
        let want = layer.forward_f32(&x, 40);
        let got = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn({
                let (layer, x) = (layer.clone(), x.clone());
                move || layer.forward_f32(&x, 40)
            })
            .unwrap()
            .join()
            .unwrap();
        assert_same_bits(&got, &want, &format!("{qt} on a 128 KiB stack"));
    }
}

#[test]
fn gguf_bytes_round_trip_exactly() {
    for qt in QuantType::ALL {
        let (k, n) = (96, 19);
        let a = layer(40, k, n, qt, false);
        let bytes = a.to_gguf_bytes();
        assert_eq!(bytes.len(), a.weight_bytes());
        let b = QuantizedLinear::from_gguf_bytes(&bytes, None, k, n, qt).unwrap();
        assert_eq!(b.to_gguf_bytes(), bytes);
        assert_same_bits(
            &a.dequantize_weights(),
            &b.dequantize_weights(),
            "dequantize",
        );
        let x = values(41, 2 * k, 1.0);
        assert_same_bits(&a.forward_f32(&x, 2), &b.forward_f32(&x, 2), "forward");
    }
}

#[test]
fn quantization_matches_llama_cpp_reference_bytes() {
    let (k, n) = (64, 5);
    let w = values(50, n * k, 4.0);
    let mut q8 = vec![
        BlockQ8_0 {
            d: f16::ZERO,
            qs: [0; 32]
        };
        n * 2
    ];
    blockq::quantize_row_q8_0(&w, &mut q8);
    let layer = QuantizedLinear::from_linear_params(&w, None, k, n, QuantType::Q8_0);
    assert_eq!(layer.to_gguf_bytes(), bytemuck::cast_slice::<_, u8>(&q8));
    let mut q4 = vec![
        BlockQ4_0 {
            d: f16::ZERO,
            qs: [0; 16]
        };
        n * 2
    ];
    blockq::quantize_row_q4_0(&w, &mut q4);
    let layer = QuantizedLinear::from_linear_params(&w, None, k, n, QuantType::Q4_0);
    assert_eq!(layer.to_gguf_bytes(), bytemuck::cast_slice::<_, u8>(&q4));
    let mut deq = vec![0.0; n * k];
    blockq::dequantize_row_q4_0(&q4, &mut deq);
    assert_same_bits(&layer.dequantize_weights(), &deq, "Q4_0 dequantize");
}

#[test]
fn ragged_rows_are_zero_padded() {
    let (k, n) = (45, 3);
    let w = values(60, n * k, 1.0);
    let layer = QuantizedLinear::from_linear_params(&w, None, k, n, QuantType::Q8_0);
    assert_eq!(layer.dequantize_weights().len(), n * k);
    assert_eq!(layer.weight_bytes(), n * 2 * 34);
    // Row r equals the quantization of the row padded with zeros.
    let mut padded = w[..k].to_vec();
    padded.resize(64, 0.0);
    let mut blocks = vec![
        BlockQ8_0 {
            d: f16::ZERO,
            qs: [0; 32]
        };
        2
    ];
    blockq::quantize_row_q8_0(&padded, &mut blocks);
    assert_eq!(
        &layer.to_gguf_bytes()[..68],
        bytemuck::cast_slice::<_, u8>(&blocks)
    );
}

#[test]
fn sizes_and_ratios() {
    let l = layer(70, 4096, 32, QuantType::Q4_0, false);
    assert_eq!(l.weight_bytes(), 32 * 128 * 18);
    assert!((l.compression_ratio() - 32.0 / 4.5).abs() < 1e-5);
    let l = layer(70, 64, 4, QuantType::F16, true);
    assert_eq!(l.weight_bytes(), 64 * 4 * 2);
    assert_eq!(l.compression_ratio(), 2.0);
    assert_eq!(
        (l.in_features, l.out_features, l.quant_type),
        (64, 4, QuantType::F16)
    );
    assert_eq!(l.bias().unwrap().len(), 4);
    let dbg = format!("{l:?}");
    assert!(dbg.contains("F16") && dbg.contains("isa"), "{dbg}");
}

#[test]
fn nan_and_inf_inputs_give_nan_outputs() {
    let l = layer(80, 64, 4, QuantType::Q8_0, false);
    let mut x = values(81, 64, 1.0);
    x[40] = f32::INFINITY;
    let y = l.forward_f32(&x, 1);
    assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
    let f = layer(80, 64, 4, QuantType::F32, false);
    x[40] = f32::NAN;
    assert!(f.forward_f32(&x, 1).iter().all(|v| v.is_nan()));
}

#[test]
fn every_error_variant_is_reachable() {
    let w = values(90, 64, 1.0);
    let q = QuantType::Q8_0;
    let err = |r: Result<QuantizedLinear, Error>| r.unwrap_err();
    assert!(matches!(
        err(QuantizedLinear::try_from_linear_params(&w, None, 32, 3, q)),
        Error::LengthMismatch {
            what: "weight",
            expected: 96,
            actual: 64
        }
    ));
    assert!(matches!(
        err(QuantizedLinear::try_from_linear_params(&w, None, 0, 3, q)),
        Error::ZeroSize {
            what: "in_features"
        }
    ));
    assert!(matches!(
        err(QuantizedLinear::try_from_linear_params(
            &w,
            None,
            usize::MAX / 2,
            3,
            q
        )),
        Error::SizeOverflow { .. }
    ));
    let mut bad = w.clone();
    bad[7] = f32::NAN;
    assert!(matches!(
        err(QuantizedLinear::try_from_linear_params(
            &bad, None, 32, 2, q
        )),
        Error::NonFinite {
            what: "weight",
            index: 7,
            ..
        }
    ));
    assert!(matches!(
        err(QuantizedLinear::try_from_linear_params(
            &w,
            Some(&[1.0, f32::INFINITY]),
            32,
            2,
            q
        )),
        Error::NonFinite {
            what: "bias",
            index: 1,
            ..
        }
    ));
    let mut huge = w.clone();
    huge[33] = 1e7; // 1e7 / 127 > f16::MAX
    assert!(matches!(
        err(QuantizedLinear::try_from_linear_params(
            &huge, None, 32, 2, q
        )),
        Error::OutOfRange {
            row: 1,
            block: 0,
            ..
        }
    ));
    // Rows are checked as they are quantized; a NaN in a later row is
    // still the error reported (with its index in the whole matrix) over
    // an out-of-range scale in an earlier one.
    let mut both = w.clone();
    both[3] = 1e7;
    both[40] = f32::NAN;
    assert!(matches!(
        err(QuantizedLinear::try_from_linear_params(
            &both, None, 32, 2, q
        )),
        Error::NonFinite {
            what: "weight",
            index: 40,
            ..
        }
    ));
    huge[33] = 7e4; // > f16::MAX
    assert!(matches!(
        err(QuantizedLinear::try_from_linear_params(
            &huge,
            None,
            32,
            2,
            QuantType::F16
        )),
        Error::OutOfRange {
            row: 1,
            block: 1,
            ..
        }
    ));
    let mut bytes = QuantizedLinear::from_linear_params(&w, None, 32, 2, q).to_gguf_bytes();
    bytes[34..36].copy_from_slice(&f16::NAN.to_le_bytes());
    assert!(matches!(
        err(QuantizedLinear::from_gguf_bytes(&bytes, None, 32, 2, q)),
        Error::NonFiniteScale {
            row: 1,
            block: 0,
            ..
        }
    ));
    assert!(matches!(
        err(QuantizedLinear::from_gguf_bytes(
            &bytes[1..],
            None,
            32,
            2,
            q
        )),
        Error::LengthMismatch { .. }
    ));
    assert!(matches!(
        Error::from("q3".parse::<QuantType>().unwrap_err()),
        Error::UnknownQuantType(_)
    ));
    assert!(matches!(
        blockq::dispatch::parse_isa("3dnow").unwrap_err(),
        Error::UnknownIsa(_)
    ));
    let foreign = if cfg!(target_arch = "x86_64") {
        Isa::Neon
    } else {
        Isa::Avx2
    };
    let l = QuantizedLinear::from_linear_params(&w, None, 32, 2, q);
    assert!(matches!(
        l.clone().with_isa(foreign).unwrap_err(),
        Error::IsaUnavailable { .. }
    ));

    // forward errors
    let mut out = vec![0.0; 4];
    assert!(matches!(
        l.forward_into(&w[..63], 2, &mut out),
        Err(Error::LengthMismatch { what: "input", .. })
    ));
    assert!(matches!(
        l.forward_into(&w, 2, &mut out[..3]),
        Err(Error::LengthMismatch { what: "output", .. })
    ));
    assert!(matches!(
        l.forward_into(&w, 0, &mut out),
        Err(Error::ZeroSize { what: "batch_size" })
    ));
    assert!(matches!(
        l.try_forward_f32(&w, usize::MAX),
        Err(Error::SizeOverflow { .. })
    ));
}

#[test]
#[should_panic(expected = "forward_f32: input: expected length 64, got 63")]
fn forward_f32_panics_with_clear_message() {
    let l = layer(95, 32, 2, QuantType::Q4_0, false);
    l.forward_f32(&values(96, 63, 1.0), 2);
}

#[test]
#[should_panic(expected = "from_linear_params: weight: expected length 64, got 63")]
fn from_linear_params_panics_with_clear_message() {
    QuantizedLinear::from_linear_params(&values(97, 63, 1.0), None, 32, 2, QuantType::Q8_0);
}

#[test]
fn extreme_gguf_codes_are_exact() {
    // Q8_0 codes of -128 (never produced by the quantizer, legal in files).
    let (k, n) = (64, 17);
    let mut blocks = vec![
        BlockQ8_0 {
            d: f16::from_f32(0.5),
            qs: [-128; 32]
        };
        n * 2
    ];
    blocks[5].qs[3] = 127;
    let l = QuantizedLinear::from_q8_0_blocks(&blocks, None, k, n).unwrap();
    let x = vec![3.0f32; k];
    let y = l.forward_f32(&x, 1);
    // acts: amax 3 -> codes 127, d = 3/127; isum = -128*127*32 per block.
    let s = 0.5f32 * (3.0f32 / 127.0);
    let want = s.mul_add(
        (-128 * 127 * 32) as f32,
        s.mul_add((-128 * 127 * 32) as f32, 0.0),
    );
    assert_eq!(y[0].to_bits(), want.to_bits());
    let w = l.dequantize_weights();
    assert_eq!(w[0], -64.0);
}

/// A float tensor's NaN or infinity is an error naming the first one,
/// wherever it lies: in a whole panel's AVX-512 tiles (checked while they
/// are packed), in a row's tail past them, or in the last, partial panel;
/// a finite tensor packs the values it was given.
#[test]
fn float_gguf_bytes_report_their_first_non_finite_value() {
    let (n, k) = (40, 70);
    let w: Vec<f32> = (0..n * k)
        .map(|i| ((i * 37) % 101) as f32 / 8.0 - 6.0)
        .collect();
    for q in [QuantType::F16, QuantType::BF16, QuantType::F32] {
        let enc = |x: f32| -> Vec<u8> {
            match q {
                QuantType::F16 => f16::from_f32(x).to_le_bytes().to_vec(),
                QuantType::BF16 => half::bf16::from_f32(x).to_le_bytes().to_vec(),
                _ => x.to_le_bytes().to_vec(),
            }
        };
        let size = enc(0.0).len();
        let bytes: Vec<u8> = w.iter().flat_map(|&x| enc(x)).collect();
        let layer = QuantizedLinear::from_gguf_bytes(&bytes, None, k, n, q).unwrap();
        assert_eq!(
            layer.dequantize_weights(),
            w,
            "{q}: finite values round-trip"
        );
        // Row 3 k-step 5 (a tile), row 17 k-step 66 (a tail), row 35 (the
        // partial panel); then two at once, the earlier reported.
        for bad in [
            vec![3 * k + 5],
            vec![17 * k + 66],
            vec![35 * k + 1],
            vec![20 * k + 9, 2 * k + 68],
        ] {
            for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut b = bytes.clone();
                for &i in &bad {
                    b[i * size..(i + 1) * size].copy_from_slice(&enc(special));
                }
                let first = *bad.iter().min().unwrap();
                let e = QuantizedLinear::from_gguf_bytes(&b, None, k, n, q).unwrap_err();
                let ok = match e {
                    Error::NonFinite { index, .. } => q == QuantType::F32 && index == first,
                    Error::NonFiniteScale { row, block, .. } => {
                        q != QuantType::F32 && (row, block) == (first / k, first % k)
                    }
                    _ => false,
                };
                assert!(ok, "{q} {special} at {bad:?}: {e}");
            }
        }
    }
}
