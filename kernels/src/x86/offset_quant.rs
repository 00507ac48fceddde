//! The quantizers of Q4_0 and Q5_0 (llama.cpp's `quantize_row_q4_0_ref`,
//! `_q5_0_ref`) with AVX-512 (a block of 32 values in two vectors) or AVX2
//! (in four): the plain-Rust loops of the load clones spent most of their
//! time on the block's signed maximum (a sequential search) and on moving
//! codes between lanes. On AVX-512 they, and Q8_0's quantizer, run 16
//! blocks at a time, whose per-block values (maximum, `d`, `1 / d`, the f16
//! of `d`) are found together ([`batch_avx512`], [`batch_q8_0`]).
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
use crate::formats::{f16_from_f32, inverse, BlockQ4_0, BlockQ5_0, BlockQ8_0, PackedBlock, QK};
use core::arch::x86_64::*;
use half::f16;

/// Quantizes `x` into `out` as `quantize_row_q4_0_ref` does. Panics unless
/// `x.len() == out.len() * 32`.
#[inline(always)]
pub(crate) fn quantize_q4_0(t: QuantSimd, x: &[f32], out: &mut [BlockQ4_0]) {
    assert_eq!(x.len(), out.len() * QK, "quantize_q4_0: length mismatch");
    let done = in_batches::<_, 15, false>(t, x, out, (-8.0, 8.5), |b, i| BlockQ4_0 {
        d: f16::from_bits(b.d[i]),
        qs: b.qs[i],
    });
    let (x, out) = (&x[done * QK..], &mut out[done..]);
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
    let done = in_batches::<_, 31, true>(t, x, out, (-16.0, 16.5), |b, i| BlockQ5_0 {
        d: f16::from_bits(b.d[i]),
        qh: b.qh[i].to_le_bytes(),
        qs: b.qs[i],
    });
    let (x, out) = (&x[done * QK..], &mut out[done..]);
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

/// Blocks per [`batch_avx512`] call.
const BATCH: usize = 16;

/// The whole batches of `x` quantized by [`batch_avx512`] on AVX-512,
/// block `i` of a batch written as `block(batch, i)`; returns how many
/// blocks it wrote (none on AVX2).
#[inline(always)]
fn in_batches<O, const MAX_CODE: i32, const FIVE: bool>(
    t: QuantSimd,
    x: &[f32],
    out: &mut [O],
    (div, offset): (f32, f32),
    block: impl Fn(&Batch, usize) -> O,
) -> usize {
    if !matches!(t, QuantSimd::Avx512(_)) {
        return 0;
    }
    let mut done = 0;
    for (x, out) in x.chunks_exact(BATCH * QK).zip(out.chunks_exact_mut(BATCH)) {
        // SAFETY: the token proves AVX-512F and F16C.
        let b = unsafe { batch_avx512::<MAX_CODE, FIVE>(x.try_into().unwrap(), div, offset) };
        for (i, o) in out.iter_mut().enumerate() {
            *o = block(&b, i);
        }
        done += BATCH;
    }
    done
}

/// What [`batch_avx512`] makes of its blocks: `d` as f16 bits, the nibble
/// bytes and the fifth bits (0 unless `FIVE`).
struct Batch {
    d: [u16; BATCH],
    qs: [[u8; 16]; BATCH],
    qh: [u32; BATCH],
}

/// The lane indices for `permutex2var` (0..16 from `a`, 16..32 from `b`)
/// of one step of the transposing reduction.
const fn halving(w: usize, upper: bool) -> [i32; 16] {
    // One step of the transposing reduction: `a` and `b` hold `16 / w`
    // blocks of `w` partial maxima each (block `i` in lanes `i * w..`);
    // the result holds `a`'s blocks then `b`'s, `w / 2` lanes each, and
    // this picks the lower (or upper) half of each block's lanes.
    let mut idx = [0i32; 16];
    let h = w / 2;
    let mut o = 0;
    while o < 16 {
        let (src, within) = (o / 8, o % 8);
        let (b, j) = (within / h, within % h);
        idx[o] = (16 * src + b * w + j + if upper { h } else { 0 }) as i32;
        o += 1;
    }
    idx
}

/// The largest u32 lane of each of the sixteen vectors, by a transposing
/// reduction: after the round of width `w`, vector `i` holds the vectors
/// `i * 32 / w..` with `w / 2` partial maxima each.
#[inline]
#[target_feature(enable = "avx512f")]
fn lane_maxima(mut m: [__m512i; BATCH]) -> [u32; BATCH] {
    // The rounds' index pairs, made at compile time.
    const ROUNDS: [[[i32; 16]; 2]; 4] = {
        let mut r = [[[0; 16]; 2]; 4];
        let mut i = 0;
        while i < 4 {
            let w = 16 >> i;
            r[i] = [halving(w, false), halving(w, true)];
            i += 1;
        }
        r
    };
    let mut n = BATCH;
    for [lo, hi] in &ROUNDS {
        // SAFETY: the index arrays hold 16 i32.
        let (lo, hi) = unsafe {
            (
                _mm512_loadu_si512(lo.as_ptr().cast()),
                _mm512_loadu_si512(hi.as_ptr().cast()),
            )
        };
        for i in 0..n / 2 {
            let (a, b) = (m[2 * i], m[2 * i + 1]);
            m[i] = _mm512_max_epu32(
                _mm512_permutex2var_epi32(a, lo, b),
                _mm512_permutex2var_epi32(a, hi, b),
            );
        }
        n /= 2;
    }
    let mut top = [0u32; BATCH];
    // SAFETY: `top` holds 16 u32.
    unsafe { _mm512_storeu_si512(top.as_mut_ptr().cast(), m[0]) };
    top
}

/// Quantizes `x` into `out` as `quantize_row_q8_0_ref` does, [`BATCH`]
/// blocks at a time, and returns true, on AVX-512; returns false, writing
/// nothing, on AVX2 (the load clones' loop does as well there). Panics
/// unless `x.len() == out.len() * 32`.
#[inline(always)]
pub(crate) fn quantize_q8_0(t: QuantSimd, x: &[f32], out: &mut [BlockQ8_0]) -> bool {
    assert_eq!(x.len(), out.len() * QK, "quantize_q8_0: length mismatch");
    if !matches!(t, QuantSimd::Avx512(_)) {
        return false;
    }
    for (x, out) in x.chunks(BATCH * QK).zip(out.chunks_mut(BATCH)) {
        // SAFETY: the token proves AVX-512F and F16C.
        let whole = x.len() == BATCH * QK
            && unsafe { batch_q8_0(x.try_into().unwrap(), out.try_into().unwrap()) };
        if !whole {
            // The last blocks, and batches holding a NaN (llama.cpp's
            // `MAX` chain then depends on where the NaN is).
            for (x, o) in x.chunks_exact(QK).zip(out) {
                *o = BlockQ8_0::quantize(x);
            }
        }
    }
    true
}

/// [`BATCH`] Q8_0 blocks: `amax` the largest `|v|` of each (found as in
/// [`batch_avx512`]), `d = amax / 127`, `id = d ? 1 / d : 0`, the codes
/// `(int8_t)roundf(v * id)`; `roundf` (half away from zero) as
/// `trunc(t + copysign(0.49999997, t))`, the form LLVM gives it (exact for
/// every f32). Returns false, writing nothing, if a value is NaN.
#[inline]
#[target_feature(enable = "avx512f,f16c")]
fn batch_q8_0(x: &[f32; BATCH * QK], out: &mut [BlockQ8_0; BATCH]) -> bool {
    let load = |b: usize, i: usize| {
        // SAFETY: `QK * b + 16 * i + 16 <= BATCH * QK` for `b < BATCH`,
        // `i < 2`; `loadu` takes any alignment.
        unsafe { _mm512_loadu_ps(x.as_ptr().add(QK * b + 16 * i)) }
    };
    let abs = |v: __m512| _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFF_FFFF));
    let m: [__m512i; BATCH] =
        core::array::from_fn(|b| _mm512_max_epu32(abs(load(b, 0)), abs(load(b, 1))));
    let top = lane_maxima(m);
    if top.iter().any(|&t| t > 0x7F80_0000) {
        return false;
    }
    // SAFETY: `top` holds 16 u32.
    let amax = _mm512_castsi512_ps(unsafe { _mm512_loadu_si512(top.as_ptr().cast()) });
    let d = _mm512_div_ps(amax, _mm512_set1_ps(127.0));
    let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(d, _mm512_setzero_ps());
    let id = _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0), d);
    let (mut ds, mut ids) = ([0u16; BATCH], [0.0f32; BATCH]);
    // SAFETY: `ds` holds 16 u16 and `ids` 16 f32.
    unsafe {
        _mm256_storeu_si256(
            ds.as_mut_ptr().cast(),
            _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(d),
        );
        _mm512_storeu_ps(ids.as_mut_ptr(), id);
    }
    let (sign, below_half) = (
        _mm512_set1_epi32(i32::MIN),
        _mm512_set1_epi32(0.49999997f32.to_bits() as i32),
    );
    for (b, o) in out.iter_mut().enumerate() {
        let id = _mm512_set1_ps(ids[b]);
        let mut qs = [0i8; QK];
        for i in 0..2 {
            let t = _mm512_mul_ps(load(b, i), id);
            let half = _mm512_or_si512(_mm512_and_si512(_mm512_castps_si512(t), sign), below_half);
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(
                _mm512_add_ps(t, _mm512_castsi512_ps(half)),
            );
            // The low byte of the C conversion.
            let q = _mm512_cvtepi32_epi8(truncate_c(r));
            // SAFETY: `qs` holds 32 bytes, this writes 16 at `16 * i`.
            unsafe { _mm_storeu_si128(qs.as_mut_ptr().add(16 * i).cast(), q) };
        }
        *o = BlockQ8_0 {
            d: f16::from_bits(ds[b]),
            qs,
        };
    }
    true
}

/// [`BATCH`] blocks with AVX-512, each as [`block_avx512`] makes it, with
/// the steps that make one value per block done for all of them at once:
/// the sixteen largest magnitudes by a transposing reduction (four rounds
/// of two word permutes and a maximum for each pair of vectors) instead of
/// a horizontal reduction per block, then `d = max / div`, `id = d ? 1 / d
/// : 0` and the f16 of `d` (`vcvtps2ph`, the bits of the scalar
/// conversion) as vector operations on the sixteen. One block at a time,
/// each block's chain of dependent steps (reduction, scalar division and
/// conversion) left the core idle: 4.6 GB/s on the 2-core Xeon.
#[inline]
#[target_feature(enable = "avx512f,f16c")]
fn batch_avx512<const MAX_CODE: i32, const FIVE: bool>(
    x: &[f32; BATCH * QK],
    div: f32,
    offset: f32,
) -> Batch {
    // |v| as integers, NaN as 0, of element `i` of block `b`.
    let abs = |b: usize, i: usize| {
        // SAFETY: `16 * (2 * b + i) + 16 <= BATCH * QK` for `b < BATCH`,
        // `i < 2`; `loadu` takes any alignment.
        magnitude(unsafe { _mm512_loadu_ps(x.as_ptr().add(QK * b + 16 * i)) })
    };
    let top = lane_maxima(core::array::from_fn(|b| {
        _mm512_max_epu32(abs(b, 0), abs(b, 1))
    }));
    // The sign of each block's first element of the largest magnitude
    // (`max` keeps its initial +0.0 where that is 0).
    let mut signed = [0u32; BATCH];
    for (b, (s, &t)) in signed.iter_mut().zip(&top).enumerate() {
        let xb: &[f32; QK] = x[QK * b..QK * (b + 1)].try_into().unwrap();
        *s = signed_max(xb, [abs(b, 0), abs(b, 1)], t);
    }
    // SAFETY: `signed` holds 16 u32.
    let max = _mm512_castsi512_ps(unsafe { _mm512_loadu_si512(signed.as_ptr().cast()) });
    let d = _mm512_div_ps(max, _mm512_set1_ps(div));
    let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(d, _mm512_setzero_ps());
    let id = _mm512_maskz_div_ps(nonzero, _mm512_set1_ps(1.0), d);
    let mut out = Batch {
        d: [0; BATCH],
        qs: [[0; 16]; BATCH],
        qh: [0; BATCH],
    };
    let mut ids = [0.0f32; BATCH];
    // SAFETY: `out.d` holds 16 u16 and `ids` 16 f32.
    unsafe {
        _mm256_storeu_si256(
            out.d.as_mut_ptr().cast(),
            _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(d),
        );
        _mm512_storeu_ps(ids.as_mut_ptr(), id);
    }
    for b in 0..BATCH {
        let xb: &[f32; QK] = x[QK * b..QK * (b + 1)].try_into().unwrap();
        let codes = codes_with::<MAX_CODE>(xb, _mm512_set1_ps(ids[b]), offset);
        out.qs[b] = nibbles(codes, if FIVE { 0x0F } else { !0 });
        if FIVE {
            out.qh[b] = fifth_bits(codes);
        }
    }
    out
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
    let abs = v.map(|v| magnitude(v));
    let m = _mm512_reduce_max_epu32(_mm512_max_epu32(abs[0], abs[1]));
    let d = f32::from_bits(signed_max(x, abs, m)) / div;
    (
        d,
        codes_with::<MAX_CODE>(x, _mm512_set1_ps(inverse(d)), offset),
    )
}

/// The codes `MIN(MAX_CODE, (int8_t)(x * id + offset))` of a block (as
/// i32 lanes, elements `0..16` then `16..32`).
#[inline]
#[target_feature(enable = "avx512f")]
fn codes_with<const MAX_CODE: i32>(x: &[f32; QK], id: __m512, offset: f32) -> [__m512i; 2] {
    // SAFETY: `x` holds 32 f32; `loadu` takes any alignment.
    let v = unsafe {
        [
            _mm512_loadu_ps(x.as_ptr()),
            _mm512_loadu_ps(x.as_ptr().add(16)),
        ]
    };
    v.map(|v| {
        let t = _mm512_add_ps(_mm512_mul_ps(v, id), _mm512_set1_ps(offset));
        let i = truncate_c(t);
        // (int8_t): the low byte, sign-extended.
        let i = _mm512_srai_epi32::<24>(_mm512_slli_epi32::<24>(i));
        _mm512_min_epi32(i, _mm512_set1_epi32(MAX_CODE))
    })
}

/// `|v|` as integers, NaN as 0 (it never wins the C's `amax <
/// fabsf(v)`).
#[inline]
#[target_feature(enable = "avx512f")]
fn magnitude(v: __m512) -> __m512i {
    let a = _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7FFF_FFFF));
    _mm512_maskz_mov_epi32(
        _mm512_cmple_epu32_mask(a, _mm512_set1_epi32(0x7F80_0000)),
        a,
    )
}

/// The bits of the block's signed maximum: `m` (the largest of `abs`, its
/// [`magnitude`]s) with the sign of the first element that has it, or
/// +0.0 (`max`'s initial value) when `m` is 0.
#[inline]
#[target_feature(enable = "avx512f")]
fn signed_max(x: &[f32; QK], abs: [__m512i; 2], m: u32) -> u32 {
    if m == 0 {
        return 0;
    }
    let at = _mm512_set1_epi32(m as i32);
    let hits = _mm512_cmpeq_epi32_mask(abs[0], at) as u32
        | (_mm512_cmpeq_epi32_mask(abs[1], at) as u32) << 16;
    m | (x[hits.trailing_zeros() as usize].to_bits() & 0x8000_0000)
}

/// `t` truncated to i32 as `cvttss2si` converts: 0 outside `|t| < 2^31`
/// and for NaN (which fails the comparison).
#[inline]
#[target_feature(enable = "avx512f")]
fn truncate_c(t: __m512) -> __m512i {
    let in_range = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(_mm512_abs_ps(t), _mm512_set1_ps(2147483648.0));
    _mm512_cvttps_epi32(_mm512_maskz_mov_ps(in_range, t))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Level;

    /// Blocks whose products `v * id` (with `d = 1`: 127 in every block)
    /// lie on, just below and just above each half-integer, of both signs:
    /// the cases where `roundf`'s form and a plain `+ 0.5` differ.
    #[test]
    fn q8_0_rounds_every_near_tie_as_roundf() {
        let Some(t) = QuantSimd::of(Level::Avx512) else {
            eprintln!("SKIPPED: this CPU lacks AVX-512F/BW");
            return;
        };
        let mut x = Vec::new();
        for k in -127..127 {
            let h = k as f32 + 0.5;
            for v in [
                h,
                f32::from_bits(h.to_bits() - 1),
                f32::from_bits(h.to_bits() + 1),
            ] {
                if x.len() % QK == 0 {
                    x.push(127.0);
                }
                x.push(v);
            }
        }
        x.resize(x.len().next_multiple_of(BATCH * QK), 0.25);
        let want: Vec<BlockQ8_0> = x.chunks_exact(QK).map(BlockQ8_0::quantize).collect();
        let mut got = vec![BlockQ8_0::padding(); want.len()];
        assert!(quantize_q8_0(t, &x, &mut got));
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(g == w, "block {i}: {g:?} != {w:?}");
        }
    }
}
