//! The quantizers of Q4_0 and Q5_0 (llama.cpp's `quantize_row_q4_0_ref`,
//! `_q5_0_ref`) with AVX-512 (a block of 32 values in two vectors) or AVX2
//! (in four): the plain-Rust loops of the load clones spent most of their
//! time on the block's signed maximum (a sequential search) and on moving
//! codes between lanes.
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

use super::QuantSimd;
use crate::formats::{f16_from_f32, inverse, BlockQ4_0, BlockQ5_0, QK};
use core::arch::x86_64::*;

/// Quantizes `x` into `out` as `quantize_row_q4_0_ref` does. Panics unless
/// `x.len() == out.len() * 32`.
#[inline(always)]
pub(crate) fn quantize_q4_0(t: QuantSimd, x: &[f32], out: &mut [BlockQ4_0]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_q4_0: length mismatch");
    for (x, o) in x.chunks_exact(QK).zip(out) {
        let x: &[f32; QK] = x.try_into().unwrap();
        let (d, qs, _) = match t {
            // SAFETY: the token proves AVX-512F.
            QuantSimd::Avx512(_) => unsafe { block_avx512::<15, false>(x, -8.0, 8.5) },
            // SAFETY: the token proves AVX2.
            QuantSimd::Avx2(_) => unsafe { block_avx2::<15, false>(x, -8.0, 8.5) },
        };
        *o = BlockQ4_0 {
            d: f16_from_f32(d),
            qs,
        };
    }
}

/// Quantizes `x` into `out` as `quantize_row_q5_0_ref` does. Panics unless
/// `x.len() == out.len() * 32`.
#[inline(always)]
pub(crate) fn quantize_q5_0(t: QuantSimd, x: &[f32], out: &mut [BlockQ5_0]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_q5_0: length mismatch");
    for (x, o) in x.chunks_exact(QK).zip(out) {
        let x: &[f32; QK] = x.try_into().unwrap();
        let (d, qs, qh) = match t {
            // SAFETY: the token proves AVX-512F.
            QuantSimd::Avx512(_) => unsafe { block_avx512::<31, true>(x, -16.0, 16.5) },
            // SAFETY: the token proves AVX2.
            QuantSimd::Avx2(_) => unsafe { block_avx2::<31, true>(x, -16.0, 16.5) },
        };
        *o = BlockQ5_0 {
            d: f16_from_f32(d),
            qh: qh.to_le_bytes(),
            qs,
        };
    }
}

/// A block with AVX-512: `d`, the nibble bytes (masked to 4 bits when
/// `FIVE`) and, when `FIVE`, the fifth bits.
#[inline]
#[target_feature(enable = "avx512f")]
fn block_avx512<const MAX_CODE: i32, const FIVE: bool>(
    x: &[f32; QK],
    div: f32,
    offset: f32,
) -> (f32, [u8; 16], u32) {
    let (d, codes) = codes::<MAX_CODE>(x, div, offset);
    let qs = nibbles(codes, if FIVE { 0x0F } else { !0 });
    (d, qs, if FIVE { fifth_bits(codes) } else { 0 })
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

/// [`block_avx512`] with AVX2: the same steps on four vectors of 8.
#[inline]
#[target_feature(enable = "avx,avx2")]
fn block_avx2<const MAX_CODE: i32, const FIVE: bool>(
    x: &[f32; QK],
    div: f32,
    offset: f32,
) -> (f32, [u8; 16], u32) {
    // SAFETY: `x` holds 32 f32; `loadu` takes any alignment.
    let v: [__m256; 4] =
        core::array::from_fn(|i| unsafe { _mm256_loadu_ps(x.as_ptr().add(8 * i)) });
    // |v| as integers (non-negative as i32), NaN as 0.
    let abs = v.map(|v| {
        let a = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7FFF_FFFF));
        let nan = _mm256_cmpgt_epi32(a, _mm256_set1_epi32(0x7F80_0000));
        _mm256_andnot_si256(nan, a)
    });
    let m = _mm256_max_epi32(
        _mm256_max_epi32(abs[0], abs[1]),
        _mm256_max_epi32(abs[2], abs[3]),
    );
    let m = _mm_max_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m));
    let m = _mm_max_epi32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
    let m = _mm_max_epi32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
    let m = _mm_cvtsi128_si32(m) as u32;
    let max = if m == 0 {
        // `max` keeps its initial +0.0.
        0.0
    } else {
        let at = _mm256_set1_epi32(m as i32);
        let mut hits = 0u32;
        for (i, a) in abs.iter().enumerate() {
            let eq = _mm256_castsi256_ps(_mm256_cmpeq_epi32(*a, at));
            hits |= (_mm256_movemask_ps(eq) as u32) << (8 * i);
        }
        let first = hits.trailing_zeros() as usize;
        f32::from_bits(m | (x[first].to_bits() & 0x8000_0000))
    };
    let d = max / div;
    let id = _mm256_set1_ps(inverse(d));
    let codes = v.map(|v| {
        let t = _mm256_add_ps(_mm256_mul_ps(v, id), _mm256_set1_ps(offset));
        // cvttss2si's range: |t| < 2^31 (NaN fails the comparison).
        let abs_t = _mm256_and_ps(t, _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF)));
        let in_range = _mm256_cmp_ps::<_CMP_LT_OQ>(abs_t, _mm256_set1_ps(2147483648.0));
        let i = _mm256_cvttps_epi32(_mm256_and_ps(t, in_range));
        // (int8_t): the low byte, sign-extended.
        let i = _mm256_srai_epi32::<24>(_mm256_slli_epi32::<24>(i));
        _mm256_min_epi32(i, _mm256_set1_epi32(MAX_CODE))
    });
    // Bytes j (codes j and j + 16): vectors 0, 1 with 2, 3; the low byte of
    // each i32, packed without saturation (masked to 0..=255 first).
    let mask = _mm256_set1_epi32(if FIVE { 0x0F } else { 0xFF });
    let byte = |lo: __m256i, hi: __m256i| {
        let v = _mm256_or_si256(
            _mm256_and_si256(lo, mask),
            _mm256_slli_epi32::<4>(_mm256_and_si256(hi, mask)),
        );
        _mm256_and_si256(v, _mm256_set1_epi32(0xFF))
    };
    let (b0, b1) = (byte(codes[0], codes[2]), byte(codes[1], codes[3]));
    // 16-bit: [b0 0..4, b1 0..4 | b0 4..8, b1 4..8], then 8-bit likewise;
    // the 32-bit permute puts the bytes back in order.
    let w = _mm256_packus_epi32(b0, b1);
    let b = _mm256_packus_epi16(w, w);
    let b = _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 0, 0, 0, 0));
    let mut qs = [0u8; 16];
    // SAFETY: `qs` holds 16 bytes; `storeu` takes any alignment.
    unsafe { _mm_storeu_si128(qs.as_mut_ptr().cast(), _mm256_castsi256_si128(b)) };
    let qh = if FIVE {
        let mut qh = 0u32;
        for (i, c) in codes.iter().enumerate() {
            let bit = _mm256_castsi256_ps(_mm256_slli_epi32::<27>(*c));
            qh |= (_mm256_movemask_ps(bit) as u32) << (8 * i);
        }
        qh
    } else {
        0
    };
    (d, qs, qh)
}
