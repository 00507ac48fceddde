//! The scale searches of the k-quant quantizers (llama.cpp's
//! `make_qkx2_quants` for Q4_K / Q5_K, `make_qx_quants` for Q6_K) with
//! AVX-512, one sub-block per 32-bit lane: sixteen 32-value sub-blocks (two
//! Q4_K / Q5_K super-blocks) or the sixteen 16-value groups of one Q6_K
//! super-block side by side.
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
//! A super-block holding a NaN takes the scalar reference: which NaN
//! payload an operation passes on may differ between two instruction
//! orders. NaN made from other values (infinities) is the default NaN
//! either way. The portable loops of the load clones measured 5-10x slower
//! here: the compiler turns the per-lane selects of fixed-size arrays
//! into shuffles and scalar code.

use super::panel_rows::{transpose, Avx512};
use crate::formats::{
    BlockQ4_K, BlockQ5_K, BlockQ6_K, MinSearch, PackedBlock, QxSearch, WeightFormat, GROUP_MAX_EPS,
    QK_K,
};
use core::arch::x86_64::*;

/// Quantizes `x` into `out` (llama.cpp's reference bytes) with the lane
/// searches when `B` is Q4_K, Q5_K or Q6_K and returns true; returns false,
/// writing nothing, for other formats. Panics unless `x.len() ==
/// out.len() * B::VALUES`.
#[inline(always)]
pub(crate) fn quantize_blocks<B: PackedBlock>(t: Avx512, x: &[f32], out: &mut [B]) -> bool {
    assert_eq!(
        x.len(),
        out.len() * B::VALUES,
        "quantize_blocks: length mismatch"
    );
    match B::FORMAT {
        WeightFormat::Q4_K => {
            with_min(t, x, bytemuck::cast_slice_mut(out), 15, -1.0, 20, |x, s| {
                BlockQ4_K::from_search(x, s)
            })
        }
        WeightFormat::Q5_K => {
            with_min(t, x, bytemuck::cast_slice_mut(out), 31, -0.5, 15, |x, s| {
                BlockQ5_K::from_search(x, s)
            })
        }
        WeightFormat::Q6_K => {
            let out: &mut [BlockQ6_K] = bytemuck::cast_slice_mut(out);
            for (x, o) in x.chunks_exact(QK_K).zip(out) {
                let x: &[f32; QK_K] = x.try_into().unwrap();
                *o = if !all_finite(x) {
                    BlockQ6_K::quantize(x)
                } else {
                    // SAFETY: the token proves AVX-512F.
                    let search = unsafe { qx_lanes(x) };
                    BlockQ6_K::from_search(x, &search)
                };
            }
        }
        _ => return false,
    }
    true
}

#[inline(always)]
fn has_nan(x: &[f32]) -> bool {
    x.iter().fold(false, |nan, v| nan | v.is_nan())
}

#[inline(always)]
fn all_finite(x: &[f32]) -> bool {
    x.iter().fold(true, |finite, v| finite & v.is_finite())
}

/// Super-blocks per call of [`qkx2_lanes`]: two per group of 16 lanes,
/// `GROUPS` groups interleaved so that their serial chains (each candidate
/// needs the `min` the previous one chose) overlap.
const GROUPS: usize = 2;
const BATCH: usize = 2 * GROUPS;

/// Q4_K / Q5_K: the searches of [`BATCH`] super-blocks at a time (the last
/// ones next to zeros), then `finish` of each.
#[inline(always)]
fn with_min<B: PackedBlock>(
    _: Avx512,
    x: &[f32],
    out: &mut [B],
    nmax: i32,
    rmin: f32,
    nstep: i32,
    finish: impl Fn(&[f32; QK_K], &MinSearch) -> B,
) {
    let mut batch = [0.0f32; BATCH * QK_K];
    for (x, out) in x.chunks(BATCH * QK_K).zip(out.chunks_mut(BATCH)) {
        let batch: &[f32] = if x.len() == batch.len() {
            x
        } else {
            batch[..x.len()].copy_from_slice(x);
            batch[x.len()..].fill(0.0);
            &batch
        };
        // SAFETY: the token proves AVX-512F.
        let searches = unsafe { qkx2_lanes::<GROUPS>(batch, nmax, rmin, nstep) };
        for ((x, o), search) in x.chunks_exact(QK_K).zip(out).zip(searches.iter().flatten()) {
            let x: &[f32; QK_K] = x.try_into().unwrap();
            *o = if has_nan(x) {
                B::quantize(x)
            } else {
                finish(x, search)
            };
        }
    }
}

/// `nearest_int` of each lane (see `formats::kquant`): the low mantissa
/// bits of `v + 1.5 * 2^23`, minus `2^22`.
#[inline]
#[target_feature(enable = "avx512f")]
fn nearest_int(v: __m512) -> __m512i {
    let m = _mm512_castps_si512(_mm512_add_ps(v, _mm512_set1_ps(12582912.0)));
    _mm512_sub_epi32(
        _mm512_and_si512(m, _mm512_set1_epi32(0x007F_FFFF)),
        _mm512_set1_epi32(0x0040_0000),
    )
}

/// `nearest_int(v)` clamped to `lo..=hi`, as f32.
#[inline]
#[target_feature(enable = "avx512f")]
fn code(v: __m512, lo: i32, hi: i32) -> __m512 {
    let q = _mm512_max_epi32(nearest_int(v), _mm512_set1_epi32(lo));
    _mm512_cvtepi32_ps(_mm512_min_epi32(q, _mm512_set1_epi32(hi)))
}

/// [`code`] of `|v| < 2^22`, in f32: the clamp on `v + 1.5 * 2^23`, whose
/// integer value is `1.5 * 2^23 + nearest_int(v)` there, then the offset
/// taken off again (exact), two operations fewer than [`code`]. Other lanes
/// get other values.
#[inline]
#[target_feature(enable = "avx512f")]
fn small_code(v: __m512, lo: i32, hi: i32) -> __m512 {
    const MAGIC: f32 = 12582912.0;
    let m = _mm512_add_ps(v, _mm512_set1_ps(MAGIC));
    let m = _mm512_max_ps(m, _mm512_set1_ps(MAGIC + lo as f32));
    let m = _mm512_min_ps(m, _mm512_set1_ps(MAGIC + hi as f32));
    _mm512_sub_ps(m, _mm512_set1_ps(MAGIC))
}

/// `if mask { b } else { a }` per lane.
#[inline]
#[target_feature(enable = "avx512f")]
fn select(mask: __mmask16, a: __m512, b: __m512) -> __m512 {
    _mm512_mask_blend_ps(mask, a, b)
}

/// The 16 lanes as an array.
#[inline]
#[target_feature(enable = "avx512f")]
fn lanes(v: __m512) -> [f32; 16] {
    let mut out = [0.0f32; 16];
    // SAFETY: `out` holds 16 f32; `storeu` takes any alignment.
    unsafe { _mm512_storeu_ps(out.as_mut_ptr(), v) };
    out
}

/// Rows of 16 values from `x` at `at`, `at + stride`, ... (16 rows),
/// transposed: lane `s` of result `i` is `x[at + s * stride + i]`.
#[inline]
#[target_feature(enable = "avx512f")]
fn columns(x: &[f32], at: usize, stride: usize) -> [__m512; 16] {
    assert!(at + 15 * stride + 16 <= x.len());
    let rows: [__m512; 16] = core::array::from_fn(|s| {
        // SAFETY: row `s` ends at `at + s * stride + 16`, inside `x`
        // (asserted above); `loadu` takes any alignment.
        unsafe { _mm512_loadu_ps(x.as_ptr().add(at + s * stride)) }
    });
    transpose(rows)
}

/// `make_qkx2_quants(32, nmax, x, weights, L, &min, Laux, rmin, 0.1,
/// nstep, false)` with llama.cpp's Q4_K / Q5_K weights (`av_x + |x|`) for
/// the sub-blocks of `2 * G` super-blocks (`x.len() == 2 * G * QK_K`,
/// panics otherwise): sub-block `s` of super-blocks `2g, 2g + 1` in lane
/// `s` of group `g`.
// The loops over groups index several arrays of groups in step.
#[allow(clippy::needless_range_loop)]
#[target_feature(enable = "avx512f")]
fn qkx2_lanes<const G: usize>(x: &[f32], nmax: i32, rmin: f32, nstep: i32) -> [[MinSearch; 2]; G] {
    const RDELTA: f32 = 0.1;
    assert_eq!(x.len(), 2 * G * QK_K);
    type V<const G: usize> = [__m512; G];
    let zero = _mm512_setzero_ps();
    let each = |f: &mut dyn FnMut(usize) -> __m512| -> [__m512; G] { core::array::from_fn(f) };
    // xt[i][g]: element i of every sub-block of group g.
    let mut xt = [[zero; G]; 32];
    for g in 0..G {
        let lo = columns(x, 2 * g * QK_K, 32);
        let hi = columns(x, 2 * g * QK_K + 16, 32);
        for i in 0..16 {
            xt[i][g] = lo[i];
            xt[16 + i][g] = hi[i];
        }
    }
    let mut sum_x2: V<G> = [zero; G];
    for xi in &xt {
        sum_x2 = each(&mut |g| _mm512_add_ps(sum_x2[g], _mm512_mul_ps(xi[g], xi[g])));
    }
    let av_x = each(&mut |g| _mm512_sqrt_ps(_mm512_div_ps(sum_x2[g], _mm512_set1_ps(32.0))));
    let w: [V<G>; 32] =
        core::array::from_fn(|i| each(&mut |g| _mm512_add_ps(av_x[g], _mm512_abs_ps(xt[i][g]))));
    let (mut min, mut max) = (xt[0], xt[0]);
    let mut sum_w = w[0];
    let mut sum_x = each(&mut |g| _mm512_mul_ps(sum_w[g], xt[0][g]));
    for i in 1..32 {
        for g in 0..G {
            let xi = xt[i][g];
            min[g] = select(_mm512_cmp_ps_mask::<_CMP_LT_OQ>(xi, min[g]), min[g], xi);
            max[g] = select(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(xi, max[g]), max[g], xi);
            sum_w[g] = _mm512_add_ps(sum_w[g], w[i][g]);
            sum_x[g] = _mm512_add_ps(sum_x[g], _mm512_mul_ps(w[i][g], xi));
        }
    }
    let mut flat = [0; G];
    for g in 0..G {
        min[g] = select(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(min[g], zero), min[g], zero);
        flat[g] = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(max[g], min[g]);
    }
    let flat_min = min;
    let nmax_f = nmax as f32;
    let code_of = |iscale: __m512, xi: __m512, min: __m512| {
        code(_mm512_mul_ps(iscale, _mm512_sub_ps(xi, min)), 0, nmax)
    };
    let iscale =
        each(&mut |g| _mm512_div_ps(_mm512_set1_ps(nmax_f), _mm512_sub_ps(max[g], min[g])));
    let mut scale = each(&mut |g| _mm512_div_ps(_mm512_set1_ps(1.0), iscale[g]));
    let mut best_error = [zero; G];
    for (xi, wi) in xt.iter().zip(&w) {
        for g in 0..G {
            let q = code_of(iscale[g], xi[g], min[g]);
            let diff = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(scale[g], q), min[g]), xi[g]);
            best_error[g] = _mm512_add_ps(
                best_error[g],
                _mm512_mul_ps(wi[g], _mm512_mul_ps(diff, diff)),
            );
        }
    }
    let (mut code_iscale, mut code_min) = (iscale, min);
    let mut laux = [[zero; G]; 32];
    for is in 0..=nstep {
        // As in the C, `min` is the best solution's so far (it moves).
        let c = _mm512_set1_ps(rmin + RDELTA * is as f32 + nmax_f);
        let iscale = each(&mut |g| _mm512_div_ps(c, _mm512_sub_ps(max[g], min[g])));
        let (mut sum_l, mut sum_l2, mut sum_xl) = ([zero; G], [zero; G], [zero; G]);
        for ((xi, wi), la) in xt.iter().zip(&w).zip(laux.iter_mut()) {
            for g in 0..G {
                let q = code_of(iscale[g], xi[g], min[g]);
                la[g] = q;
                let wq = _mm512_mul_ps(wi[g], q);
                sum_l[g] = _mm512_add_ps(sum_l[g], wq);
                sum_l2[g] = _mm512_add_ps(sum_l2[g], _mm512_mul_ps(wq, q));
                sum_xl[g] = _mm512_add_ps(sum_xl[g], _mm512_mul_ps(wq, xi[g]));
            }
        }
        let mut this_scale = [zero; G];
        let mut this_min = [zero; G];
        let mut det = [zero; G];
        for g in 0..G {
            let (sum_l, sum_l2, sum_xl) = (sum_l[g], sum_l2[g], sum_xl[g]);
            det[g] = _mm512_sub_ps(_mm512_mul_ps(sum_w[g], sum_l2), _mm512_mul_ps(sum_l, sum_l));
            let ts = _mm512_div_ps(
                _mm512_sub_ps(
                    _mm512_mul_ps(sum_w[g], sum_xl),
                    _mm512_mul_ps(sum_x[g], sum_l),
                ),
                det[g],
            );
            let tm = _mm512_div_ps(
                _mm512_sub_ps(
                    _mm512_mul_ps(sum_l2, sum_x[g]),
                    _mm512_mul_ps(sum_l, sum_xl),
                ),
                det[g],
            );
            let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(tm, zero);
            this_scale[g] = select(positive, ts, _mm512_div_ps(sum_xl, sum_l2));
            this_min[g] = select(positive, tm, zero);
        }
        let mut cur_error = [zero; G];
        for ((xi, wi), la) in xt.iter().zip(&w).zip(&laux) {
            for g in 0..G {
                let diff = _mm512_sub_ps(
                    _mm512_add_ps(_mm512_mul_ps(this_scale[g], la[g]), this_min[g]),
                    xi[g],
                );
                cur_error[g] = _mm512_add_ps(
                    cur_error[g],
                    _mm512_mul_ps(wi[g], _mm512_mul_ps(diff, diff)),
                );
            }
        }
        for g in 0..G {
            let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(det[g], zero)
                & _mm512_cmp_ps_mask::<_CMP_LT_OQ>(cur_error[g], best_error[g]);
            code_iscale[g] = select(take, code_iscale[g], iscale[g]);
            code_min[g] = select(take, code_min[g], min[g]);
            best_error[g] = select(take, best_error[g], cur_error[g]);
            scale[g] = select(take, scale[g], this_scale[g]);
            min[g] = select(take, min[g], this_min[g]);
        }
    }
    core::array::from_fn(|g| {
        // A flat sub-block returns (0, -min) before the search.
        let scale = lanes(select(flat[g], scale[g], zero));
        // -min: the sign bit flipped.
        let min = _mm512_castps_si512(select(flat[g], min[g], flat_min[g]));
        let the_min = lanes(_mm512_castsi512_ps(_mm512_xor_si512(
            min,
            _mm512_set1_epi32(i32::MIN),
        )));
        let (code_iscale, code_min) = (lanes(code_iscale[g]), lanes(code_min[g]));
        core::array::from_fn(|b| {
            let part = |v: &[f32; 16]| -> [f32; 8] { v[8 * b..8 * b + 8].try_into().unwrap() };
            MinSearch {
                scale: part(&scale),
                the_min: part(&the_min),
                code_iscale: part(&code_iscale),
                code_min: part(&code_min),
                flat: core::array::from_fn(|s| flat[g] & (1 << (8 * b + s)) != 0),
            }
        })
    })
}

/// `make_qx_quants(16, 32, x, L, 1, NULL)` (weights `x * x`) for the 16
/// groups of a Q6_K super-block of finite values, group `g` in lane `g`.
///
/// The codes take [`small_code`]: every `|iscale * x|` is below 33 (33 /
/// `max` times at most `|max|`) in groups of finite values whose largest
/// magnitude is at least `GROUP_MAX_EPS`; the other groups' results are
/// not used (codes and scale 0).
#[target_feature(enable = "avx512f")]
fn qx_lanes(x: &[f32; QK_K]) -> QxSearch {
    let xt = columns(x, 0, 16);
    let zero = _mm512_setzero_ps();
    let (mut max, mut amax) = (zero, zero);
    for &xi in &xt {
        let ax = _mm512_abs_ps(xi);
        let larger = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(ax, amax);
        amax = select(larger, amax, ax);
        max = select(larger, max, xi);
    }
    let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(amax, _mm512_set1_ps(GROUP_MAX_EPS));
    // w * x and w of each element (`w * x * l`, `w * l * l` in the C).
    let w: [__m512; 16] = core::array::from_fn(|i| _mm512_mul_ps(xt[i], xt[i]));
    let wx: [__m512; 16] = core::array::from_fn(|i| _mm512_mul_ps(w[i], xt[i]));
    let sums = |iscale: __m512| {
        let (mut sumlx, mut suml2) = (zero, zero);
        for i in 0..16 {
            let l = small_code(_mm512_mul_ps(iscale, xt[i]), -32, 31);
            sumlx = _mm512_add_ps(sumlx, _mm512_mul_ps(wx[i], l));
            suml2 = _mm512_add_ps(suml2, _mm512_mul_ps(_mm512_mul_ps(w[i], l), l));
        }
        (sumlx, suml2)
    };
    let iscale = _mm512_div_ps(_mm512_set1_ps(-32.0), max);
    let (sumlx, suml2) = sums(iscale);
    let nonzero = _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(suml2, zero);
    let mut scale = select(nonzero, zero, _mm512_div_ps(sumlx, suml2));
    let mut best = _mm512_mul_ps(scale, sumlx);
    let mut code_iscale = iscale;
    for is in (-9..=9).filter(|&is| is != 0) {
        let iscale = _mm512_div_ps(_mm512_set1_ps(-(32.0 + 0.1 * is as f32)), max);
        let (sumlx, suml2) = sums(iscale);
        let take = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(suml2, zero)
            & _mm512_cmp_ps_mask::<_CMP_GT_OQ>(
                _mm512_mul_ps(sumlx, sumlx),
                _mm512_mul_ps(best, suml2),
            );
        scale = select(take, scale, _mm512_div_ps(sumlx, suml2));
        best = select(take, best, _mm512_mul_ps(scale, sumlx));
        code_iscale = select(take, code_iscale, iscale);
    }
    QxSearch {
        scale: lanes(select(small, scale, zero)),
        code_iscale: lanes(code_iscale),
        zero: core::array::from_fn(|g| small & (1 << g) != 0),
    }
}
