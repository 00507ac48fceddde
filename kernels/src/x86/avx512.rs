//! AVX-512 kernels (F/BW/VL), with and without VNNI.
//!
//! One zmm holds the 16 rows of a panel (one i32/f32 lane per output row), so
//! each lane runs the canonical sequence of the scalar kernels. The integer
//! block dot is the only part that differs between the two levels, behind
//! [`Dot512`]: `vpdpbusd` (VNNI) or `vpmaddubsw` + `vpmaddwd` (BW).
//!
//! Tiles: batch 1 runs up to 4 panels at once (the activation broadcasts are
//! shared) and prefetches each panel stream ahead. Batched calls cover up to
//! 8 panels x 128 rows, so that a panel's weights and a row's inputs are
//! fetched from memory once per call:
//! - VNNI block formats: K in passes of 16 blocks (the pass's codes of two
//!   panels stay in L1), two panels x 6 rows per register tile, loop over a
//!   block's eight 4-code chunks outermost: each code vector serves 6 rows,
//!   each activation broadcast 2 panels, and 12 independent `vpdpbusd`
//!   chains hide its latency (measured: +10-35% over one panel x 8 rows).
//!   In batches of more than 16 rows the first row group of a pass keeps
//!   the split Q4_0 nibbles and the widened scales in an 18 KiB L1 buffer
//!   that the other groups read (`KEEP_ROWS`).
//! - BW block formats: one panel x 8 rows over whole blocks (the maddubs dot
//!   keeps i16 partial sums per block, which the chunk loop cannot share).
//! - Float formats: K in chunks of 128 steps over x packed chunk-major by the
//!   driver (once per row group, for all its tiles); per chunk, two panels x
//!   12 rows per register tile. The first row group loads (F16: widens) the
//!   pair's weights inside its FMA loop, prefetched as batch 1 does (loads
//!   from memory overlap the compute), and keeps the f32 in an aligned L1
//!   buffer for the other groups; batches of up to 12 rows only stream.

use super::{
    prefetch, scratch, F16_KC, FROM_KEPT, FROM_PANEL, GEMV_PREFETCH, KEEP_ROWS, PANEL_TO_KEPT,
};
use crate::act::{block_scales, ActBlock};
use crate::formats::QK;
use crate::pack::{NR, Q4_CODE_BYTES, Q8_CODE_BYTES};
use crate::{F32Line, TileArgs, MAX_TILE_ROWS};
use core::arch::x86_64::*;
use core::ops::Range;

/// The exact integer part of one block for 16 rows.
pub(crate) trait Dot512 {
    /// Whether `q8_block` works on the unsigned codes (`q + 128`), so that the
    /// accumulator must start at the activation correction.
    const Q8_UNSIGNED: bool;
    /// `init + Σ_c Σ_{i<4} codes[c].u8[4r+i] * a[4c+i]` per lane `r`; codes <= 15.
    unsafe fn q4_block(init: __m512i, codes: &[__m512i; 8], a: *const i8) -> __m512i;
    /// Same for the stored Q8_0 codes: `init + Σ (q + 128) * a` if
    /// `Q8_UNSIGNED`, else `init + Σ q * a`, exactly.
    unsafe fn q8_block(init: __m512i, stored: &[__m512i; 8], a: *const i8) -> __m512i;
    /// The batched part of a tile (`mr > 1`), with the register tiling that
    /// measured fastest for this dot (see the module docs).
    unsafe fn gemm_tile<const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize);
}

#[inline(always)]
unsafe fn bcast4(a: *const i8, c: usize) -> __m512i {
    // SAFETY: the caller passes a pointer to 32 activation codes and c < 8.
    unsafe { _mm512_set1_epi32((a.add(4 * c) as *const i32).read_unaligned()) }
}

/// AVX512-VNNI: `vpdpbusd` sums four u8*i8 products into i32 without saturation.
pub(crate) struct Vnni;

impl Dot512 for Vnni {
    const Q8_UNSIGNED: bool = true;

    #[inline(always)]
    unsafe fn q4_block(init: __m512i, codes: &[__m512i; 8], a: *const i8) -> __m512i {
        // SAFETY: only called from functions enabling avx512f/bw/vnni; `a` holds 32 codes.
        unsafe {
            let mut acc = init;
            for (c, &v) in codes.iter().enumerate() {
                acc = _mm512_dpbusd_epi32(acc, v, bcast4(a, c));
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn q8_block(init: __m512i, stored: &[__m512i; 8], a: *const i8) -> __m512i {
        // SAFETY: as above; stored codes are u8 = q + 128, so the sum carries +128*Σa.
        unsafe { Self::q4_block(init, stored, a) }
    }

    #[inline(always)]
    unsafe fn gemm_tile<const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe { q_gemm_vnni::<Q4>(a, out, ldo) }
    }
}

/// AVX512-BW: `vpmaddubsw` (u8*i8 pairs to saturating i16) then `vpmaddwd`.
pub(crate) struct Maddubs;

impl Dot512 for Maddubs {
    const Q8_UNSIGNED: bool = false;

    #[inline(always)]
    unsafe fn q4_block(init: __m512i, codes: &[__m512i; 8], a: *const i8) -> __m512i {
        // SAFETY: only called from functions enabling avx512f/bw. Each i16 pair
        // sum is <= 2*15*127 = 3810, so eight of them (30480) fit in i16: exact.
        unsafe {
            let mut s16 = _mm512_setzero_si512();
            for (c, &v) in codes.iter().enumerate() {
                s16 = _mm512_add_epi16(s16, _mm512_maddubs_epi16(v, bcast4(a, c)));
            }
            _mm512_add_epi32(init, _mm512_madd_epi16(s16, _mm512_set1_epi16(1)))
        }
    }

    #[inline(always)]
    unsafe fn q8_block(init: __m512i, stored: &[__m512i; 8], a: *const i8) -> __m512i {
        // SAFETY: only called from functions enabling avx512f/bw. Sign trick on the
        // signed code w: |w| <= 128 as u8 and a*sign(w) in -127..=127, so each i16
        // pair is <= 2*128*127 = 32512: no saturation, the sum is exact.
        unsafe {
            let ones = _mm512_set1_epi16(1);
            let flip = _mm512_set1_epi8(0x80u8 as i8);
            let mut acc = init;
            for (c, &v) in stored.iter().enumerate() {
                let w = _mm512_xor_si512(v, flip);
                let neg = _mm512_movepi8_mask(w);
                let b = bcast4(a, c);
                let sa = _mm512_mask_sub_epi8(b, neg, _mm512_setzero_si512(), b);
                let p = _mm512_maddubs_epi16(_mm512_abs_epi8(w), sa);
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(p, ones));
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn gemm_tile<const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe { q_gemm_blocks::<Self, Q4>(a, out, ldo) }
    }
}

/// Loads the 8 code vectors of one block (Q4_0: 4 loads, nibbles split).
#[inline(always)]
unsafe fn load_codes<const Q4: bool>(p: *const u8) -> [__m512i; 8] {
    // SAFETY: p points at one block's codes inside a panel (256 or 512 bytes),
    // 64-byte aligned by the packed layout.
    unsafe {
        if Q4 {
            let m = _mm512_set1_epi8(0x0F);
            let v: [__m512i; 4] =
                core::array::from_fn(|c| _mm512_load_si512(p.add(64 * c) as *const _));
            [
                _mm512_and_si512(v[0], m),
                _mm512_and_si512(v[1], m),
                _mm512_and_si512(v[2], m),
                _mm512_and_si512(v[3], m),
                _mm512_and_si512(_mm512_srli_epi16(v[0], 4), m),
                _mm512_and_si512(_mm512_srli_epi16(v[1], 4), m),
                _mm512_and_si512(_mm512_srli_epi16(v[2], 4), m),
                _mm512_and_si512(_mm512_srli_epi16(v[3], 4), m),
            ]
        } else {
            core::array::from_fn(|c| _mm512_load_si512(p.add(64 * c) as *const _))
        }
    }
}

#[inline(always)]
unsafe fn block_isum<D: Dot512, const Q4: bool>(codes: &[__m512i; 8], act: &ActBlock) -> __m512i {
    // SAFETY: target features are enabled by the calling kernel.
    unsafe {
        if Q4 {
            D::q4_block(_mm512_set1_epi32(act.corr), codes, act.qs.as_ptr())
        } else {
            D::q8_block(
                if D::Q8_UNSIGNED {
                    _mm512_set1_epi32(act.corr)
                } else {
                    _mm512_setzero_si512()
                },
                codes,
                act.qs.as_ptr(),
            )
        }
    }
}

/// `acc = fma(dw * da, isum as f32, acc)`, lane-wise.
#[inline(always)]
unsafe fn accumulate(acc: __m512, dw: __m512, da: f32, isum: __m512i) -> __m512 {
    // SAFETY: target features are enabled by the calling kernel.
    unsafe {
        _mm512_fmadd_ps(
            _mm512_mul_ps(dw, _mm512_set1_ps(da)),
            _mm512_cvtepi32_ps(isum),
            acc,
        )
    }
}

#[inline(always)]
unsafe fn scales(p: *const u8) -> __m512 {
    // SAFETY: p points at 16 f16 scales (32 bytes) inside a panel.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
}

/// Batch 1, `NP` panels at once.
#[inline(always)]
unsafe fn q_gemv<D: Dot512, const Q4: bool, const NP: usize>(
    a: &TileArgs,
    p0: usize,
    out: *mut f32,
) {
    let w = a.w;
    let nb = w.blocks_per_row();
    let cb = if Q4 { Q4_CODE_BYTES } else { Q8_CODE_BYTES };
    let so = w.scales_offset();
    let panels: [*const u8; NP] = core::array::from_fn(|i| w.panel(p0 + i).as_ptr());
    // SAFETY: target features enabled by the caller; every pointer stays inside its
    // panel (b < nb), acts holds nb blocks (driver contract), out holds NP*16 values.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NP];
        for b in 0..nb {
            let act = a.acts.get_unchecked(b);
            for i in 0..NP {
                for l in (0..cb).step_by(64) {
                    prefetch(panels[i].wrapping_add(b * cb + l + GEMV_PREFETCH));
                }
                let codes = load_codes::<Q4>(panels[i].add(b * cb));
                let isum = block_isum::<D, Q4>(&codes, act);
                acc[i] = accumulate(acc[i], scales(panels[i].add(so + b * 32)), act.d, isum);
            }
        }
        for (i, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(i * NR), *v);
        }
    }
}

/// Blocks per pass of a batched tile: the codes of these blocks for the
/// tile's panels (up to 2 x 16 x 544 bytes, or what `Kept` holds)
/// stay in L1 while every row group of the tile runs over them.
const GEMM_KB: usize = 16;

/// What a pass's first row group keeps for the others: the split Q4_0
/// nibbles (`GEMM_KB` blocks x up to 2 panels x 8 vectors; vector `c` of
/// block `j`, panel `i` at line `(j * P + i) * 8 + c`), then the widened
/// scales (block `j`, panel `i` at line `GEMM_KB * 16 + j * P + i`).
type Kept = [F32Line; GEMM_KB * 2 * 9];

/// One pass of a batched VNNI tile: `P` panels over `blocks`, accumulators
/// in `out` (row stride `ldo`, panel `i` at column `16 i`).
struct Pass<'t, 'a, const P: usize> {
    a: &'t TileArgs<'a>,
    panels: [*const u8; P],
    blocks: Range<usize>,
    out: *mut f32,
    ldo: usize,
    /// A [`Kept`] buffer.
    kept: *mut u8,
}

/// `P` panels x `R` batch rows from `i0` over the pass's blocks, chunk by
/// chunk: each 4-code chunk of the panels is loaded once for all rows and
/// each activation broadcast serves all panels, so `P * R` independent
/// integer chains are in flight. Continues the accumulators kept in `out`
/// unless the pass starts at block 0.
#[inline(always)]
unsafe fn q_gemm_chunks<const Q4: bool, const P: usize, const R: usize, const SRC: u8>(
    pass: &Pass<P>,
    i0: usize,
) {
    let Pass {
        a,
        panels,
        ref blocks,
        out,
        ldo,
        kept,
    } = *pass;
    let nb = a.w.blocks_per_row();
    let cb = if Q4 { Q4_CODE_BYTES } else { Q8_CODE_BYTES };
    let so = a.w.scales_offset();
    // SAFETY: target features enabled by the caller; rows i0..i0+R < mr exist in
    // acts (driver contract); blocks < nb keep panel pointers in their panels;
    // out rows are in the tile; `kept` lines stay in its buffer (fewer than
    // GEMM_KB blocks per pass, P <= 2) and a PANEL_TO_KEPT call wrote the
    // pass's lines before a FROM_KEPT call reads them (q_gemm_vnni_rows).
    unsafe {
        let acts = a.acts.as_ptr().add(i0 * nb);
        let out = out.add(i0 * ldo);
        let mut acc: [[__m512; P]; R] = core::array::from_fn(|r| {
            core::array::from_fn(|i| {
                if blocks.start == 0 {
                    _mm512_setzero_ps()
                } else {
                    _mm512_loadu_ps(out.add(r * ldo + i * NR))
                }
            })
        });
        for b in blocks.clone() {
            if !Q4 && i0 == 0 {
                // The tile's first row group reads the pass's codes from
                // memory: prefetch them ahead as batch 1 does (Q8_0 only: the
                // hardware prefetchers keep up with Q4_0's half-size blocks,
                // where this measured 2% slower at 2-4 rows).
                for &pn in &panels {
                    for l in (0..cb).step_by(64) {
                        prefetch(pn.wrapping_add(b * cb + l + GEMV_PREFETCH));
                    }
                }
            }
            let act: [&ActBlock; R] = core::array::from_fn(|r| &*acts.add(r * nb + b));
            let mut isum: [[__m512i; P]; R] = core::array::from_fn(|r| {
                // Nibbles and the stored Q8 codes (q + 128) are unsigned: both
                // start at the activation correction.
                [_mm512_set1_epi32(act[r].corr); P]
            });
            let code = |i: usize, c: usize| -> __m512i {
                _mm512_load_si512(panels[i].add(b * cb + 64 * c) as *const _)
            };
            let kept_at = |i: usize, c: usize| -> *mut u8 {
                kept.add((((b - blocks.start) * P + i) * 8 + c) * 64)
            };
            if Q4 && SRC != FROM_KEPT {
                let m = _mm512_set1_epi8(0x0F);
                for c in 0..4 {
                    let v: [__m512i; P] = core::array::from_fn(|i| code(i, c));
                    let lo: [__m512i; P] = core::array::from_fn(|i| _mm512_and_si512(v[i], m));
                    let hi: [__m512i; P] =
                        core::array::from_fn(|i| _mm512_and_si512(_mm512_srli_epi16(v[i], 4), m));
                    if SRC == PANEL_TO_KEPT {
                        for i in 0..P {
                            _mm512_store_si512(kept_at(i, c) as *mut _, lo[i]);
                            _mm512_store_si512(kept_at(i, c + 4) as *mut _, hi[i]);
                        }
                    }
                    for (r, isum) in isum.iter_mut().enumerate() {
                        let (a_lo, a_hi) = (
                            bcast4(act[r].qs.as_ptr(), c),
                            bcast4(act[r].qs.as_ptr(), c + 4),
                        );
                        for i in 0..P {
                            isum[i] = _mm512_dpbusd_epi32(isum[i], lo[i], a_lo);
                            isum[i] = _mm512_dpbusd_epi32(isum[i], hi[i], a_hi);
                        }
                    }
                }
            } else {
                for c in 0..8 {
                    let v: [__m512i; P] = core::array::from_fn(|i| {
                        if Q4 && SRC == FROM_KEPT {
                            _mm512_load_si512(kept_at(i, c) as *const _)
                        } else {
                            code(i, c)
                        }
                    });
                    for (r, isum) in isum.iter_mut().enumerate() {
                        let av = bcast4(act[r].qs.as_ptr(), c);
                        for i in 0..P {
                            isum[i] = _mm512_dpbusd_epi32(isum[i], v[i], av);
                        }
                    }
                }
            }
            for i in 0..P {
                let sl = kept.add((GEMM_KB * 2 * 8 + (b - blocks.start) * P + i) * 64) as *mut f32;
                let dw = if SRC == FROM_KEPT {
                    _mm512_load_ps(sl)
                } else {
                    let v = scales(panels[i].add(so + b * 32));
                    if SRC == PANEL_TO_KEPT {
                        _mm512_store_ps(sl, v);
                    }
                    v
                };
                for r in 0..R {
                    acc[r][i] = accumulate(acc[r][i], dw, act[r].d, isum[r][i]);
                }
            }
        }
        for (r, v) in acc.iter().enumerate() {
            for (i, v) in v.iter().enumerate() {
                _mm512_storeu_ps(out.add(r * ldo + i * NR), *v);
            }
        }
    }
}

/// Batched VNNI tile: K in passes of `GEMM_KB` blocks; in each pass, panel
/// pairs x 6-row groups.
#[inline(always)]
unsafe fn q_gemm_vnni<const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize) {
    let nb = a.w.blocks_per_row();
    let mut kept = scratch::<Kept>();
    let kept = kept.as_mut_ptr() as *mut u8;
    let mut b0 = 0;
    while b0 < nb {
        let blocks = b0..(b0 + GEMM_KB).min(nb);
        b0 = blocks.end;
        let mut pi = 0;
        while pi < a.np {
            let panel = |i: usize| a.w.panel(a.p0 + pi + i).as_ptr();
            // SAFETY: forwarded driver contract; panels pi(+1) < np.
            unsafe {
                let (out, blocks) = (out.add(pi * NR), blocks.clone());
                if a.np - pi >= 2 {
                    let panels = [panel(0), panel(1)];
                    q_gemm_vnni_rows::<Q4, 2>(&Pass {
                        a,
                        panels,
                        blocks,
                        out,
                        ldo,
                        kept,
                    });
                } else {
                    let panels = [panel(0)];
                    q_gemm_vnni_rows::<Q4, 1>(&Pass {
                        a,
                        panels,
                        blocks,
                        out,
                        ldo,
                        kept,
                    });
                }
            }
            pi += 2;
        }
    }
}

/// Every row of the tile over one pass, 6 rows at a time.
#[inline(always)]
unsafe fn q_gemm_vnni_rows<const Q4: bool, const P: usize>(pass: &Pass<P>) {
    let mr = pass.a.mr;
    let keep = mr > KEEP_ROWS;
    let mut i0 = 0;
    while i0 < mr {
        let r = (mr - i0).min(6);
        // SAFETY: forwarded driver contract; rows i0..i0+r < mr; the first row
        // group (6 rows: mr > KEEP_ROWS) fills `kept` before the others
        // read it.
        unsafe {
            match (keep, i0) {
                (false, _) => q_group::<Q4, P, FROM_PANEL>(pass, i0, r),
                (true, 0) => q_gemm_chunks::<Q4, P, 6, PANEL_TO_KEPT>(pass, 0),
                (true, _) => q_group::<Q4, P, FROM_KEPT>(pass, i0, r),
            }
        }
        i0 += r;
    }
}

/// Rows `i0..i0 + r` (`r <= 6`): [`q_gemm_chunks`] with `R = r`.
#[inline(always)]
unsafe fn q_group<const Q4: bool, const P: usize, const SRC: u8>(
    pass: &Pass<P>,
    i0: usize,
    r: usize,
) {
    // SAFETY: forwarded contract.
    unsafe {
        match r {
            1 => q_gemm_chunks::<Q4, P, 1, SRC>(pass, i0),
            2 => q_gemm_chunks::<Q4, P, 2, SRC>(pass, i0),
            3 => q_gemm_chunks::<Q4, P, 3, SRC>(pass, i0),
            4 => q_gemm_chunks::<Q4, P, 4, SRC>(pass, i0),
            5 => q_gemm_chunks::<Q4, P, 5, SRC>(pass, i0),
            _ => q_gemm_chunks::<Q4, P, 6, SRC>(pass, i0),
        }
    }
}

/// One panel, `R` batch rows, whole K (the BW tile: its block dot keeps
/// partial sums in i16, so it works on a block's 8 code vectors at once).
#[inline(always)]
unsafe fn q_gemm_block_rows<D: Dot512, const Q4: bool, const R: usize>(
    a: &TileArgs,
    panel: *const u8,
    i0: usize,
    out: *mut f32,
    ldo: usize,
) {
    let w = a.w;
    let nb = w.blocks_per_row();
    let cb = if Q4 { Q4_CODE_BYTES } else { Q8_CODE_BYTES };
    let so = w.scales_offset();
    // SAFETY: target features enabled by the caller; rows i0..i0+R < mr exist in
    // acts (driver contract); panel pointers stay in the panel; out rows are in the tile.
    unsafe {
        let acts = a.acts.as_ptr().add(i0 * nb);
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..nb {
            let codes = load_codes::<Q4>(panel.add(b * cb));
            let dw = scales(panel.add(so + b * 32));
            for (r, acc) in acc.iter_mut().enumerate() {
                let act = &*acts.add(r * nb + b);
                *acc = accumulate(*acc, dw, act.d, block_isum::<D, Q4>(&codes, act));
            }
        }
        for (r, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add((i0 + r) * ldo), *v);
        }
    }
}

/// Batched BW tile: each panel x 8-row groups, whole K.
#[inline(always)]
unsafe fn q_gemm_blocks<D: Dot512, const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize) {
    for pi in 0..a.np {
        let panel = a.w.panel(a.p0 + pi).as_ptr();
        let mut i0 = 0;
        while i0 < a.mr {
            let r = (a.mr - i0).min(8);
            // SAFETY: forwarded driver contract; rows i0..i0+r < mr, panel pi < np.
            unsafe {
                let o = out.add(pi * NR);
                match r {
                    1 => q_gemm_block_rows::<D, Q4, 1>(a, panel, i0, o, ldo),
                    2 => q_gemm_block_rows::<D, Q4, 2>(a, panel, i0, o, ldo),
                    3 => q_gemm_block_rows::<D, Q4, 3>(a, panel, i0, o, ldo),
                    4 => q_gemm_block_rows::<D, Q4, 4>(a, panel, i0, o, ldo),
                    5 => q_gemm_block_rows::<D, Q4, 5>(a, panel, i0, o, ldo),
                    6 => q_gemm_block_rows::<D, Q4, 6>(a, panel, i0, o, ldo),
                    7 => q_gemm_block_rows::<D, Q4, 7>(a, panel, i0, o, ldo),
                    _ => q_gemm_block_rows::<D, Q4, 8>(a, panel, i0, o, ldo),
                }
            }
            i0 += r;
        }
    }
}

#[inline(always)]
unsafe fn q_tile<D: Dot512, const Q4: bool>(a: &mut TileArgs) {
    let ldo = a.np * NR;
    let out = a.tile.as_mut_ptr();
    // SAFETY: the tile holds mr * np * 16 values and panels p0..p0+np exist
    // (driver contract); features are enabled by the calling kernel.
    unsafe {
        if a.mr == 1 {
            let mut p = 0;
            while p < a.np {
                let o = out.add(p * NR);
                match a.np - p {
                    1 => q_gemv::<D, Q4, 1>(a, a.p0 + p, o),
                    2 => q_gemv::<D, Q4, 2>(a, a.p0 + p, o),
                    3 => q_gemv::<D, Q4, 3>(a, a.p0 + p, o),
                    _ => q_gemv::<D, Q4, 4>(a, a.p0 + p, o),
                }
                p += 4;
            }
            return;
        }
        D::gemm_tile::<Q4>(a, out, ldo);
    }
}

/// Loads the 16 weights of k-step `kk` (f16 widened, or f32).
#[inline(always)]
unsafe fn load_w<const F16: bool>(panel: *const u8, kk: usize) -> __m512 {
    // SAFETY: kk < k, so the 32 or 64 bytes lie inside the panel.
    unsafe {
        if F16 {
            _mm512_cvtph_ps(_mm256_load_si256(panel.add(kk * 32) as *const __m256i))
        } else {
            _mm512_loadu_ps(panel.add(kk * 64) as *const f32)
        }
    }
}

/// Batch 1, `NP` panels: `acc = fma(w_k, x_k, acc)` for k in order.
#[inline(always)]
unsafe fn f_gemv<const F16: bool, const NP: usize>(a: &TileArgs, p0: usize, out: *mut f32) {
    let k = a.w.k();
    let panels: [*const u8; NP] = core::array::from_fn(|i| a.w.panel(p0 + i).as_ptr());
    // SAFETY: features enabled by the caller; x holds k values (driver contract).
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NP];
        let step = if F16 { 32 } else { 64 };
        for kk in 0..k {
            let x = _mm512_set1_ps(*a.x.get_unchecked(kk));
            for i in 0..NP {
                prefetch(panels[i].wrapping_add(kk * step + GEMV_PREFETCH));
                acc[i] = _mm512_fmadd_ps(load_w::<F16>(panels[i], kk), x, acc[i]);
            }
        }
        for (i, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(i * NR), *v);
        }
    }
}

/// Consecutive cache lines to prefetch, one per k-step: step `s < count`
/// fetches the line at `base + 64 s` (a row group's next chunk of packed x).
#[derive(Clone, Copy)]
struct Lines {
    base: *const u8,
    count: usize,
}

const NO_LINES: Lines = Lines {
    base: core::ptr::null(),
    count: 0,
};

/// Weights of one k-chunk for a pair of panels: `P` pointers to the chunk's
/// first step, each with `step` f32 (4-byte units) between k-steps; 16 f32
/// per step, or 16 f16 when the chunk kernel's `H` is set (widened as used).
#[derive(Clone, Copy)]
struct ChunkW<const P: usize> {
    w: [*const f32; P],
    step: usize,
    /// With `KEEP`, where to also store the widened f16 weights (step `s`,
    /// panel `i` at `(s * P + i) * 16`) for the row groups that follow.
    keep: *mut f32,
}

/// `R` batch rows x `P` panels over `kc` k-steps; `x` holds the rows' values for
/// these steps at stride `F16_KC`. Continues the accumulators kept in `out`
/// (row stride `ldo`, panel `i` at column `16 i`) unless `first`.
///
/// `pf`: lines to prefetch into L2 meanwhile (see [`Lines`]).
#[inline(always)]
unsafe fn f_gemm_chunk<
    const P: usize,
    const R: usize,
    const H: bool,
    const S: bool,
    const KEEP: bool,
>(
    cw: ChunkW<P>,
    x: *const f32,
    kc: usize,
    out: *mut f32,
    ldo: usize,
    first: bool,
    pf: Lines,
) {
    // SAFETY: features enabled by the caller; x holds R rows of kc values at
    // stride F16_KC, each cw.w[i] holds kc steps, out holds R rows at stride
    // ldo, and with KEEP cw.keep holds kc * P * 16 values (f_gemm's buffer).
    unsafe {
        let mut acc: [[__m512; P]; R] = core::array::from_fn(|r| {
            core::array::from_fn(|i| {
                if first {
                    _mm512_setzero_ps()
                } else {
                    _mm512_loadu_ps(out.add(r * ldo + i * NR))
                }
            })
        });
        for s in 0..kc {
            if s < pf.count {
                let line = pf.base.wrapping_add(64 * s);
                _mm_prefetch::<_MM_HINT_T1>(line as *const i8);
            }
            let wv: [__m512; P] = core::array::from_fn(|i| {
                let w = cw.w[i].add(s * cw.step);
                if S {
                    // Weights stream from memory here, once: prefetch ahead as
                    // the batch-1 kernels do.
                    prefetch((w as *const u8).wrapping_add(GEMV_PREFETCH));
                }
                let v = if H {
                    _mm512_cvtph_ps(_mm256_loadu_si256(w as *const __m256i))
                } else {
                    _mm512_loadu_ps(w)
                };
                if KEEP {
                    _mm512_storeu_ps(cw.keep.add((s * P + i) * NR), v);
                }
                v
            });
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm512_set1_ps(*x.add(r * F16_KC + s));
                for i in 0..P {
                    acc[i] = _mm512_fmadd_ps(wv[i], xv, acc[i]);
                }
            }
        }
        for (r, v) in acc.iter().enumerate() {
            for (i, v) in v.iter().enumerate() {
                _mm512_storeu_ps(out.add(r * ldo + i * NR), *v);
            }
        }
    }
}

/// All `mr` rows of `P` adjacent panels starting at panel `p`, k-steps
/// `k0..k0 + kc` (at most `F16_KC`); starts the accumulators in `out` when
/// `k0 == 0`, continues them otherwise. `xc` holds the chunk's x values of
/// all `mr` rows at stride `F16_KC`; `prefetch_x` is the next chunk's first
/// step when this call should prefetch it.
#[inline(always)]
unsafe fn f_gemm<const F16: bool, const P: usize>(
    a: &TileArgs,
    p: usize,
    k0: usize,
    kc: usize,
    xc: *const f32,
    out: *mut f32,
    prefetch_x: Option<usize>,
) {
    let ldo = a.np * NR;
    let mut buf = scratch::<[F32Line; F16_KC * NR * 2 / 16]>();
    let buf = buf.as_mut_ptr() as *mut f32;
    // SAFETY: driver contract (tile size, panels, x rows); features enabled by caller;
    // buf holds F16_KC steps of P <= 2 panels; k0 + kc <= k.
    unsafe {
        // Batches here have more than 12 rows (f_tile sends smaller ones to
        // f_gemm_few): the first, full row group streams the weights from the
        // panels (F16: widens them) as it computes and keeps the f32 in `buf`
        // (aligned, in L1), the others read them from there.
        debug_assert!(a.mr > 12);
        let cw = ChunkW {
            w: core::array::from_fn(|i| buf.add(i * NR) as *const f32),
            step: P * NR,
            keep: core::ptr::null_mut(),
        };
        let mut i0 = 0;
        while i0 < a.mr {
            let r = (a.mr - i0).min(12);
            // On a chunk's last pair, each row group prefetches its rows' next
            // x chunk: r packed rows of F16_KC floats, 8 lines each
            // (prefetching the next pair's weights gained nothing).
            let pf = if let Some(nk0) = prefetch_x {
                Lines {
                    base: a.xp.as_ptr().wrapping_add(nk0 * a.mr + i0 * F16_KC) as *const u8,
                    count: F16_KC * 4 / 64 * r,
                }
            } else {
                NO_LINES
            };
            let (x, o) = (xc.add(i0 * F16_KC), out.add(i0 * ldo));
            if i0 == 0 {
                let src = panel_chunk::<F16, P>(a, p, k0, buf);
                f_gemm_chunk::<P, 12, F16, true, true>(src, x, kc, o, ldo, k0 == 0, pf);
                i0 += 12;
                continue;
            }
            match r {
                1 => f_gemm_chunk::<P, 1, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                2 => f_gemm_chunk::<P, 2, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                3 => f_gemm_chunk::<P, 3, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                4 => f_gemm_chunk::<P, 4, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                5 => f_gemm_chunk::<P, 5, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                6 => f_gemm_chunk::<P, 6, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                7 => f_gemm_chunk::<P, 7, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                8 => f_gemm_chunk::<P, 8, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                9 => f_gemm_chunk::<P, 9, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                10 => f_gemm_chunk::<P, 10, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                11 => f_gemm_chunk::<P, 11, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                _ => f_gemm_chunk::<P, 12, false, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
            }
            i0 += r;
        }
    }
}

/// The weights of `P` panels from `p`, k-steps from `k0`, as the FMA loop
/// streams them from the panels (F16: widened there), storing the f32 to
/// `keep` unless it is null.
///
/// # Safety
/// `p + P <= a.w.panels()` and `k0 < a.w.k()`.
#[inline(always)]
unsafe fn panel_chunk<const F16: bool, const P: usize>(
    a: &TileArgs,
    p: usize,
    k0: usize,
    keep: *mut f32,
) -> ChunkW<P> {
    // SAFETY: (caller) the panels exist and hold step k0 (F16: 32 bytes per
    // step, F32: NR floats).
    unsafe {
        if F16 {
            ChunkW {
                w: core::array::from_fn(|i| a.w.panel(p + i).as_ptr().add(k0 * 32) as *const f32),
                step: 8,
                keep,
            }
        } else {
            ChunkW {
                w: core::array::from_fn(|i| (a.w.panel(p + i).as_ptr() as *const f32).add(k0 * NR)),
                step: NR,
                keep,
            }
        }
    }
}

/// Float batches of at most 12 rows (one register tile): K-chunks of `P`
/// panels with the weights loaded (F16: widened) as the FMA loop uses them,
/// prefetched ahead. Staging them (as `f_gemm` does for larger batches)
/// would store and reload every weight for a single use and serialize the
/// loads from memory ahead of the compute (measured: F16 M=8 4096x4096
/// 96 -> 145 GFLOP/s).
#[inline(always)]
unsafe fn f_gemm_few<const F16: bool, const P: usize>(
    a: &TileArgs,
    p: usize,
    k0: usize,
    kc: usize,
    xc: *const f32,
    out: *mut f32,
) {
    let ldo = a.np * NR;
    // SAFETY: driver contract (tile size, panels, x rows); features enabled by
    // the caller; k0 + kc <= k keeps the panel pointers in their panels; mr <= 12.
    unsafe {
        let cw = panel_chunk::<F16, P>(a, p, k0, core::ptr::null_mut());
        let first = k0 == 0;
        match a.mr {
            1 => f_gemm_chunk::<P, 1, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            2 => f_gemm_chunk::<P, 2, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            3 => f_gemm_chunk::<P, 3, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            4 => f_gemm_chunk::<P, 4, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            5 => f_gemm_chunk::<P, 5, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            6 => f_gemm_chunk::<P, 6, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            7 => f_gemm_chunk::<P, 7, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            8 => f_gemm_chunk::<P, 8, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            9 => f_gemm_chunk::<P, 9, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            10 => f_gemm_chunk::<P, 10, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            11 => f_gemm_chunk::<P, 11, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            _ => f_gemm_chunk::<P, 12, F16, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
        }
    }
}

#[inline(always)]
unsafe fn f_tile<const F16: bool>(a: &mut TileArgs) {
    let out = a.tile.as_mut_ptr();
    // SAFETY: driver contract (tile size, panels, x rows); features enabled by caller.
    unsafe {
        if a.mr == 1 {
            let mut p = 0;
            while p < a.np {
                let o = out.add(p * NR);
                match a.np - p {
                    1 => f_gemv::<F16, 1>(a, a.p0 + p, o),
                    2 => f_gemv::<F16, 2>(a, a.p0 + p, o),
                    3 => f_gemv::<F16, 3>(a, a.p0 + p, o),
                    _ => f_gemv::<F16, 4>(a, a.p0 + p, o),
                }
                p += 4;
            }
            return;
        }
        // K-chunk outer: the rows' x values of a chunk are read from cache by
        // every panel pair of the tile, not streamed again per pair. x comes
        // packed (rows of a chunk at stride F16_KC: constant displacements
        // for the broadcasts, no cache-set conflicts between rows).
        let k = a.w.k();
        debug_assert!(a.mr <= MAX_TILE_ROWS);
        debug_assert!(a.xp.len() >= k.div_ceil(F16_KC) * a.mr * F16_KC);
        let mut k0 = 0;
        while k0 < k {
            let kc = (k - k0).min(F16_KC);
            let xc = a.xp.as_ptr().add(k0 * a.mr);
            let mut p = 0;
            while p < a.np {
                let o = out.add(p * NR);
                let pfx = (p + 2 >= a.np && k0 + kc < k).then_some(k0 + kc);
                if a.mr <= 12 {
                    if a.np - p >= 2 {
                        f_gemm_few::<F16, 2>(a, a.p0 + p, k0, kc, xc, o);
                    } else {
                        f_gemm_few::<F16, 1>(a, a.p0 + p, k0, kc, xc, o);
                    }
                    p += 2;
                    continue;
                }
                if a.np - p >= 2 {
                    f_gemm::<F16, 2>(a, a.p0 + p, k0, kc, xc, o, pfx);
                    p += 2;
                } else {
                    f_gemm::<F16, 1>(a, a.p0 + p, k0, kc, xc, o, pfx);
                    p += 1;
                }
            }
            k0 += kc;
        }
    }
}

/// Activation quantization of one row (canonical rule, 16 lanes at a time).
#[inline(always)]
unsafe fn quantize_row(x: &[f32], offset: i32, out: &mut [ActBlock]) {
    for (b, blk) in out.iter_mut().enumerate() {
        let start = b * QK;
        let len = (x.len() - start).min(QK);
        // SAFETY: masked loads read only x[start..start+len]; features enabled by caller.
        unsafe {
            let m0: __mmask16 = if len >= 16 {
                0xFFFF
            } else {
                (1u32 << len) as u16 - 1
            };
            let m1: __mmask16 = if len >= 32 {
                0xFFFF
            } else if len > 16 {
                ((1u32 << (len - 16)) - 1) as u16
            } else {
                0
            };
            let p = x.as_ptr().add(start);
            let v0 = _mm512_maskz_loadu_ps(m0, p);
            let v1 = _mm512_maskz_loadu_ps(m1, p.add(16));
            let abs_mask = _mm512_set1_epi32(0x7FFF_FFFF);
            let a0 = _mm512_and_si512(_mm512_castps_si512(v0), abs_mask);
            let a1 = _mm512_and_si512(_mm512_castps_si512(v1), abs_mask);
            let amax = _mm512_reduce_max_epu32(_mm512_max_epu32(a0, a1));
            let (d, id) = block_scales(amax);
            blk.d = d;
            if id == 0.0 {
                blk.qs = [0; QK];
                blk.corr = 0;
                continue;
            }
            let idv = _mm512_set1_ps(id);
            let q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, idv));
            let q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, idv));
            blk.corr = -offset * _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
            let dst = blk.qs.as_mut_ptr();
            _mm_storeu_si128(dst as *mut __m128i, _mm512_cvtepi32_epi8(q0));
            _mm_storeu_si128(dst.add(16) as *mut __m128i, _mm512_cvtepi32_epi8(q1));
        }
    }
}

kernel_table!(
    bw,
    crate::Isa::Avx512,
    "avx512f,avx512bw,avx512vl,avx2,fma,f16c",
    Maddubs,
    gemv_panels: 4,
    gemm_panels: 8,
    pack_x: true,
    tiles: {
        Q8_0 => q_tile::<Dot, false>,
        Q4_0 => q_tile::<Dot, true>,
        F16 => f_tile::<true>,
        F32 => f_tile::<false>,
    }
);
kernel_table!(
    vnni,
    crate::Isa::Avx512Vnni,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    Vnni,
    gemv_panels: 4,
    gemm_panels: 8,
    pack_x: true,
    tiles: {
        Q8_0 => q_tile::<Dot, false>,
        Q4_0 => q_tile::<Dot, true>,
        F16 => f_tile::<true>,
        F32 => f_tile::<false>,
    }
);
