//! `QuantizedLinear::from_gguf_bytes` on arbitrary bytes, quantization type
//! (every format of `QuantType::ALL`), dimensions (zero, small, or arbitrary u64) and bias (any length and values).
//!
//! The call must return Ok exactly when none of the documented errors applies,
//! and otherwise one of them (zero or overflowing sizes, wrong byte or bias
//! length, NaN/Inf stored scale or minimum `NonFiniteScale` at its row and
//! block, NaN/Inf stored F16 / BF16 value `NonFiniteScale` at its row and
//! column, non-finite F32 weight or bias `NonFinite`).
//! An Ok layer gives back the input bytes exactly from `to_gguf_bytes()` and
//! dequantizes them as llama.cpp does.
#![no_main]

use blockq::kernels::formats::{FloatElem, PackedBlock};
use blockq::kernels::match_format;
use blockq::{Error, QuantType, QuantizedLinear, QK_K};
use blockq_fuzz::{
    assert_same, bias_errors, check_result, stored_blocks_error, stored_floats_error, Src,
};
use half::f16;
use libfuzzer_sys::fuzz_target;

/// Largest tensor (bytes) this target builds on purpose.
const MAX_BYTES: usize = 1 << 16;

/// Makes the stored scales and minimums (block formats) or values (float
/// formats) of `bytes` finite, by clearing the top bit of the exponent of
/// each NaN/Inf one; codes and a trailing partial block stay as they are.
fn make_finite(bytes: &mut [u8], qt: QuantType) {
    match_format!(
        qt,
        B => {
            for b in bytes.chunks_exact_mut(core::mem::size_of::<B>()) {
                let blk = bytemuck::pod_read_unaligned::<B>(b);
                let fix = |d: f16| {
                    if d.is_finite() {
                        d
                    } else {
                        f16::from_bits(d.to_bits() ^ 0x4000)
                    }
                };
                let s = blk.scales();
                let fixed = B::from_packed([fix(s[0]), fix(s[1])], |c| blk.packed_group(c));
                b.copy_from_slice(bytemuck::bytes_of(&fixed));
            }
        },
        E => {
            for b in bytes.chunks_exact_mut(core::mem::size_of::<E>()) {
                if !bytemuck::pod_read_unaligned::<E>(b).le_to_f32().is_finite() {
                    // Little-endian: the last byte holds the sign and the
                    // top exponent bits.
                    *b.last_mut().unwrap() ^= 0x40;
                }
            }
        },
    )
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
    // The layer also needs its f32-sized, panel-padded form (rows padded to
    // 256 values) to fit in usize.
    let fits = k
        .div_ceil(QK_K)
        .checked_mul(QK_K)
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
    // Stored NaN/Inf scales, minimums or values (only the first is
    // reported), and the weights as llama.cpp dequantizes them.
    let nb = k.div_ceil(qt.block_size());
    let len = nb * qt.block_size();
    let mut row = vec![0.0f32; len];
    let mut w = Vec::with_capacity(n * k);
    for r in bytes.chunks_exact(qt.row_bytes(k)) {
        qt.dequantize_bytes(r, &mut row);
        w.extend_from_slice(&row[..k]);
    }
    errors.extend(match_format!(
        qt,
        B => {
            let blocks: Vec<B> = bytes
                .chunks_exact(core::mem::size_of::<B>())
                .map(bytemuck::pod_read_unaligned)
                .collect();
            stored_blocks_error(&blocks, nb)
        },
        E => {
            // The stored little-endian values (native on the targets' CPUs).
            let v: Vec<E> = bytes
                .chunks_exact(core::mem::size_of::<E>())
                .map(bytemuck::pod_read_unaligned)
                .collect();
            stored_floats_error(&v, k)
        },
    ));
    if errors.is_empty() {
        Ok(w)
    } else {
        Err(errors)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let qt = QuantType::ALL[src.u8() as usize % QuantType::COUNT];
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
    let r = QuantizedLinear::from_gguf_bytes(&bytes, bias.as_deref(), k, n, qt);
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
