//! Activation quantization and the weight quantizers on arbitrary f32 rows
//! (every bit pattern: NaN, ±Inf, subnormals, -0.0; every length).
//!
//! - `Kernels::quantize_rows` of every available ISA gives the scalar
//!   `ActBlock` bytes, and the scalar blocks follow the canonical definition
//!   (crate docs of blockq-kernels). Wrong shapes are errors on every ISA.
//! - llama.cpp's quantizers `quantize_row_q8_0/q4_0` (rows padded to 32) and
//!   the dequantizers run on anything without panicking.
//! - `QuantizedLinear::try_from_linear_params` for Q8_0/Q4_0/F16/F32 returns Ok
//!   exactly when the documented errors do not apply, else one of them; an Ok
//!   layer holds exactly the bytes of the reference quantizer.
#![no_main]

use blockq::kernels::act::{ActBlock, NAN_SCALE_BITS, TINY_AMAX_BITS};
use blockq::kernels::{Kernels, WeightFormat};
use blockq::{dispatch, BlockQ4_0, BlockQ8_0, Error, Isa, QuantType, QuantizedLinear, QK};
use blockq_fuzz::{assert_same, bias_errors, check_result, non_finite, Src};
use bytemuck::Zeroable;
use half::f16;
use libfuzzer_sys::fuzz_target;

/// Checks one scalar block against the canonical definition, for weights whose
/// unsigned codes carry `offset` (128 for Q8_0, 8 for Q4_0).
fn check_canonical(x: &[f32], offset: i32, blk: &ActBlock, at: &str) {
    let mut v = [0.0f32; QK];
    v[..x.len()].copy_from_slice(x);
    let amax = v.iter().map(|x| x.to_bits() & 0x7FFF_FFFF).max().unwrap();
    let (d, codes): (u32, [i8; QK]) = if amax >= 0x7F80_0000 {
        (NAN_SCALE_BITS, [0; QK])
    } else if amax < TINY_AMAX_BITS {
        (0, [0; QK])
    } else {
        let a = f32::from_bits(amax);
        let id = 127.0 / a;
        (
            (a / 127.0).to_bits(),
            core::array::from_fn(|j| {
                let q = (v[j] * id).round_ties_even();
                assert!(
                    (-127.0..=127.0).contains(&q),
                    "code {q} out of range at {at}"
                );
                q as i8
            }),
        )
    };
    let sum: i32 = codes.iter().map(|&q| q as i32).sum();
    let want = ActBlock {
        qs: codes,
        d: f32::from_bits(d),
        corr: -offset * sum,
    };
    assert!(
        bytemuck::bytes_of(blk) == bytemuck::bytes_of(&want),
        "scalar activation block differs from the canonical definition at {at}: \
         got {blk:?}, want {want:?}, input {x:?}"
    );
}

/// Activation quantization for `format` (Q8_0 or Q4_0 by `misuse >> 3`): every
/// ISA equals scalar, scalar equals the definition, `misuse % 8` in 0..5 makes
/// one argument wrong (k = 0, block count off by one, values not whole rows, a
/// float weight format), which every ISA must reject.
fn check_activations(x: &[f32], k: usize, misuse: u8) {
    let scalar = Kernels::for_isa(Isa::Scalar).expect("scalar kernels");
    let (format, offset) = if misuse & 8 == 0 {
        (WeightFormat::Q8_0, 128)
    } else {
        (WeightFormat::Q4_0, 8)
    };
    let rows = x.len() / k;
    let nb = k.div_ceil(QK);
    let bad: Option<(usize, usize, usize, WeightFormat)> = match misuse % 8 {
        0 => Some((0, rows * k, rows * nb, format)),
        1 => Some((k, rows * k, rows * nb + 1, format)),
        2 if rows * nb > 0 => Some((k, rows * k, rows * nb - 1, format)),
        3 if k > 1 && rows > 0 => Some((k, rows * k - 1, rows * nb, format)),
        4 => Some((k, rows * k, rows * nb, WeightFormat::F16)),
        5 => Some((k, rows * k, rows * nb, WeightFormat::F32)),
        _ => None,
    };
    for isa in dispatch::available() {
        let kern = Kernels::for_isa(isa).unwrap_or_else(|e| panic!("{isa} available but {e}"));
        if let Some((bk, len, blocks, f)) = bad {
            let mut out = vec![ActBlock::zeroed(); blocks];
            let r = kern.quantize_rows(&x[..len], bk, f, &mut out);
            assert!(
                r.is_err(),
                "{isa}: quantize_rows accepted k={bk}, {len} values, {blocks} blocks, {f:?}"
            );
        }
    }
    let mut want = vec![ActBlock::zeroed(); rows * nb];
    scalar
        .quantize_rows(&x[..rows * k], k, format, &mut want)
        .unwrap_or_else(|e| panic!("scalar quantize_rows rejected valid shapes: {e}"));
    for (b, blk) in want.iter().enumerate() {
        let (r, c) = (b / nb, (b % nb) * QK);
        let row = &x[r * k..(r + 1) * k];
        check_canonical(
            &row[c..(c + QK).min(k)],
            offset,
            blk,
            &format!("row {r} block {}", b % nb),
        );
    }
    for isa in dispatch::available() {
        let mut got = vec![ActBlock::zeroed(); rows * nb];
        Kernels::for_isa(isa)
            .unwrap()
            .quantize_rows(&x[..rows * k], k, format, &mut got)
            .unwrap_or_else(|e| panic!("{isa}: quantize_rows rejected valid shapes: {e}"));
        for (b, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                bytemuck::bytes_of(g) == bytemuck::bytes_of(w),
                "MISMATCH {isa} vs scalar activation block {} of row {} (k={k}, {format:?}): got {g:?} \
                 want {w:?}, input {:?}",
                b % nb,
                b / nb,
                &x[(b / nb) * k + (b % nb) * QK
                    ..((b / nb) * k + (b % nb + 1) * QK).min((b / nb + 1) * k)]
            );
        }
    }
}

/// The reference bytes of `w` (`[n, k]`) in `qt`, or the errors to expect.
fn reference(w: &[f32], k: usize, n: usize, qt: QuantType) -> Result<Vec<u8>, Vec<Error>> {
    if let Some(e) = non_finite("weight", w) {
        return Err(vec![e]);
    }
    let nb = k.div_ceil(QK);
    let mut bytes = Vec::new();
    let mut padded = vec![0.0f32; nb * QK];
    for r in 0..n {
        padded[..k].copy_from_slice(&w[r * k..(r + 1) * k]);
        let overflow = |block| Error::OutOfRange {
            quant_type: qt,
            row: r,
            block,
        };
        match qt {
            QuantType::Q8_0 => {
                let mut b = vec![BlockQ8_0::zeroed(); nb];
                blockq::quantize_row_q8_0(&padded, &mut b);
                if let Some(i) = b.iter().position(|b| !b.d.is_finite()) {
                    return Err(vec![overflow(i)]);
                }
                bytes.extend_from_slice(bytemuck::cast_slice(&b));
            }
            QuantType::Q4_0 => {
                let mut b = vec![BlockQ4_0::zeroed(); nb];
                blockq::quantize_row_q4_0(&padded, &mut b);
                if let Some(i) = b.iter().position(|b| !b.d.is_finite()) {
                    return Err(vec![overflow(i)]);
                }
                bytes.extend_from_slice(bytemuck::cast_slice(&b));
            }
            QuantType::F16 => {
                for (c, &v) in padded[..k].iter().enumerate() {
                    let h = f16::from_f32(v);
                    if !h.is_finite() {
                        return Err(vec![overflow(c)]);
                    }
                    bytes.extend_from_slice(&h.to_le_bytes());
                }
            }
            QuantType::F32 => {
                for v in &padded[..k] {
                    bytes.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    Ok(bytes)
}

fn check_layers(w: &[f32], k: usize, n: usize, bias: Option<&[f32]>) {
    for qt in QuantType::ALL {
        let case = format!(
            "try_from_linear_params {qt} k={k} n={n} bias={:?}",
            bias.map(|b| b.len())
        );
        let want = reference(w, k, n, qt);
        let mut allowed = bias_errors(bias, n);
        if let Err(e) = &want {
            allowed.extend(e.iter().cloned());
        }
        let r = QuantizedLinear::try_from_linear_params(w, bias, k, n, qt);
        if let Some(layer) = check_result(r, &allowed, &case) {
            let want = want.unwrap();
            assert!(
                layer.to_gguf_bytes() == want,
                "layer bytes differ from the reference quantizer; {case}"
            );
            assert_eq!(
                (layer.in_features, layer.out_features, layer.quant_type),
                (k, n, qt),
                "{case}"
            );
            let deq = layer.dequantize_weights();
            assert_eq!(deq.len(), n * k, "{case}");
            if qt == QuantType::F32 {
                assert_same(&format!("dequantize_weights, {case}"), &deq, w, k);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut src = Src::new(data);
    let k = src.u16() as usize % 1100 + 1;
    let m = (src.u8() as usize % 8 + 1).min((8192 / k).max(1));
    let misuse = src.u8();
    let flags = src.u8();
    let x = src.values(m * k);
    let bias = (flags & 1 != 0).then(|| {
        let len = if flags & 2 != 0 { m + 1 } else { m };
        src.values(len)
    });

    check_activations(&x, k, misuse);

    // llama.cpp's quantizers and dequantizers: any values, no panic.
    let nb = k.div_ceil(QK);
    let mut padded = vec![0.0f32; nb * QK];
    let mut out = vec![0.0f32; nb * QK];
    let (mut q8, mut q4) = (vec![BlockQ8_0::zeroed(); nb], vec![BlockQ4_0::zeroed(); nb]);
    for row in x.chunks_exact(k) {
        padded[..k].copy_from_slice(row);
        blockq::quantize_row_q8_0(&padded, &mut q8);
        blockq::quantize_row_q4_0(&padded, &mut q4);
        blockq::dequantize_row_q8_0(&q8, &mut out);
        blockq::dequantize_row_q4_0(&q4, &mut out);
    }

    check_layers(&x, k, m, bias.as_deref());
});
