//! The scale searches of the k-quant quantizers (llama.cpp's
//! `make_qkx2_quants` for Q4_K / Q5_K, `make_qx_quants` for Q6_K) with
//! AVX-512 or AVX2, one sub-block per 32-bit lane: the 32-value sub-blocks
//! of four Q4_K / Q5_K super-blocks, or the 16-value groups of two Q6_K
//! super-blocks, side by side. Q6_K's final codes (a quotient per value)
//! are made with the same lanes ([`q6_codes`]). The searches are written once over
//! [`Lanes`] (`__m512`, `__m256`), in groups of vectors that advance
//! together so that their serial chains overlap.
//!
//! Each lane performs the reference's f32 operations on its sub-block in
//! the reference's order: the sums run over the sub-block's elements one
//! after another, as in the C, so every lane rounds as the scalar code
//! does; only the order between sub-blocks changes, and they do not
//! interact. The C's branches become per-lane selects on the same
//! comparisons (ordered, except the `!=` of `make_qx_quants`). The best
//! candidate's codes are not copied at each step: the `iscale` (and Q4_K /
//! Q5_K's `min`) that made them are kept, and the formats make the codes
//! again where the C keeps them ([`crate::formats::MinSearch`],
//! [`crate::formats::QxSearch`]).
//!
//! The codes: the C's `nearest_int` (a bit trick on `v + 1.5 * 2^23`) is
//! rounding to the nearest integer, ties to even, for `|v| < 2^22`, so the
//! searches round with one `vrndscaleps` / `vroundps` and clamp
//! ([`Lanes::small_code`]). Q6_K's products stay below 33 in magnitude in
//! every group whose result is used; Q4_K / Q5_K check before each search
//! that every lane's extreme products are below 2^22 and otherwise take
//! the bit trick itself ([`Lanes::code`]).
//!
//! A super-block holding a NaN takes the scalar reference: which NaN
//! payload an operation passes on may differ between two instruction
//! orders. NaN made from other values (infinities) is the default NaN
//! either way. Q6_K sends any non-finite super-block there (its codes take
//! a shorter rounding that holds for finite values, see [`qx_lanes`]). The portable loops of the load clones measured 4-10x slower
//! on AVX-512: the compiler turns the per-lane selects of fixed-size
//! arrays into shuffles and scalar code.

use super::panel_rows::transpose;
use super::QuantSimd;
use crate::formats::{
    BlockQ4_K, BlockQ5_K, BlockQ6_K, MinSearch, PackedBlock, QxSearch, WeightFormat, WithMin,
    GROUP_MAX_EPS, QK_K,
};
use core::arch::x86_64::*;
use half::f16;

/// Quantizes `x` into `out` (llama.cpp's reference bytes) with the lane
/// searches when `B` is Q4_K, Q5_K or Q6_K and returns true; returns false,
/// writing nothing, for other formats. Panics unless `x.len() ==
/// out.len() * B::VALUES`.
#[inline(always)]
pub(crate) fn quantize_blocks<B: PackedBlock>(t: QuantSimd, x: &[f32], out: &mut [B]) -> bool {
    assert_eq!(
        x.len(),
        out.len() * B::VALUES,
        "quantize_blocks: length mismatch"
    );
    match B::FORMAT {
        WeightFormat::Q4_K => with_min::<BlockQ4_K>(t, x, bytemuck::cast_slice_mut(out)),
        WeightFormat::Q5_K => with_min::<BlockQ5_K>(t, x, bytemuck::cast_slice_mut(out)),
        WeightFormat::Q6_K => {
            let out: &mut [BlockQ6_K] = bytemuck::cast_slice_mut(out);
            let mut padded = [0.0f32; Q6_PAIR * QK_K];
            for (x, out) in x.chunks(Q6_PAIR * QK_K).zip(out.chunks_mut(Q6_PAIR)) {
                let pair = whole(x, &mut padded);
                let searches = match t {
                    // SAFETY: the token proves AVX-512F.
                    QuantSimd::Avx512(_) => unsafe { qx_avx512(pair) },
                    // SAFETY: the token proves AVX2.
                    QuantSimd::Avx2(_) => unsafe { qx_avx2(pair) },
                };
                for ((x, o), search) in x.chunks_exact(QK_K).zip(out).zip(&searches) {
                    let x: &[f32; QK_K] = x.try_into().unwrap();
                    // A super-block with a non-finite value takes the
                    // scalar reference (its lanes' results are not used).
                    *o = if all_finite(x) {
                        BlockQ6_K::finish_with(&search.scale, |sc, d| match t {
                            // SAFETY: the token proves AVX-512F.
                            QuantSimd::Avx512(_) => unsafe { q6_codes_avx512(x, search, sc, d) },
                            // SAFETY: the token proves AVX2.
                            QuantSimd::Avx2(_) => unsafe { q6_codes_avx2(x, search, sc, d) },
                        })
                    } else {
                        BlockQ6_K::quantize(x)
                    };
                }
            }
        }
        _ => return false,
    }
    true
}

/// `x` (at most `N` values) as `N` values: itself when whole, else in
/// `padded` followed by zeros.
#[inline(always)]
fn whole<'a, const N: usize>(x: &'a [f32], padded: &'a mut [f32; N]) -> &'a [f32; N] {
    match x.try_into() {
        Ok(x) => x,
        Err(_) => {
            padded[..x.len()].copy_from_slice(x);
            padded[x.len()..].fill(0.0);
            padded
        }
    }
}

#[inline(always)]
fn has_nan(x: &[f32]) -> bool {
    x.iter().fold(false, |nan, v| nan | v.is_nan())
}

#[inline(always)]
fn all_finite(x: &[f32]) -> bool {
    x.iter().fold(true, |finite, v| finite & v.is_finite())
}

/// Q6_K super-blocks per search call: 32 groups of 16 values, two
/// vectors of 16 lanes or four of 8 (one super-block's single vector of
/// 16 lanes left its sums' add chains waiting on each other).
const Q6_PAIR: usize = 2;

/// Q4_K / Q5_K super-blocks per search call: 32 sub-blocks, two groups of
/// 16 lanes or four of 8.
const BATCH: usize = 4;

/// Q4_K / Q5_K: the searches of [`BATCH`] super-blocks at a time (the last
/// ones next to zeros), then the blocks from their results.
#[inline(always)]
fn with_min<B: WithMin>(t: QuantSimd, x: &[f32], out: &mut [B]) {
    let (nmax, rmin, nstep) = B::SEARCH;
    let mut padded = [0.0f32; BATCH * QK_K];
    for (x, out) in x.chunks(BATCH * QK_K).zip(out.chunks_mut(BATCH)) {
        let batch = whole(x, &mut padded);
        let searches = match t {
            // SAFETY: the token proves AVX-512F.
            QuantSimd::Avx512(_) => unsafe { qkx2_avx512(batch, nmax, rmin, nstep) },
            // SAFETY: the token proves AVX2.
            QuantSimd::Avx2(_) => unsafe { qkx2_avx2(batch, nmax, rmin, nstep) },
        };
        for ((x, o), search) in x.chunks_exact(QK_K).zip(out).zip(&searches) {
            let x: &[f32; QK_K] = x.try_into().unwrap();
            *o = if has_nan(x) {
                B::quantize(x)
            } else {
                B::from_search(x, search)
            };
        }
    }
}

/// The vector operations of the searches, on f32 lanes. Every function is
/// unsafe: the caller's code must have been compiled with the
/// implementation's features (`avx512f`; `avx2`), and [`Lanes::columns`],
/// [`Lanes::load`], [`Lanes::store`] and [`Lanes::store_i32`] read and
/// write where their docs say.
trait Lanes: Copy {
    /// Lanes per vector.
    const N: usize;
    /// A per-lane condition.
    type M: Copy;
    unsafe fn splat(v: f32) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    unsafe fn sub(a: Self, b: Self) -> Self;
    unsafe fn mul(a: Self, b: Self) -> Self;
    unsafe fn div(a: Self, b: Self) -> Self;
    unsafe fn sqrt(a: Self) -> Self;
    unsafe fn abs(a: Self) -> Self;
    /// `-a` (the sign bit flipped).
    unsafe fn neg(a: Self) -> Self;
    unsafe fn lt(a: Self, b: Self) -> Self::M;
    unsafe fn gt(a: Self, b: Self) -> Self::M;
    unsafe fn eq(a: Self, b: Self) -> Self::M;
    /// `a != b`, true for NaN (C's `!=`).
    unsafe fn ne(a: Self, b: Self) -> Self::M;
    unsafe fn and(a: Self::M, b: Self::M) -> Self::M;
    /// `if m { b } else { a }` per lane.
    unsafe fn select(m: Self::M, a: Self, b: Self) -> Self;
    /// Bit `s` set where lane `s` is true.
    unsafe fn bits(m: Self::M) -> u32;
    /// `nearest_int(v)` (`formats::kquant`: the low mantissa bits of
    /// `v + 1.5 * 2^23`, minus `2^22`) clamped to `lo..=hi`, as f32.
    unsafe fn code(v: Self, lo: i32, hi: i32) -> Self;
    /// [`Lanes::code`] of lanes with `|v| < 2^22`, three operations fewer:
    /// `v` rounded to the nearest integer, ties to even (which is what
    /// `nearest_int` computes there: `1.5 * 2^23` is even and its ulp 1),
    /// then clamped. Other lanes get other values. A zero code may come
    /// out as -0.0 (where `v` is in `(-0.5, -0.0]`); the searches only
    /// use codes in products added to sums that start at +0.0, in squares,
    /// and in `scale * q + min`, where the sign of a zero changes no result.
    unsafe fn small_code(v: Self, lo: i32, hi: i32) -> Self;
    /// `N` rows of `N` values, row `r` at `x + at + r * stride`, transposed
    /// into `out[..N]`: lane `r` of `out[i]` is `x[at + r * stride + i]`
    /// (all inside `x`; `out.len() >= N`).
    unsafe fn columns(x: *const f32, at: usize, stride: usize, out: &mut [Self]);
    /// The N lanes into `out[..N]`.
    unsafe fn store(self, out: *mut f32);
    /// `N` values from `p[..N]`.
    unsafe fn load(p: *const f32) -> Self;
    /// The N lanes, whole numbers of `i32` range, as `i32` into `out[..N]`.
    unsafe fn store_i32(self, out: *mut i32);
}

/// One `Lanes` function per line: `name(args) => intrinsic expression`.
macro_rules! lanes_fns {
    ($($name:ident($($a:ident: $t:ty),*) -> $r:ty => $e:expr;)*) => {
        $(
            #[inline(always)]
            #[allow(unused_unsafe)]
            unsafe fn $name($($a: $t),*) -> $r {
                // SAFETY: the caller has the implementation's features
                // (and for `load`, the values at `p`).
                unsafe { $e }
            }
        )*
    };
}

impl Lanes for __m512 {
    const N: usize = 16;
    type M = __mmask16;
    lanes_fns! {
        splat(v: f32) -> Self => _mm512_set1_ps(v);
        add(a: Self, b: Self) -> Self => _mm512_add_ps(a, b);
        sub(a: Self, b: Self) -> Self => _mm512_sub_ps(a, b);
        mul(a: Self, b: Self) -> Self => _mm512_mul_ps(a, b);
        div(a: Self, b: Self) -> Self => _mm512_div_ps(a, b);
        sqrt(a: Self) -> Self => _mm512_sqrt_ps(a);
        abs(a: Self) -> Self => _mm512_abs_ps(a);
        neg(a: Self) -> Self => _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(a),
            _mm512_set1_epi32(i32::MIN),
        ));
        lt(a: Self, b: Self) -> __mmask16 => _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b);
        gt(a: Self, b: Self) -> __mmask16 => _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b);
        eq(a: Self, b: Self) -> __mmask16 => _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(a, b);
        ne(a: Self, b: Self) -> __mmask16 => _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(a, b);
        and(a: __mmask16, b: __mmask16) -> __mmask16 => a & b;
        select(m: __mmask16, a: Self, b: Self) -> Self => _mm512_mask_blend_ps(m, a, b);
        bits(m: __mmask16) -> u32 => m as u32;
        code(v: Self, lo: i32, hi: i32) -> Self => {
            let m = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(MAGIC)));
            let q = _mm512_sub_epi32(
                _mm512_and_si512(m, _mm512_set1_epi32(0x007F_FFFF)),
                _mm512_set1_epi32(0x0040_0000),
            );
            let q = _mm512_min_epi32(_mm512_max_epi32(q, _mm512_set1_epi32(lo)), _mm512_set1_epi32(hi));
            _mm512_cvtepi32_ps(q)
        };
        load(p: *const f32) -> Self => _mm512_loadu_ps(p);
        small_code(v: Self, lo: i32, hi: i32) -> Self => {
            let r = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            _mm512_min_ps(_mm512_max_ps(r, _mm512_set1_ps(lo as f32)), _mm512_set1_ps(hi as f32))
        };
    }
    #[inline(always)]
    unsafe fn store(self, out: *mut f32) {
        // SAFETY: the caller has avx512f and 16 f32 at `out`.
        unsafe { _mm512_storeu_ps(out, self) }
    }
    #[inline(always)]
    unsafe fn store_i32(self, out: *mut i32) {
        // SAFETY: the caller has avx512f and 16 i32 at `out`.
        unsafe { _mm512_storeu_si512(out.cast(), _mm512_cvttps_epi32(self)) }
    }
    #[inline(always)]
    unsafe fn columns(x: *const f32, at: usize, stride: usize, out: &mut [Self]) {
        // SAFETY: the caller has avx512f and the 16 rows inside `x`.
        unsafe {
            let rows: [__m512; 16] =
                core::array::from_fn(|r| _mm512_loadu_ps(x.add(at + r * stride)));
            out[..16].copy_from_slice(&transpose(rows));
        }
    }
}

impl Lanes for __m256 {
    const N: usize = 8;
    type M = __m256;
    lanes_fns! {
        splat(v: f32) -> Self => _mm256_set1_ps(v);
        add(a: Self, b: Self) -> Self => _mm256_add_ps(a, b);
        sub(a: Self, b: Self) -> Self => _mm256_sub_ps(a, b);
        mul(a: Self, b: Self) -> Self => _mm256_mul_ps(a, b);
        div(a: Self, b: Self) -> Self => _mm256_div_ps(a, b);
        sqrt(a: Self) -> Self => _mm256_sqrt_ps(a);
        abs(a: Self) -> Self => _mm256_and_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MAX)));
        neg(a: Self) -> Self => _mm256_xor_ps(a, _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN)));
        lt(a: Self, b: Self) -> __m256 => _mm256_cmp_ps::<_CMP_LT_OQ>(a, b);
        gt(a: Self, b: Self) -> __m256 => _mm256_cmp_ps::<_CMP_GT_OQ>(a, b);
        eq(a: Self, b: Self) -> __m256 => _mm256_cmp_ps::<_CMP_EQ_OQ>(a, b);
        ne(a: Self, b: Self) -> __m256 => _mm256_cmp_ps::<_CMP_NEQ_UQ>(a, b);
        and(a: __m256, b: __m256) -> __m256 => _mm256_and_ps(a, b);
        select(m: __m256, a: Self, b: Self) -> Self => _mm256_blendv_ps(a, b, m);
        bits(m: __m256) -> u32 => _mm256_movemask_ps(m) as u32;
        code(v: Self, lo: i32, hi: i32) -> Self => {
            let m = _mm256_castps_si256(_mm256_add_ps(v, _mm256_set1_ps(MAGIC)));
            let q = _mm256_sub_epi32(
                _mm256_and_si256(m, _mm256_set1_epi32(0x007F_FFFF)),
                _mm256_set1_epi32(0x0040_0000),
            );
            let q = _mm256_min_epi32(_mm256_max_epi32(q, _mm256_set1_epi32(lo)), _mm256_set1_epi32(hi));
            _mm256_cvtepi32_ps(q)
        };
        load(p: *const f32) -> Self => _mm256_loadu_ps(p);
        small_code(v: Self, lo: i32, hi: i32) -> Self => {
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            _mm256_min_ps(_mm256_max_ps(r, _mm256_set1_ps(lo as f32)), _mm256_set1_ps(hi as f32))
        };
    }
    #[inline(always)]
    unsafe fn store(self, out: *mut f32) {
        // SAFETY: the caller has avx2 and 8 f32 at `out`.
        unsafe { _mm256_storeu_ps(out, self) }
    }
    #[inline(always)]
    unsafe fn store_i32(self, out: *mut i32) {
        // SAFETY: the caller has avx2 and 8 i32 at `out`.
        unsafe { _mm256_storeu_si256(out.cast(), _mm256_cvttps_epi32(self)) }
    }
    #[inline(always)]
    unsafe fn columns(x: *const f32, at: usize, stride: usize, out: &mut [Self]) {
        // SAFETY: the caller has avx2 and the 8 rows inside `x`.
        unsafe {
            let r: [__m256; 8] = core::array::from_fn(|r| _mm256_loadu_ps(x.add(at + r * stride)));
            // Pairs, then quads within 128-bit halves, then the halves.
            let mut t = [_mm256_setzero_ps(); 8];
            for i in 0..4 {
                t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            let mut u = [_mm256_setzero_ps(); 8];
            for i in 0..2 {
                for h in 0..2 {
                    let (a, b) = (t[4 * i + h], t[4 * i + 2 + h]);
                    u[4 * i + 2 * h] = _mm256_shuffle_ps::<0x44>(a, b);
                    u[4 * i + 2 * h + 1] = _mm256_shuffle_ps::<0xEE>(a, b);
                }
            }
            for j in 0..4 {
                out[j] = _mm256_permute2f128_ps::<0x20>(u[j], u[4 + j]);
                out[4 + j] = _mm256_permute2f128_ps::<0x31>(u[j], u[4 + j]);
            }
        }
    }
}

/// `1.5 * 2^23`, the rounding constant of `nearest_int`.
const MAGIC: f32 = 12582912.0;

#[target_feature(enable = "avx512f")]
fn qkx2_avx512(x: &[f32; BATCH * QK_K], nmax: i32, rmin: f32, nstep: i32) -> [MinSearch; BATCH] {
    // SAFETY: this function has avx512f.
    unsafe { qkx2_lanes::<__m512, 2>(x, nmax, rmin, nstep) }
}

#[target_feature(enable = "avx,avx2")]
fn qkx2_avx2(x: &[f32; BATCH * QK_K], nmax: i32, rmin: f32, nstep: i32) -> [MinSearch; BATCH] {
    // SAFETY: this function has avx2.
    unsafe { qkx2_lanes::<__m256, 4>(x, nmax, rmin, nstep) }
}

#[target_feature(enable = "avx512f")]
fn qx_avx512(x: &[f32; Q6_PAIR * QK_K]) -> [QxSearch; Q6_PAIR] {
    // SAFETY: this function has avx512f.
    unsafe { qx_lanes::<__m512, 2>(x) }
}

#[target_feature(enable = "avx,avx2")]
fn qx_avx2(x: &[f32; Q6_PAIR * QK_K]) -> [QxSearch; Q6_PAIR] {
    // SAFETY: this function has avx2.
    unsafe { qx_lanes::<__m256, 4>(x) }
}

#[target_feature(enable = "avx512f")]
fn q6_codes_avx512(x: &[f32; QK_K], search: &QxSearch, sc: &[i8; 16], d: f16) -> [u8; QK_K] {
    // SAFETY: this function has avx512f.
    unsafe { q6_codes::<__m512>(x, search, sc, d) }
}

#[target_feature(enable = "avx,avx2")]
fn q6_codes_avx2(x: &[f32; QK_K], search: &QxSearch, sc: &[i8; 16], d: f16) -> [u8; QK_K] {
    // SAFETY: this function has avx2.
    unsafe { q6_codes::<__m256>(x, search, sc, d) }
}

/// The final codes (`l + 32`) of a Q6_K super-block of finite values, as
/// [`BlockQ6_K::finish_with`] asks for them: group `j`'s are
/// `nearest_int(x / (d * sc[j]))` clamped to `-32..=31` (a quotient the
/// scalar code computes alike, one lane per value), or the search's where
/// `d * sc[j]` is 0 (`nearest_int(code_iscale * x)`, or 0 for a group
/// whose values are all below `GROUP_MAX_EPS`). [`Lanes::code`] is
/// `nearest_int` for every value, so quotients of any size round as in
/// the C.
///
/// # Safety
/// The caller has `L`'s features.
#[inline(always)]
unsafe fn q6_codes<L: Lanes>(
    x: &[f32; QK_K],
    search: &QxSearch,
    sc: &[i8; 16],
    d: f16,
) -> [u8; QK_K] {
    let mut l = [0u8; QK_K];
    let mut lanes = [0i32; 16];
    let d = d.to_f32();
    for (j, &s) in sc.iter().enumerate() {
        let dj = d * s as f32;
        for h in 0..16 / L::N {
            let at = 16 * j + h * L::N;
            // SAFETY: the caller has L's features; `at + N <= QK_K`, and
            // `lanes` holds `N <= 16` values.
            unsafe {
                let v = L::load(x.as_ptr().add(at));
                let q = if dj != 0.0 {
                    L::code(L::div(v, L::splat(dj)), -32, 31)
                } else if search.zero[j] {
                    L::splat(-32.0)
                } else {
                    L::code(L::mul(L::splat(search.code_iscale[j]), v), -32, 31)
                };
                L::store_i32(q, lanes.as_mut_ptr());
            }
            for k in 0..L::N {
                l[at + k] = (lanes[k] + 32) as u8;
            }
        }
    }
    l
}

/// Below this magnitude (2^22), [`Lanes::small_code`] is `nearest_int`.
const SMALL_CODE_LIMIT: f32 = 4194304.0;

/// The codes `q = nearest_int(iscale * (x - min))` clamped to `0..=nmax`
/// of one search of [`qkx2_lanes`] into `laux`, and its sums `(sum_l,
/// sum_l2, sum_xl)` of `w * q`, `w * q * q`, `w * q * x` in the C's order.
/// `SMALL`: every `|iscale * (x - min)|` is below [`SMALL_CODE_LIMIT`]
/// (three operations fewer per code).
///
/// # Safety
/// The caller has `L`'s features.
#[allow(clippy::type_complexity, clippy::needless_range_loop)]
#[inline(always)]
unsafe fn min_sums<L: Lanes, const G: usize, const SMALL: bool>(
    iscale: &[L; G],
    xt: &[[L; G]; 32],
    w: &[[L; G]; 32],
    min: &[L; G],
    nmax: i32,
    laux: &mut [[L; G]; 32],
) -> ([L; G], [L; G], [L; G]) {
    // SAFETY: the caller has L's features.
    unsafe {
        let zero = L::splat(0.0);
        let (mut sum_l, mut sum_l2, mut sum_xl) = ([zero; G], [zero; G], [zero; G]);
        for i in 0..32 {
            for g in 0..G {
                let q = if SMALL {
                    L::small_code(L::mul(iscale[g], L::sub(xt[i][g], min[g])), 0, nmax)
                } else {
                    code_with_min(iscale[g], xt[i][g], min[g], nmax)
                };
                laux[i][g] = q;
                let wq = L::mul(w[i][g], q);
                sum_l[g] = L::add(sum_l[g], wq);
                sum_l2[g] = L::add(sum_l2[g], L::mul(wq, q));
                sum_xl[g] = L::add(sum_xl[g], L::mul(wq, xt[i][g]));
            }
        }
        (sum_l, sum_l2, sum_xl)
    }
}

/// `nearest_int(iscale * (x - min))` clamped to `0..=nmax`, as f32.
#[inline(always)]
unsafe fn code_with_min<L: Lanes>(iscale: L, x: L, min: L, nmax: i32) -> L {
    // SAFETY: the caller has L's features.
    unsafe { L::code(L::mul(iscale, L::sub(x, min)), 0, nmax) }
}

/// `make_qkx2_quants(32, nmax, x, weights, L, &min, Laux, rmin, 0.1,
/// nstep, false)` with llama.cpp's Q4_K / Q5_K weights (`av_x + |x|`) for
/// the 32 sub-blocks of [`BATCH`] super-blocks: sub-block `s` of the batch
/// in lane `s % N` of group `s / N` (`G * N == 32`). Loops only, no
/// closures: a closure does not carry the caller's features.
///
/// # Safety
/// The caller has `L`'s features.
// The loops over groups index several arrays of groups in step.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn qkx2_lanes<L: Lanes, const G: usize>(
    x: &[f32; BATCH * QK_K],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> [MinSearch; BATCH] {
    const RDELTA: f32 = 0.1;
    const { assert!(G * L::N == 8 * BATCH) };
    // SAFETY (the whole body): the caller has L's features; the columns
    // read sub-block `g * N + s`'s elements `c * N..(c + 1) * N`, at
    // `32 * (g * N + s) + c * N + N <= BATCH * QK_K`, and the stores write `N` lanes at `g * N <= 32 - N`
    // of arrays of 32.
    unsafe {
        let zero = L::splat(0.0);
        // xt[i][g]: element i of the sub-blocks of group g; w: their weights.
        let mut xt = [[zero; G]; 32];
        let mut w = [[zero; G]; 32];
        let mut cols = [zero; 16];
        for g in 0..G {
            for c in 0..32 / L::N {
                L::columns(x.as_ptr(), 32 * g * L::N + c * L::N, 32, &mut cols);
                for i in 0..L::N {
                    xt[c * L::N + i][g] = cols[i];
                }
            }
        }
        let mut sum_x2 = [zero; G];
        for i in 0..32 {
            for g in 0..G {
                sum_x2[g] = L::add(sum_x2[g], L::mul(xt[i][g], xt[i][g]));
            }
        }
        for g in 0..G {
            let av_x = L::sqrt(L::div(sum_x2[g], L::splat(32.0)));
            for i in 0..32 {
                w[i][g] = L::add(av_x, L::abs(xt[i][g]));
            }
        }
        let (mut min, mut max) = (xt[0], xt[0]);
        let mut sum_w = w[0];
        let mut sum_x = [zero; G];
        for g in 0..G {
            sum_x[g] = L::mul(sum_w[g], xt[0][g]);
        }
        for i in 1..32 {
            for g in 0..G {
                let xi = xt[i][g];
                min[g] = L::select(L::lt(xi, min[g]), min[g], xi);
                max[g] = L::select(L::gt(xi, max[g]), max[g], xi);
                sum_w[g] = L::add(sum_w[g], w[i][g]);
                sum_x[g] = L::add(sum_x[g], L::mul(w[i][g], xi));
            }
        }
        let mut flat = [0u32; G];
        // The smallest values (before `min` is clamped to 0 and moves).
        let lowest = min;
        for g in 0..G {
            min[g] = L::select(L::gt(min[g], zero), min[g], zero);
            flat[g] = L::bits(L::eq(max[g], min[g]));
        }
        let flat_min = min;
        let nmax_f = nmax as f32;
        let mut iscale = [zero; G];
        let mut scale = [zero; G];
        let mut best_error = [zero; G];
        for g in 0..G {
            iscale[g] = L::div(L::splat(nmax_f), L::sub(max[g], min[g]));
            scale[g] = L::div(L::splat(1.0), iscale[g]);
            for i in 0..32 {
                let q = code_with_min(iscale[g], xt[i][g], min[g], nmax);
                let diff = L::sub(L::add(L::mul(scale[g], q), min[g]), xt[i][g]);
                best_error[g] = L::add(best_error[g], L::mul(w[i][g], L::mul(diff, diff)));
            }
        }
        let (mut code_iscale, mut code_min) = (iscale, min);
        let mut laux = [[zero; G]; 32];
        for is in 0..=nstep {
            // As in the C, `min` is the best solution's so far (it moves).
            let c = L::splat(rmin + RDELTA * is as f32 + nmax_f);
            for g in 0..G {
                iscale[g] = L::div(c, L::sub(max[g], min[g]));
            }
            // Every `iscale * (x - min)` of a lane lies between those of
            // its lowest and largest value (both roundings are monotonic):
            // when they are all below 2^22, `small_code` gives the codes.
            let mut small = true;
            for g in 0..G {
                let limit = L::splat(SMALL_CODE_LIMIT);
                let lo = L::abs(L::mul(iscale[g], L::sub(lowest[g], min[g])));
                let hi = L::abs(L::mul(iscale[g], L::sub(max[g], min[g])));
                small &= L::bits(L::and(L::lt(lo, limit), L::lt(hi, limit))) == (1 << L::N) - 1;
            }
            let (sum_l, sum_l2, sum_xl) = if small {
                min_sums::<L, G, true>(&iscale, &xt, &w, &min, nmax, &mut laux)
            } else {
                min_sums::<L, G, false>(&iscale, &xt, &w, &min, nmax, &mut laux)
            };
            let mut this_scale = [zero; G];
            let mut this_min = [zero; G];
            let mut det = [zero; G];
            for g in 0..G {
                let (sum_l, sum_l2, sum_xl) = (sum_l[g], sum_l2[g], sum_xl[g]);
                det[g] = L::sub(L::mul(sum_w[g], sum_l2), L::mul(sum_l, sum_l));
                let ts = L::div(
                    L::sub(L::mul(sum_w[g], sum_xl), L::mul(sum_x[g], sum_l)),
                    det[g],
                );
                let tm = L::div(
                    L::sub(L::mul(sum_l2, sum_x[g]), L::mul(sum_l, sum_xl)),
                    det[g],
                );
                let positive = L::gt(tm, zero);
                this_scale[g] = L::select(positive, ts, L::div(sum_xl, sum_l2));
                this_min[g] = L::select(positive, tm, zero);
            }
            let mut cur_error = [zero; G];
            for i in 0..32 {
                for g in 0..G {
                    let diff = L::sub(
                        L::add(L::mul(this_scale[g], laux[i][g]), this_min[g]),
                        xt[i][g],
                    );
                    cur_error[g] = L::add(cur_error[g], L::mul(w[i][g], L::mul(diff, diff)));
                }
            }
            for g in 0..G {
                let take = L::and(L::gt(det[g], zero), L::lt(cur_error[g], best_error[g]));
                code_iscale[g] = L::select(take, code_iscale[g], iscale[g]);
                code_min[g] = L::select(take, code_min[g], min[g]);
                best_error[g] = L::select(take, best_error[g], cur_error[g]);
                scale[g] = L::select(take, scale[g], this_scale[g]);
                min[g] = L::select(take, min[g], this_min[g]);
            }
        }
        // Lane values of the whole batch, sub-block by sub-block.
        let mut out = [[0.0f32; 8 * BATCH]; 4];
        let mut flat_bits = 0u64;
        for g in 0..G {
            let is_flat = L::eq(max[g], flat_min[g]);
            // A flat sub-block returns (0, -min) before the search.
            let at = g * L::N;
            L::store(
                L::select(is_flat, scale[g], zero),
                out[0][at..].as_mut_ptr(),
            );
            L::store(
                L::neg(L::select(is_flat, min[g], flat_min[g])),
                out[1][at..].as_mut_ptr(),
            );
            L::store(code_iscale[g], out[2][at..].as_mut_ptr());
            L::store(code_min[g], out[3][at..].as_mut_ptr());
            flat_bits |= (flat[g] as u64) << at;
        }
        let mut searches = [MinSearch::default(); BATCH];
        for (b, search) in searches.iter_mut().enumerate() {
            for s in 0..8 {
                let j = 8 * b + s;
                search.scale[s] = out[0][j];
                search.the_min[s] = out[1][j];
                search.code_iscale[s] = out[2][j];
                search.code_min[s] = out[3][j];
                search.flat[s] = flat_bits & (1 << j) != 0;
            }
        }
        searches
    }
}

/// `make_qx_quants(16, 32, x, L, 1, NULL)` (weights `x * x`) for the 16
/// groups of each of [`Q6_PAIR`] Q6_K super-blocks: group `j` of the pair
/// (`x[16 * j..][..16]`) in lane `j % N` of vector `j / N` (`G * N == 32`).
///
/// The codes take [`Lanes::small_code`]: every `|iscale * x|` is below 33
/// (33 / `max` times at most `|max|`) in groups of finite values whose
/// largest magnitude is at least `GROUP_MAX_EPS`; the other groups'
/// results are not used (codes and scale 0, or the super-block goes to the
/// scalar reference).
///
/// # Safety
/// The caller has `L`'s features.
#[allow(clippy::needless_range_loop)]
#[inline(always)]
unsafe fn qx_lanes<L: Lanes, const G: usize>(x: &[f32; Q6_PAIR * QK_K]) -> [QxSearch; Q6_PAIR] {
    const GROUPS: usize = 16 * Q6_PAIR;
    const { assert!(G * L::N == GROUPS) };
    // SAFETY (the whole body): the caller has L's features; the columns
    // read group `g * N + s`'s elements `c * N..(c + 1) * N`, at
    // `16 * (g * N + s) + c * N + N <= Q6_PAIR * QK_K`, and the stores write `N` lanes at
    // `g * N <= GROUPS - N` of arrays of `GROUPS`.
    unsafe {
        let zero = L::splat(0.0);
        let mut xt = [[zero; G]; 16];
        // w * x and w of each element (`w * x * l`, `w * l * l` in the C).
        let (mut w, mut wx) = ([[zero; G]; 16], [[zero; G]; 16]);
        let mut cols = [zero; 16];
        for g in 0..G {
            for c in 0..16 / L::N {
                L::columns(x.as_ptr(), 16 * g * L::N + c * L::N, 16, &mut cols);
                for i in 0..L::N {
                    xt[c * L::N + i][g] = cols[i];
                }
            }
        }
        let (mut max, mut amax) = ([zero; G], [zero; G]);
        for i in 0..16 {
            for g in 0..G {
                let xi = xt[i][g];
                let larger = L::gt(L::abs(xi), amax[g]);
                amax[g] = L::select(larger, amax[g], L::abs(xi));
                max[g] = L::select(larger, max[g], xi);
                w[i][g] = L::mul(xi, xi);
                wx[i][g] = L::mul(w[i][g], xi);
            }
        }
        let (mut scale, mut best, mut code_iscale) = ([zero; G], [zero; G], [zero; G]);
        for is in -10..=9 {
            // -10 stands for the first search, with iscale -32 / max.
            if is == 0 {
                continue;
            }
            let c = if is == -10 {
                -32.0
            } else {
                -(32.0 + 0.1 * is as f32)
            };
            let mut iscale = [zero; G];
            let (mut sumlx, mut suml2) = ([zero; G], [zero; G]);
            for g in 0..G {
                iscale[g] = L::div(L::splat(c), max[g]);
            }
            for i in 0..16 {
                for g in 0..G {
                    let l = L::small_code(L::mul(iscale[g], xt[i][g]), -32, 31);
                    sumlx[g] = L::add(sumlx[g], L::mul(wx[i][g], l));
                    suml2[g] = L::add(suml2[g], L::mul(L::mul(w[i][g], l), l));
                }
            }
            for g in 0..G {
                if is == -10 {
                    let nonzero = L::ne(suml2[g], zero);
                    scale[g] = L::select(nonzero, zero, L::div(sumlx[g], suml2[g]));
                    best[g] = L::mul(scale[g], sumlx[g]);
                    code_iscale[g] = iscale[g];
                } else {
                    let take = L::and(
                        L::gt(suml2[g], zero),
                        L::gt(L::mul(sumlx[g], sumlx[g]), L::mul(best[g], suml2[g])),
                    );
                    scale[g] = L::select(take, scale[g], L::div(sumlx[g], suml2[g]));
                    best[g] = L::select(take, best[g], L::mul(scale[g], sumlx[g]));
                    code_iscale[g] = L::select(take, code_iscale[g], iscale[g]);
                }
            }
        }
        let (mut scales, mut iscales) = ([0.0f32; GROUPS], [0.0f32; GROUPS]);
        let mut small_bits = 0u64;
        for g in 0..G {
            let small = L::lt(amax[g], L::splat(GROUP_MAX_EPS));
            let at = g * L::N;
            L::store(L::select(small, scale[g], zero), scales[at..].as_mut_ptr());
            L::store(code_iscale[g], iscales[at..].as_mut_ptr());
            small_bits |= (L::bits(small) as u64) << at;
        }
        core::array::from_fn(|b| {
            let mut search = QxSearch::default();
            for j in 0..16 {
                let at = 16 * b + j;
                search.scale[j] = scales[at];
                search.code_iscale[j] = iscales[at];
                search.zero[j] = small_bits & (1 << at) != 0;
            }
            search
        })
    }
}
