//! `QuantizedLinear::from_gguf_bytes` on arbitrary bytes, quantization type,
//! dimensions (zero, small, or arbitrary u64) and bias (any length and values).
//!
//! The call must return Ok exactly when none of the documented errors applies,
//! and otherwise one of them (zero or overflowing sizes, wrong byte or bias
//! length, NaN/Inf stored scale or f16 value, non-finite f32 weight or bias).
//! An Ok layer gives back the input bytes exactly from `to_gguf_bytes()` and
//! dequantizes them as llama.cpp does.
#![no_main]

use blockq::{BlockQ4_0, BlockQ8_0, Error, QuantType, QuantizedLinear, QK};
use blockq_fuzz::{assert_same, bias_errors, check_result, non_finite, Src};
use half::f16;
use libfuzzer_sys::fuzz_target;

/// Largest tensor (bytes) this target builds on purpose.
const MAX_BYTES: usize = 1 << 16;

/// Makes the stored scales / values of `bytes` finite.
fn make_finite(bytes: &mut [u8], qt: QuantType) {
    let fix16 = |b: &mut [u8]| {
        if !f16::from_le_bytes([b[0], b[1]]).is_finite() {
            b[1] ^= 0x40;
        }
    };
    match qt {
        QuantType::Q8_0 => bytes.chunks_exact_mut(34).for_each(fix16),
        QuantType::Q4_0 => bytes.chunks_exact_mut(18).for_each(fix16),
        QuantType::F16 => bytes.chunks_exact_mut(2).for_each(fix16),
        QuantType::F32 => bytes.chunks_exact_mut(4).for_each(|b| {
            if !f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite() {
                b[3] ^= 0x40;
            }
        }),
    }
}

/// The errors the documentation allows for these bytes, and the weights
/// (`[n, k]`, as llama.cpp dequantizes them) when there are none.
fn expected(
    bytes: &[u8],
    qt: QuantType,
    bias: Option<&[f32]>,
    k: usize,
    n: usize,
) -> Result<Vec<f32>, Vec<Error>> {
    let mut errors = Vec::new();
    if k == 0 {
        errors.push(Error::ZeroSize {
            what: "in_features",
        });
    }
    if n == 0 {
        errors.push(Error::ZeroSize {
            what: "out_features",
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // The layer also needs its f32-sized, panel-padded form to fit in usize.
    let fits = k
        .div_ceil(QK)
        .checked_mul(QK)
        .zip(n.div_ceil(16).checked_mul(16))
        .and_then(|(a, b)| a.checked_mul(b))
        .and_then(|v| v.checked_mul(4))
        .is_some();
    let want_len = (k.div_ceil(qt.block_size()))
        .checked_mul(qt.bytes_per_block())
        .and_then(|r| r.checked_mul(n));
    if !fits {
        errors.push(Error::SizeOverflow {
            what: "in_features * out_features",
        });
    }
    match want_len {
        None => errors.push(Error::SizeOverflow {
            what: "tensor bytes",
        }),
        Some(len) if len != bytes.len() => errors.push(Error::LengthMismatch {
            what: "GGUF tensor bytes",
            expected: len,
            actual: bytes.len(),
        }),
        Some(_) => {}
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    errors.extend(bias_errors(bias, n));
    let nb = k.div_ceil(QK);
    let mut w = Vec::with_capacity(n * k);
    let mut row = vec![0.0f32; nb * QK];
    match qt {
        QuantType::Q8_0 | QuantType::Q4_0 => {
            let size = qt.bytes_per_block();
            for (i, b) in bytes.chunks_exact(size).enumerate() {
                if !f16::from_le_bytes([b[0], b[1]]).is_finite() {
                    errors.push(Error::NonFiniteScale {
                        quant_type: qt,
                        row: i / nb,
                        block: i % nb,
                    });
                    break;
                }
            }
            for r in bytes.chunks_exact(size * nb) {
                if qt == QuantType::Q8_0 {
                    let blocks: Vec<BlockQ8_0> = r
                        .chunks_exact(size)
                        .map(bytemuck::pod_read_unaligned)
                        .collect();
                    blockq::dequantize_row_q8_0(&blocks, &mut row);
                } else {
                    let blocks: Vec<BlockQ4_0> = r
                        .chunks_exact(size)
                        .map(bytemuck::pod_read_unaligned)
                        .collect();
                    blockq::dequantize_row_q4_0(&blocks, &mut row);
                }
                w.extend_from_slice(&row[..k]);
            }
        }
        QuantType::F16 => {
            for (i, c) in bytes.chunks_exact(2).enumerate() {
                let h = f16::from_le_bytes([c[0], c[1]]);
                if !h.is_finite()
                    && errors
                        .iter()
                        .all(|e| !matches!(e, Error::NonFiniteScale { .. }))
                {
                    errors.push(Error::NonFiniteScale {
                        quant_type: qt,
                        row: i / k,
                        block: i % k,
                    });
                }
                w.push(h.to_f32());
            }
        }
        QuantType::F32 => {
            w.extend(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            errors.extend(non_finite("weight", &w));
        }
    }
    if errors.is_empty() {
        Ok(w)
    } else {
        Err(errors)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let qt = QuantType::ALL[src.u8() as usize % 4];
    let dims = src.u8();
    let (k, n) = if dims >= 0xF0 {
        (src.u64() as usize, src.u64() as usize)
    } else {
        (src.u16() as usize % 400, src.u8() as usize % 48)
    };
    let delta = src.u8() as i8 % 4;
    let flags = src.u8();
    let bias = match (flags >> 1) % 4 {
        0 | 1 => None,
        2 => Some(src.values(n.min(4096))),
        _ => Some(src.values(n.saturating_add_signed(delta as isize).min(4096))),
    };
    // The byte length the dimensions ask for (give or take a little), when small.
    let want = k
        .div_ceil(qt.block_size())
        .checked_mul(qt.bytes_per_block())
        .and_then(|r| r.checked_mul(n))
        .filter(|&l| l <= MAX_BYTES);
    let len = match want {
        Some(l) if delta.abs() < 3 => (l as isize + delta as isize).max(0) as usize,
        Some(l) => l,
        None => src.unread().min(MAX_BYTES),
    };
    let mut bytes = src.bytes(len);
    if flags & 1 != 0 {
        make_finite(&mut bytes, qt);
    }
    let case = format!(
        "from_gguf_bytes {qt} k={k} n={n} bytes={} bias={:?}",
        bytes.len(),
        bias.as_ref().map(|b| b.len())
    );
    let want = expected(&bytes, qt, bias.as_deref(), k, n);
    let r = QuantizedLinear::from_gguf_bytes(&bytes, qt, bias.as_deref(), k, n);
    let allowed = want.as_ref().err().cloned().unwrap_or_default();
    if let Some(layer) = check_result(r, &allowed, &case) {
        assert!(
            layer.to_gguf_bytes() == bytes,
            "to_gguf_bytes() differs from the input; {case}"
        );
        assert_eq!(layer.weight_bytes(), bytes.len(), "{case}");
        assert_eq!(
            (layer.in_features, layer.out_features, layer.quant_type),
            (k, n, qt),
            "{case}"
        );
        assert_eq!(layer.bias(), bias.as_deref(), "{case}");
        assert_same(
            &format!("dequantize_weights, {case}"),
            &layer.dequantize_weights(),
            &want.unwrap(),
            k,
        );
    }
});
