//! The quantizers of Q4_0 and Q5_0 (llama.cpp's `quantize_row_q4_0_ref`,
//! `_q5_0_ref`) with AVX-512, a block of 32 values in two vectors: the
//! plain-Rust loops of the load clones spent most of their time on the
//! block's signed maximum (a sequential search) and on moving codes between
//! lanes.
//!
//! The same operations as the reference, lane by lane:
//! - the signed maximum as `formats::signed_max_vectorized` finds it: the
//!   largest `|v|` as an integer (NaN counts as 0: it never wins the C's
//!   `amax < fabsf(v)`), then the sign of the first element that has it;
//! - `d = max / -2^(bits-1)`, `id = d ? 1/d : 0`, scalar;
//! - each code `MIN(2^bits - 1, (int8_t)(x * id + offset))`: one product
//!   and one sum, each rounded (no FMA), truncated toward zero as
//!   `cvttss2si` does (0 for NaN and out of range, as
//!   `formats::c_f32_to_i8`), its low byte sign-extended, then the minimum;
//! - the nibbles `c[j] | c[j + 16] << 4` as bytes (Q4_0 unmasked, as the
//!   reference stores them; Q5_0 masked), Q5_0's fifth bits into `qh`.

use super::panel_rows::Avx512;
use crate::formats::{f16_from_f32, inverse, BlockQ4_0, BlockQ5_0, QK};
use core::arch::x86_64::*;

/// Quantizes `x` into `out` as `quantize_row_q4_0_ref` does. Panics unless
/// `x.len() == out.len() * 32`.
#[inline(always)]
pub(crate) fn quantize_q4_0(_: Avx512, x: &[f32], out: &mut [BlockQ4_0]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_q4_0: length mismatch");
    for (x, o) in x.chunks_exact(QK).zip(out) {
        // SAFETY: the token proves AVX-512F; `x` holds a block.
        let (d, codes) = unsafe { codes::<15>(x.try_into().unwrap(), -8.0, 8.5) };
        // SAFETY: as above.
        let qs = unsafe { nibbles(codes, !0) };
        *o = BlockQ4_0 {
            d: f16_from_f32(d),
            qs,
        };
    }
}

/// Quantizes `x` into `out` as `quantize_row_q5_0_ref` does. Panics unless
/// `x.len() == out.len() * 32`.
#[inline(always)]
pub(crate) fn quantize_q5_0(_: Avx512, x: &[f32], out: &mut [BlockQ5_0]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_q5_0: length mismatch");
    for (x, o) in x.chunks_exact(QK).zip(out) {
        // SAFETY: the token proves AVX-512F; `x` holds a block.
        let (d, codes) = unsafe { codes::<31>(x.try_into().unwrap(), -16.0, 16.5) };
        // SAFETY: as above.
        let (qs, qh) = unsafe { (nibbles(codes, 0x0F), fifth_bits(codes)) };
        *o = BlockQ5_0 {
            d: f16_from_f32(d),
            qh: qh.to_le_bytes(),
            qs,
        };
    }
}

/// `d` and the codes (as i32 lanes, elements `0..16` then `16..32`) of a
/// block: `d = max / div`, codes `MIN(MAX_CODE, (int8_t)(x * id + offset))`.
#[inline]
#[target_feature(enable = "avx512f")]
fn codes<const MAX_CODE: i32>(x: &[f32; QK], div: f32, offset: f32) -> (f32, [__m512i; 2]) {
    // SAFETY: `x` holds 32 f32; `loadu` takes any alignment.
    let v = unsafe {
        [
            _mm512_loadu_ps(x.as_ptr()),
            _mm512_loadu_ps(x.as_ptr().add(16)),
        ]
    };
    // |v| as integers, NaN as 0.
    let abs = v.map(|v| {
        let a = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFF_FFFF));
        _mm512_maskz_mov_epi32(
            _mm512_cmple_epu32_mask(a, _mm512_set1_epi32(0x7F80_0000)),
            a,
        )
    });
    let m = _mm512_reduce_max_epu32(_mm512_max_epu32(abs[0], abs[1]));
    let max = if m == 0 {
        // `max` keeps its initial +0.0.
        0.0
    } else {
        let at = _mm512_set1_epi32(m as i32);
        let hits = _mm512_cmpeq_epi32_mask(abs[0], at) as u32
            | (_mm512_cmpeq_epi32_mask(abs[1], at) as u32) << 16;
        let first = hits.trailing_zeros() as usize;
        f32::from_bits(m | (x[first].to_bits() & 0x8000_0000))
    };
    let d = max / div;
    let id = _mm512_set1_ps(inverse(d));
    let codes = v.map(|v| {
        let t = _mm512_add_ps(_mm512_mul_ps(v, id), _mm512_set1_ps(offset));
        // cvttss2si's range: |t| < 2^31 (NaN fails the comparison).
        let in_range =
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(t), _mm512_set1_ps(2147483648.0));
        let i = _mm512_cvttps_epi32(_mm512_maskz_mov_ps(in_range, t));
        // (int8_t): the low byte, sign-extended.
        let i = _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(i));
        _mm512_min_epi32(i, _mm512_set1_epi32(MAX_CODE))
    });
    (d, codes)
}

/// The 16 bytes `(c[j] & mask) | (c[j + 16] & mask) << 4`.
#[inline]
#[target_feature(enable = "avx512f")]
fn nibbles(codes: [__m512i; 2], mask: i32) -> [u8; 16] {
    let mask = _mm512_set1_epi32(mask);
    let lo = _mm512_and_si512(codes[0], mask);
    let hi = _mm512_slli_epi32::<4>(_mm512_and_si512(codes[1], mask));
    let bytes = _mm512_cvtepi32_epi8(_mm512_or_si512(lo, hi));
    let mut out = [0u8; 16];
    // SAFETY: `out` holds 16 bytes; `storeu` takes any alignment.
    unsafe { _mm_storeu_si128(out.as_mut_ptr().cast(), bytes) };
    out
}

/// Q5_0's `qh`: bit `j` is bit 4 of code `j`.
#[inline]
#[target_feature(enable = "avx512f")]
fn fifth_bits(codes: [__m512i; 2]) -> u32 {
    let bit = _mm512_set1_epi32(0x10);
    _mm512_test_epi32_mask(codes[0], bit) as u32
        | (_mm512_test_epi32_mask(codes[1], bit) as u32) << 16
}
