//! What the k-quant formats (Q4_K, Q5_K, Q6_K) share: llama.cpp's scale
//! searches (`make_qkx2_quants`, `make_qx_quants`), its `nearest_int`, the
//! 6-bit scale packing of Q4_K / Q5_K, and their packed panel layout.
//!
//! Ported operation for operation from `ggml-quants.c`, which llama.cpp
//! builds for baseline x86-64 in its ggml-base library: every f32 operation
//! is one rounded SSE operation in C's evaluation order (no FMA contraction,
//! `FLT_EVAL_METHOD == 0`), and Rust never contracts or reorders either, so
//! the bytes are the C reference's.
//!
//! Packed form of a super-block (one row's part of a panel, in lane groups
//! of 4 bytes; see [`crate::pack`]): each 32-value sub-block `s` has `G`
//! code groups at `s * G`. Q4_K: four groups of nibbles as Q4_0 lays them
//! out (byte `b` of 16: the low 4 bits of element `b` in its low nibble, of
//! element `b + 16` in its high nibble), so a sub-block is packed as a
//! Q4_1 block. Q5_K: five groups of 5-bit codes as Q5_0 / Q5_1 pack them
//! ([`super::q5_packed_group`]), a sub-block as a Q5_1 block. Q6_K: four nibble
//! groups as Q4_K's (the low 4 bits), then two groups of 2-bit high parts,
//! one per 16-value half (byte `i`, bits `2j..2j+2`: element `4j + i` of
//! the half, so that the high bits of the four elements a nibble byte
//! position holds across the four nibble groups sit in one byte, and one
//! shift and mask per group moves them to bits 4-5). The 4 scale groups after
//! the codes (stored in the scales region) hold 16 bytes of sub-block scales:
//! Q4_K / Q5_K the eight 6-bit scales then the eight 6-bit minimums, one per
//! byte; Q6_K its sixteen int8 scales.

use super::{f16_to_f32, word, SubScale, QK, QK_K};
use half::f16;

/// llama.cpp's `GROUP_MAX_EPS`: groups whose largest magnitude is below it
/// quantize to zero.
pub(crate) const GROUP_MAX_EPS: f32 = 1e-15;

/// Lane groups of sub-block scales of a packed super-block.
pub(super) const SCALE_GROUPS: usize = 4;

/// llama.cpp's `nearest_int`: round to nearest, ties to even, through the
/// mantissa of `v + 1.5 * 2^23`; exact for `|v| <= 4194303` (which the C
/// asserts only in debug builds; beyond it, and for NaN, this gives the C
/// release build's result).
#[inline(always)]
pub(super) fn nearest_int(v: f32) -> i32 {
    let val = v + 12582912.0;
    (val.to_bits() as i32 & 0x007F_FFFF) - 0x0040_0000
}

/// llama.cpp's `make_qkx2_quants` for 32 values (`use_mad` false): codes
/// `0..=nmax` into `l`, returns `(scale, the_min)` (`the_min` = minus the
/// minimum, `>= 0` or NaN).
#[allow(clippy::too_many_arguments)]
pub(super) fn make_qkx2_quants(
    nmax: i32,
    x: &[f32; QK],
    weights: &[f32; QK],
    l: &mut [u8; QK],
    rmin: f32,
    rdelta: f32,
    nstep: i32,
) -> (f32, f32) {
    let mut laux = [0u8; QK];
    let mut min = x[0];
    let mut max = x[0];
    let mut sum_w = weights[0];
    let mut sum_x = sum_w * x[0];
    for i in 1..QK {
        if x[i] < min {
            min = x[i];
        }
        if x[i] > max {
            max = x[i];
        }
        let w = weights[i];
        sum_w += w;
        sum_x += w * x[i];
    }
    if min > 0.0 {
        min = 0.0;
    }
    if max == min {
        l.fill(0);
        return (0.0, -min);
    }
    let mut iscale = nmax as f32 / (max - min);
    let mut scale = 1.0 / iscale;
    let mut best_error = 0.0f32;
    for i in 0..QK {
        let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
        l[i] = q as u8;
        let diff = scale * q as f32 + min - x[i];
        best_error += weights[i] * (diff * diff);
    }
    for is in 0..=nstep {
        iscale = (rmin + rdelta * is as f32 + nmax as f32) / (max - min);
        let (mut sum_l, mut sum_l2, mut sum_xl) = (0.0f32, 0.0f32, 0.0f32);
        for i in 0..QK {
            let q = nearest_int(iscale * (x[i] - min)).clamp(0, nmax);
            laux[i] = q as u8;
            let (w, qf) = (weights[i], q as f32);
            sum_l += w * qf;
            sum_l2 += w * qf * qf;
            sum_xl += w * qf * x[i];
        }
        let det = sum_w * sum_l2 - sum_l * sum_l;
        if det > 0.0 {
            let mut this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
            let mut this_min = (sum_l2 * sum_x - sum_l * sum_xl) / det;
            if this_min > 0.0 {
                this_min = 0.0;
                this_scale = sum_xl / sum_l2;
            }
            let mut cur_error = 0.0f32;
            for i in 0..QK {
                let diff = this_scale * laux[i] as f32 + this_min - x[i];
                cur_error += weights[i] * (diff * diff);
            }
            if cur_error < best_error {
                *l = laux;
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    (scale, -min)
}

/// llama.cpp's `make_qx_quants(16, 32, x, L, 1, NULL)` (Q6_K's search, with
/// weights `x * x`): codes `l + 32` (0..64) into `codes`, returns the scale.
pub(super) fn make_qx_quants_q6(x: &[f32; 16], codes: &mut [u8; 16]) -> f32 {
    const NMAX: i32 = 32;
    let (mut max, mut amax) = (0.0f32, 0.0f32);
    for &v in x {
        let ax = v.abs();
        if ax > amax {
            amax = ax;
            max = v;
        }
    }
    if amax < GROUP_MAX_EPS {
        codes.fill(0);
        return 0.0;
    }
    let code = |iscale: f32, v: f32| nearest_int(iscale * v).clamp(-NMAX, NMAX - 1);
    let sums = |iscale: f32| {
        let (mut sumlx, mut suml2) = (0.0f32, 0.0f32);
        for &v in x {
            let l = code(iscale, v) as f32;
            let w = v * v;
            sumlx += w * v * l;
            suml2 += w * l * l;
        }
        (sumlx, suml2)
    };
    let iscale = -NMAX as f32 / max;
    for (c, &v) in codes.iter_mut().zip(x) {
        *c = (code(iscale, v) + NMAX) as u8;
    }
    let (sumlx, suml2) = sums(iscale);
    let mut scale = if suml2 != 0.0 { sumlx / suml2 } else { 0.0 };
    let mut best = scale * sumlx;
    for is in -9..=9 {
        if is == 0 {
            continue;
        }
        let iscale = -(NMAX as f32 + 0.1 * is as f32) / max;
        let (sumlx, suml2) = sums(iscale);
        if suml2 > 0.0 && sumlx * sumlx > best * suml2 {
            for (c, &v) in codes.iter_mut().zip(x) {
                *c = (code(iscale, v) + NMAX) as u8;
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    scale
}

/// What [`make_qx_quants_q6`] found for the sixteen 16-value groups of a
/// super-block when it ran elsewhere (the x86 lane searches): the scale,
/// and instead of the codes the `iscale` that made them (`zero`: a group
/// below [`GROUP_MAX_EPS`], codes 0).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct QxSearch {
    pub(crate) scale: [f32; 16],
    pub(crate) code_iscale: [f32; 16],
    pub(crate) zero: [bool; 16],
}

/// The eight 6-bit scales and minimums of Q4_K / Q5_K from their 12 bytes
/// (llama.cpp's `get_scale_min_k4` for `j = 0..8`).
#[inline(always)]
pub(super) fn unpack_scales(q: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..8 {
        if j < 4 {
            sc[j] = q[j] & 63;
            mn[j] = q[j + 4] & 63;
        } else {
            sc[j] = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
            mn[j] = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
    }
    (sc, mn)
}

/// The 12 bytes of eight 6-bit scales and minimums (values above 63 keep
/// their low 6 bits), as llama.cpp's quantizers pack them.
#[inline]
pub(super) fn pack_scales(sc: &[u8; 8], mn: &[u8; 8]) -> [u8; 12] {
    let mut q = [0u8; 12];
    for j in 0..8 {
        let (ls, lm) = (sc[j] & 63, mn[j] & 63);
        if j < 4 {
            q[j] = ls;
            q[j + 4] = lm;
        } else {
            q[j + 4] = (ls & 0xF) | ((lm & 0xF) << 4);
            q[j - 4] |= (ls >> 4) << 6;
            q[j] |= (lm >> 4) << 6;
        }
    }
    q
}

/// The first half of `quantize_row_q4_K_ref` / `_q5_K_ref` for one
/// super-block: codes `0..=nmax` of the 256 values, the f16 `d` and `dmin`
/// and the eight 6-bit scales and minimums.
pub(super) fn quantize_with_min(
    x: &[f32; 256],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> ([u8; 256], half::f16, half::f16, [u8; 8], [u8; 8]) {
    let mut l = [0u8; 256];
    let mut scales = [0.0f32; 8];
    let mut mins = [0.0f32; 8];
    for j in 0..8 {
        let xs: &[f32; QK] = x[QK * j..QK * (j + 1)].try_into().unwrap();
        let mut sum_x2 = 0.0f32;
        for &v in xs {
            sum_x2 += v * v;
        }
        let av_x = (sum_x2 / 32.0).sqrt();
        let weights: [f32; QK] = core::array::from_fn(|i| av_x + xs[i].abs());
        let ls: &mut [u8; QK] = (&mut l[QK * j..QK * (j + 1)]).try_into().unwrap();
        let (scale, min) = make_qkx2_quants(nmax, xs, &weights, ls, rmin, 0.1, nstep);
        scales[j] = scale;
        mins[j] = min;
    }
    finish_with_min(x, nmax, |i| l[i], &scales, &mins)
}

/// [`quantize_with_min`] with the eight sub-blocks' searches run side by
/// side, sub-block `s` in lane `s` of `[f32; 8]` arrays: each lane performs
/// exactly the reference's operations in the reference's order (branches
/// become per-lane selects), so the bytes are the same, but the eight
/// serial sums of each step advance together (the compiler makes them
/// vector operations) instead of one after another.
///
/// A super-block holding a NaN runs [`quantize_with_min`] itself: which NaN
/// payload an operation passes on (and so the code `nearest_int` makes of
/// it) may differ between two instruction orders. NaN made from other
/// values is always the default NaN, whose code does not depend on it.
#[inline(always)]
pub(super) fn quantize_with_min_vectorized(
    x: &[f32; 256],
    nmax: i32,
    rmin: f32,
    nstep: i32,
) -> ([u8; 256], half::f16, half::f16, [u8; 8], [u8; 8]) {
    if x.iter().fold(false, |nan, v| nan | v.is_nan()) {
        return quantize_with_min(x, nmax, rmin, nstep);
    }
    type V = [f32; 8];
    const RDELTA: f32 = 0.1;
    // Whole-lane steps (each an `array::from_fn` over the 8 lanes) so that
    // every step is one vector operation.
    #[inline(always)]
    fn lanes<T>(f: impl FnMut(usize) -> T) -> [T; 8] {
        core::array::from_fn(f)
    }
    // xt[i][s] = element i of sub-block s.
    let xt: [V; QK] = core::array::from_fn(|i| lanes(|s| x[QK * s + i]));
    let mut sum_x2: V = [0.0; 8];
    for xi in &xt {
        sum_x2 = lanes(|s| sum_x2[s] + xi[s] * xi[s]);
    }
    let av_x: V = lanes(|s| (sum_x2[s] / 32.0).sqrt());
    let w: [V; QK] = core::array::from_fn(|i| lanes(|s| av_x[s] + xt[i][s].abs()));
    // make_qkx2_quants, lane by lane.
    let (mut min, mut max) = (xt[0], xt[0]);
    let mut sum_w = w[0];
    let mut sum_x: V = lanes(|s| sum_w[s] * xt[0][s]);
    for (xi, wi) in xt.iter().zip(&w).skip(1) {
        min = lanes(|s| if xi[s] < min[s] { xi[s] } else { min[s] });
        max = lanes(|s| if xi[s] > max[s] { xi[s] } else { max[s] });
        sum_w = lanes(|s| sum_w[s] + wi[s]);
        sum_x = lanes(|s| sum_x[s] + wi[s] * xi[s]);
    }
    min = lanes(|s| if min[s] > 0.0 { 0.0 } else { min[s] });
    let flat_min = min;
    let code = |iscale: &V, xi: &V, min: &V| -> [i32; 8] {
        lanes(|s| nearest_int(iscale[s] * (xi[s] - min[s])).clamp(0, nmax))
    };
    let iscale: V = lanes(|s| nmax as f32 / (max[s] - min[s]));
    let mut scale: V = lanes(|s| 1.0 / iscale[s]);
    let mut best_error: V = [0.0; 8];
    let mut lt = [[0u8; 8]; QK];
    for ((xi, wi), li) in xt.iter().zip(&w).zip(lt.iter_mut()) {
        let q = code(&iscale, xi, &min);
        *li = lanes(|s| q[s] as u8);
        let diff: V = lanes(|s| scale[s] * q[s] as f32 + min[s] - xi[s]);
        best_error = lanes(|s| best_error[s] + wi[s] * (diff[s] * diff[s]));
    }
    for is in 0..=nstep {
        // As in the C, `min` is the best solution's so far (it moves).
        let iscale: V = lanes(|s| (rmin + RDELTA * is as f32 + nmax as f32) / (max[s] - min[s]));
        let (mut sum_l, mut sum_l2, mut sum_xl): (V, V, V) = ([0.0; 8], [0.0; 8], [0.0; 8]);
        let mut laux = [[0u8; 8]; QK];
        for ((xi, wi), la) in xt.iter().zip(&w).zip(laux.iter_mut()) {
            let q = code(&iscale, xi, &min);
            *la = lanes(|s| q[s] as u8);
            let qf: V = lanes(|s| q[s] as f32);
            sum_l = lanes(|s| sum_l[s] + wi[s] * qf[s]);
            sum_l2 = lanes(|s| sum_l2[s] + wi[s] * qf[s] * qf[s]);
            sum_xl = lanes(|s| sum_xl[s] + wi[s] * qf[s] * xi[s]);
        }
        let det: V = lanes(|s| sum_w[s] * sum_l2[s] - sum_l[s] * sum_l[s]);
        let ts: V = lanes(|s| (sum_w[s] * sum_xl[s] - sum_x[s] * sum_l[s]) / det[s]);
        let tm: V = lanes(|s| (sum_l2[s] * sum_x[s] - sum_l[s] * sum_xl[s]) / det[s]);
        let this_scale: V = lanes(|s| {
            if tm[s] > 0.0 {
                sum_xl[s] / sum_l2[s]
            } else {
                ts[s]
            }
        });
        let this_min: V = lanes(|s| if tm[s] > 0.0 { 0.0 } else { tm[s] });
        let mut cur_error: V = [0.0; 8];
        for ((xi, wi), la) in xt.iter().zip(&w).zip(&laux) {
            let diff: V = lanes(|s| this_scale[s] * la[s] as f32 + this_min[s] - xi[s]);
            cur_error = lanes(|s| cur_error[s] + wi[s] * (diff[s] * diff[s]));
        }
        let take: [bool; 8] = lanes(|s| det[s] > 0.0 && cur_error[s] < best_error[s]);
        for (li, la) in lt.iter_mut().zip(&laux) {
            *li = lanes(|s| if take[s] { la[s] } else { li[s] });
        }
        best_error = lanes(|s| if take[s] { cur_error[s] } else { best_error[s] });
        scale = lanes(|s| if take[s] { this_scale[s] } else { scale[s] });
        min = lanes(|s| if take[s] { this_min[s] } else { min[s] });
    }
    let flat: [bool; 8] = lanes(|s| max[s] == flat_min[s]);
    let mut l = [0u8; 256];
    for (i, li) in lt.iter().enumerate() {
        for s in 0..8 {
            l[QK * s + i] = if flat[s] { 0 } else { li[s] };
        }
    }
    let scales: V = lanes(|s| if flat[s] { 0.0 } else { scale[s] });
    let mins: V = lanes(|s| if flat[s] { -flat_min[s] } else { -min[s] });
    finish_with_min(x, nmax, |i| l[i], &scales, &mins)
}

/// The second half of [`quantize_with_min`]: the sub-blocks' scales and
/// minimums to 6 bits against the f16 `d` / `dmin`, then the final codes;
/// `search_code(i)` gives element `i`'s code from the search, which the
/// C keeps for sub-blocks whose 6-bit scale is 0.
#[inline(always)]
fn finish_with_min(
    x: &[f32; 256],
    nmax: i32,
    search_code: impl Fn(usize) -> u8,
    scales: &[f32; 8],
    mins: &[f32; 8],
) -> ([u8; 256], half::f16, half::f16, [u8; 8], [u8; 8]) {
    let (mut max_scale, mut max_min) = (0.0f32, 0.0f32);
    for j in 0..8 {
        if scales[j] > max_scale {
            max_scale = scales[j];
        }
        if mins[j] > max_min {
            max_min = mins[j];
        }
    }
    let inv_scale = if max_scale > 0.0 {
        63.0 / max_scale
    } else {
        0.0
    };
    let inv_min = if max_min > 0.0 { 63.0 / max_min } else { 0.0 };
    // (uint8_t)nearest_int(...), then MIN(63, ...).
    let sc: [u8; 8] = core::array::from_fn(|j| (nearest_int(inv_scale * scales[j]) as u8).min(63));
    let mn: [u8; 8] = core::array::from_fn(|j| (nearest_int(inv_min * mins[j]) as u8).min(63));
    let d = half::f16::from_f32(max_scale / 63.0);
    let dmin = half::f16::from_f32(max_min / 63.0);
    let mut l = [0u8; 256];
    for j in 0..8 {
        let dj = d.to_f32() * sc[j] as f32;
        let dm = dmin.to_f32() * mn[j] as f32;
        for i in QK * j..QK * (j + 1) {
            // `if (!d) continue;`: the search's codes stay (NaN goes on).
            l[i] = if dj == 0.0 {
                search_code(i)
            } else {
                nearest_int((x[i] + dm) / dj).clamp(0, nmax) as u8
            };
        }
    }
    (l, d, dmin, sc, mn)
}

/// What [`make_qkx2_quants`] found for the eight sub-blocks of a
/// super-block when it ran elsewhere (the x86 lane searches): its scale
/// and `the_min`, and instead of the codes the `iscale` and `min` that
/// made them (`flat`: a constant sub-block, codes 0).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MinSearch {
    pub(crate) scale: [f32; 8],
    pub(crate) the_min: [f32; 8],
    pub(crate) code_iscale: [f32; 8],
    pub(crate) code_min: [f32; 8],
    pub(crate) flat: [bool; 8],
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl MinSearch {
    /// The search's code of element `i` of the super-block `x`, as
    /// [`make_qkx2_quants`] computes it.
    #[inline(always)]
    fn code(&self, x: &[f32; 256], nmax: i32, i: usize) -> u8 {
        let s = i / QK;
        if self.flat[s] {
            0
        } else {
            nearest_int(self.code_iscale[s] * (x[i] - self.code_min[s])).clamp(0, nmax) as u8
        }
    }
}

/// Q4_K and Q5_K: the parameters of their `make_qkx2_quants` searches and
/// their blocks from the results of a search run elsewhere (a trait, so
/// that the x86 quantizers call it compiled into their load clone).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) trait WithMin: super::PackedBlock {
    /// `nmax`, `rmin`, `nstep` of the searches.
    const SEARCH: (i32, f32, i32);
    /// The block of `x` given what the searches of its sub-blocks found
    /// (the same bytes as [`super::PackedBlock::quantize`]).
    fn from_search(x: &[f32; 256], search: &MinSearch) -> Self;
}

/// [`quantize_with_min`] of `x` given the search's results.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[inline(always)]
pub(super) fn quantize_with_min_from(
    x: &[f32; 256],
    nmax: i32,
    search: &MinSearch,
) -> ([u8; 256], half::f16, half::f16, [u8; 8], [u8; 8]) {
    finish_with_min(
        x,
        nmax,
        |i| search.code(x, nmax, i),
        &search.scale,
        &search.the_min,
    )
}

/// Sub-block `s`'s scale and minimum of Q4_K / Q5_K (see [`SubScale::Min`]):
/// `d * sc`, `-(dmin * mn)`, exact in f32.
#[inline]
pub(super) fn min_sub_scale(d: f16, dmin: f16, scales: &[u8; 12], s: usize) -> SubScale {
    let (sc, mn) = unpack_scales(scales);
    SubScale::Min {
        d: f16_to_f32(d) * sc[s] as f32,
        m: -(f16_to_f32(dmin) * mn[s] as f32),
    }
}

/// `dequantize_row_q4_K` / `_q5_K` of one super-block whose element `j` has
/// code `code(j)`: `(d * sc) * q - dmin * mn`, as the C evaluates it.
#[inline(always)]
pub(super) fn dequantize_with_min(
    d: f16,
    dmin: f16,
    scales: &[u8; 12],
    code: impl Fn(usize) -> u8,
    out: &mut [f32],
) {
    let out: &mut [f32; QK_K] = out.try_into().expect("a super-block of 256 values");
    let (d, min) = (f16_to_f32(d), f16_to_f32(dmin));
    let (sc, mn) = unpack_scales(scales);
    for (s, y) in out.chunks_exact_mut(QK).enumerate() {
        let (ds, ms) = (d * sc[s] as f32, min * mn[s] as f32);
        for (e, y) in y.iter_mut().enumerate() {
            *y = ds * code(QK * s + e) as f32 - ms;
        }
    }
}

/// Bytes `4c..4c+4` of sub-block `s`'s 16 nibble bytes (see the module
/// docs), from the codes of the super-block.
#[inline]
pub(super) fn nibble_group(code: impl Fn(usize) -> u8, s: usize, c: usize) -> [u8; 4] {
    core::array::from_fn(|i| {
        let e = QK * s + 4 * c + i;
        (code(e) & 0xF) | ((code(e + 16) & 0xF) << 4)
    })
}

/// The four [`nibble_group`]s of a sub-block whose 32 codes are the
/// nibbles at bit `shift` (0 or 4) of the bytes `run[..32]`, by word
/// operations.
#[inline(always)]
pub(super) fn nibble_groups_of(run: &[u8], shift: u32) -> [[u8; 4]; 4] {
    core::array::from_fn(|c| {
        let lo = (word(run, c) >> shift) & 0x0F0F_0F0F;
        let hi = (word(run, 4 + c) >> shift) & 0x0F0F_0F0F;
        (lo | (hi << 4)).to_le_bytes()
    })
}

/// `dequantize_row_q4_K` / `_q5_K` of a super-block in its packed form
/// (`G` groups per sub-block: Q4_K's 4 nibble groups, Q5_K's 5 groups of
/// 5-bit codes), as
/// [`dequantize_with_min`] evaluates it: `(d * sc) * q - dmin * mn`.
#[inline(always)]
pub(super) fn dequantize_packed_with_min<const G: usize>(
    [d, dmin]: [f16; 2],
    group: &impl Fn(usize) -> [u8; 4],
    out: &mut [f32],
) {
    let out: &mut [f32; QK_K] = out.try_into().expect("a super-block of 256 values");
    let (d, min) = (f16_to_f32(d), f16_to_f32(dmin));
    let (sc, mn) = min_scales_of(group, 8 * G);
    for (s, y) in out.chunks_exact_mut(QK).enumerate() {
        let (ds, ms) = (d * sc[s] as f32, min * mn[s] as f32);
        let codes = if G == 5 {
            super::q5_codes(group, G * s)
        } else {
            nibbles_of(group, G * s)
        };
        for (y, q) in y.iter_mut().zip(codes) {
            *y = ds * q as f32 - ms;
        }
    }
}

/// The low 4 bits of the 32 codes of sub-block `s` from its four nibble
/// groups at `first`.
#[inline(always)]
pub(super) fn nibbles_of(group: &impl Fn(usize) -> [u8; 4], first: usize) -> [u8; QK] {
    let mut out = [0u8; QK];
    for c in 0..4 {
        let g = group(first + c);
        for i in 0..4 {
            out[4 * c + i] = g[i] & 0xF;
            out[16 + 4 * c + i] = g[i] >> 4;
        }
    }
    out
}

/// Scale group `c` (0..4) of Q4_K / Q5_K: bytes `4c..4c+4` of the eight
/// 6-bit scales then the eight 6-bit minimums.
#[inline]
pub(super) fn min_scale_group(scales: &[u8; 12], c: usize) -> [u8; 4] {
    let (sc, mn) = unpack_scales(scales);
    core::array::from_fn(|i| {
        if c < 2 {
            sc[4 * c + i]
        } else {
            mn[4 * (c - 2) + i]
        }
    })
}

/// The eight scales and minimums of Q4_K / Q5_K from the scale groups at
/// `first` (their inverse of [`min_scale_group`]).
#[inline(always)]
pub(super) fn min_scales_of(group: &impl Fn(usize) -> [u8; 4], first: usize) -> ([u8; 8], [u8; 8]) {
    let small = small_scales(group, first);
    (
        small[..8].try_into().unwrap(),
        small[8..].try_into().unwrap(),
    )
}

/// The 16 sub-block scale bytes from the scale groups at `first`.
#[inline(always)]
pub(super) fn small_scales(group: &impl Fn(usize) -> [u8; 4], first: usize) -> [u8; 16] {
    core::array::from_fn(|i| group(first + i / 4)[i % 4])
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::formats::{PackedBlock, SubScale, QK_K};

    /// A deterministic row of 256 values in -1.5..2.5.
    pub(crate) fn wave(seed: usize) -> [f32; QK_K] {
        core::array::from_fn(|i| (((i + seed) * 2654435761) % 1000) as f32 / 250.0 - 1.5)
    }

    /// A k-quant's blocks survive their packed form, dequantize to what
    /// their codes and sub-block scales say (the canonical arithmetic's
    /// reading of them) and stay within `max_err` of smooth inputs.
    pub(crate) fn check_format<B: PackedBlock>(max_err: f32) {
        for seed in 0..8 {
            let x = wave(seed);
            let b = B::quantize(&x);
            let groups = B::GROUPS + B::SCALE_GROUPS;
            let back = B::from_packed(b.scales(), |c| {
                assert!(c < groups);
                b.packed_group(c)
            });
            assert_eq!(back, b);
            let mut out = [0.0; QK_K];
            b.dequantize(&mut out);
            for (j, &y) in out.iter().enumerate() {
                let u = b.ucode(j) as i32;
                let want = match b.sub_scale(j / QK) {
                    // d * q - dmin * mn: the same value as d * q + m.
                    SubScale::Min { d, m } => d * u as f32 + m,
                    SubScale::Halves { d, s } => d * s[(j % QK) / 16] as f32 * (u - 32) as f32,
                    SubScale::Offset { .. } => unreachable!(),
                };
                assert_eq!(y, want, "{} element {j}", B::INFO.name);
            }
            let err = x
                .iter()
                .zip(&out)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0, f32::max);
            assert!(err < max_err, "{} {err}", B::INFO.name);
        }
    }

    #[test]
    fn nearest_int_rounds_half_to_even() {
        for (v, want) in [
            (0.5f32, 0),
            (1.5, 2),
            (2.5, 2),
            (-0.5, 0),
            (-1.5, -2),
            (3.49, 3),
            (-7.7, -8),
            (4194303.0, 4194303),
            (-4194303.0, -4194303),
            (0.0, 0),
            (-0.0, 0),
        ] {
            assert_eq!(nearest_int(v), want, "{v}");
        }
        // NaN: the mantissa bits of the quiet NaN, minus 2^22.
        assert_eq!(nearest_int(f32::NAN), 0);
    }

    #[test]
    fn scale_packing_round_trips_every_value() {
        for seed in 0..64u8 {
            let sc: [u8; 8] = core::array::from_fn(|j| (seed + 7 * j as u8) % 64);
            let mn: [u8; 8] = core::array::from_fn(|j| (63 - seed + 11 * j as u8) % 64);
            assert_eq!(unpack_scales(&pack_scales(&sc, &mn)), (sc, mn));
        }
        // 12 bytes hold exactly 16 6-bit values: every byte string unpacks
        // and packs back.
        let q: [u8; 12] = core::array::from_fn(|i| (i as u8).wrapping_mul(97).wrapping_add(200));
        let (sc, mn) = unpack_scales(&q);
        assert_eq!(pack_scales(&sc, &mn), q);
    }
}
