//! AVX2 kernels (+FMA, F16C), with `vpmaddubsw` or AVX-VNNI's VEX `vpdpbusd`.
//!
//! A 16-row panel is two ymm halves of 8 rows; each half runs the canonical
//! sequence lane by lane. With 16 ymm registers, batched tiles are:
//! - maddubs block formats: 2 rows as batch 1 runs (below); more rows, one
//!   half panel x up to 4 batch rows (Q8_0 beyond 4 rows: 3), whole K, with
//!   the Q8_0 sign trick's code-only work done once per chunk for all rows;
//! - AVX-VNNI block formats: both halves x up to 5 rows over K passes of 16
//!   blocks, chunk-outer (each code load serves 5 rows, each activation
//!   broadcast both halves: 10 independent `vpdpbusd` chains), with the f32
//!   accumulators in the tile since the registers hold the integer chains;
//!   in batches of more than 16 rows the first row group of a pass keeps
//!   the split Q4_0 nibbles and the widened scales in a 9 KiB L1 buffer
//!   that the other groups read (`KEEP_ROWS`);
//! - float formats, up to 3 rows: two panels x all rows over the whole of K
//!   (two prefetched panel streams: one alone leaves memory bandwidth unused);
//! - float formats, more rows: one panel x up to 6 rows (balanced row groups)
//!   over x packed chunk-major by the driver; F16 is widened by the first row
//!   group as it computes and kept as f32 for the chunk's other groups.
//!
//! Batch 1 runs two panels per pass (floats: four), both halves of each
//! block (or k-step) together, so every line of the panels is read once,
//! and prefetches each panel stream ahead as the AVX-512 batch-1 kernels do.

use super::{
    prefetch, scratch, F16_KC, FROM_KEPT, FROM_PANEL, GEMV_PREFETCH, KEEP_ROWS, PANEL_TO_KEPT,
};
use crate::act::{block_scales, ActBlock};
use crate::formats::QK;
use crate::pack::{NR, Q4_CODE_BYTES, Q8_CODE_BYTES};
use crate::{F32Line, TileArgs};
use core::arch::x86_64::*;
use core::ops::Range;

/// The exact integer part of one block for 8 rows (one half panel).
pub(crate) trait Dot256 {
    /// Whether `q8_rows` works on the unsigned codes (`q + 128`), so that the
    /// accumulators must start at the activation correction.
    const Q8_UNSIGNED: bool;
    /// `init + Σ_c Σ_{i<4} codes[c].u8[4r+i] * a[4c+i]`; codes <= 15.
    unsafe fn q4_block(init: __m256i, codes: &[__m256i; 8], a: *const i8) -> __m256i;
    /// For each of `R` activation rows `a[j]`: `init[j] + Σ (q + 128) * a[j]`
    /// if `Q8_UNSIGNED`, else `init[j] + Σ q * a[j]`, exactly. One call per
    /// block for all rows, so that work on the codes alone is done once.
    unsafe fn q8_rows<const R: usize>(
        init: [__m256i; R],
        stored: &[__m256i; 8],
        a: [*const i8; R],
    ) -> [__m256i; R];
    /// The batched part of a tile (`mr > 1`), with the register tiling that
    /// measured fastest for this dot (see the module docs).
    unsafe fn gemm_tile<const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize);
}

#[inline(always)]
unsafe fn bcast4(a: *const i8, c: usize) -> __m256i {
    // SAFETY: `a` points at 32 activation codes and c < 8.
    unsafe { _mm256_set1_epi32((a.add(4 * c) as *const i32).read_unaligned()) }
}

/// AVX2: `vpmaddubsw` + `vpmaddwd`.
pub(crate) struct Maddubs;

impl Dot256 for Maddubs {
    const Q8_UNSIGNED: bool = false;

    #[inline(always)]
    unsafe fn q4_block(init: __m256i, codes: &[__m256i; 8], a: *const i8) -> __m256i {
        // SAFETY: called from avx2 functions. Pair sums <= 2*15*127 = 3810; eight
        // of them fit in i16, so the sum is exact.
        unsafe {
            let mut s16 = _mm256_setzero_si256();
            for (c, &v) in codes.iter().enumerate() {
                s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(v, bcast4(a, c)));
            }
            _mm256_add_epi32(init, _mm256_madd_epi16(s16, _mm256_set1_epi16(1)))
        }
    }

    #[inline(always)]
    unsafe fn q8_rows<const R: usize>(
        init: [__m256i; R],
        stored: &[__m256i; 8],
        a: [*const i8; R],
    ) -> [__m256i; R] {
        // SAFETY: called from avx2 functions; each a[j] holds 32 codes. Sign
        // trick: |w| <= 128 as u8 and sign(a, w) in -127..=127 keep every i16
        // pair <= 32512: exact. Chunk-outer, so the signed code and its
        // absolute value are computed once for all rows (measured with 3-row
        // groups, M=128 4096x4096: rows outer 93-100 GOPS, chunk outer
        // 115-124).
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let flip = _mm256_set1_epi8(0x80u8 as i8);
            let mut acc = init;
            for (c, &v) in stored.iter().enumerate() {
                let w = _mm256_xor_si256(v, flip);
                let aw = _mm256_abs_epi8(w);
                for (acc, &a) in acc.iter_mut().zip(&a) {
                    let p = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(bcast4(a, c), w));
                    *acc = _mm256_add_epi32(*acc, _mm256_madd_epi16(p, ones));
                }
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn gemm_tile<const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe { q_gemm_halves::<Self, Q4>(a, out, ldo) }
    }
}

/// AVX-VNNI: VEX-encoded `vpdpbusd` (no saturation).
pub(crate) struct VnniVex;

impl Dot256 for VnniVex {
    const Q8_UNSIGNED: bool = true;

    #[inline(always)]
    unsafe fn q4_block(init: __m256i, codes: &[__m256i; 8], a: *const i8) -> __m256i {
        // SAFETY: called from functions enabling avxvnni; `a` holds 32 codes.
        unsafe {
            let mut acc = init;
            for (c, &v) in codes.iter().enumerate() {
                acc = _mm256_dpbusd_avx_epi32(acc, v, bcast4(a, c));
            }
            acc
        }
    }

    #[inline(always)]
    unsafe fn q8_rows<const R: usize>(
        init: [__m256i; R],
        stored: &[__m256i; 8],
        a: [*const i8; R],
    ) -> [__m256i; R] {
        // SAFETY: as above; stored codes are q + 128 (offset undone through init).
        // A loop, not `array::from_fn`: a closure does not carry the kernel's
        // target features, and this one is too large to be inlined, which
        // turns every intrinsic in it into a call.
        let mut acc = init;
        for (acc, &a) in acc.iter_mut().zip(&a) {
            *acc = unsafe { Self::q4_block(*acc, stored, a) };
        }
        acc
    }

    #[inline(always)]
    unsafe fn gemm_tile<const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe { q_gemm_vnni::<Q4>(a, out, ldo) }
    }
}

/// The 8 code vectors of half `h` of one block.
#[inline(always)]
unsafe fn load_codes<const Q4: bool>(p: *const u8, h: usize) -> [__m256i; 8] {
    // SAFETY: p points at one block's codes inside a panel, 32-byte aligned halves.
    unsafe {
        let ld = |c: usize| _mm256_load_si256(p.add(64 * c + 32 * h) as *const __m256i);
        if Q4 {
            let m = _mm256_set1_epi8(0x0F);
            let v = [ld(0), ld(1), ld(2), ld(3)];
            [
                _mm256_and_si256(v[0], m),
                _mm256_and_si256(v[1], m),
                _mm256_and_si256(v[2], m),
                _mm256_and_si256(v[3], m),
                _mm256_and_si256(_mm256_srli_epi16(v[0], 4), m),
                _mm256_and_si256(_mm256_srli_epi16(v[1], 4), m),
                _mm256_and_si256(_mm256_srli_epi16(v[2], 4), m),
                _mm256_and_si256(_mm256_srli_epi16(v[3], 4), m),
            ]
        } else {
            core::array::from_fn(ld)
        }
    }
}

/// The exact integer sums of one block (half panel) for `R` activation rows.
/// (Loops rather than `array::from_fn`: see `VnniVex::q8_rows`.)
#[inline(always)]
unsafe fn block_isums<D: Dot256, const Q4: bool, const R: usize>(
    codes: &[__m256i; 8],
    act: &[&ActBlock; R],
) -> [__m256i; R] {
    // SAFETY: features enabled by the calling kernel.
    unsafe {
        let mut isum = [_mm256_setzero_si256(); R];
        for (isum, act) in isum.iter_mut().zip(act) {
            if Q4 || D::Q8_UNSIGNED {
                *isum = _mm256_set1_epi32(act.corr);
            }
        }
        if Q4 {
            for (isum, act) in isum.iter_mut().zip(act) {
                *isum = D::q4_block(*isum, codes, act.qs.as_ptr());
            }
            isum
        } else {
            let mut a = [core::ptr::null(); R];
            for (a, act) in a.iter_mut().zip(act) {
                *a = act.qs.as_ptr();
            }
            D::q8_rows(isum, codes, a)
        }
    }
}

/// `acc = fma(dw * da, isum as f32, acc)`, lane-wise.
#[inline(always)]
unsafe fn accumulate(acc: __m256, dw: __m256, da: f32, isum: __m256i) -> __m256 {
    // SAFETY: features enabled by the calling kernel.
    unsafe {
        _mm256_fmadd_ps(
            _mm256_mul_ps(dw, _mm256_set1_ps(da)),
            _mm256_cvtepi32_ps(isum),
            acc,
        )
    }
}

#[inline(always)]
unsafe fn scales(p: *const u8, h: usize) -> __m256 {
    // SAFETY: p points at 16 f16 scales inside a panel; half h is 16 bytes.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.add(16 * h) as *const __m128i)) }
}

/// `R` batch rows from `i0` x halves `h0..h0 + NH` of `NP` panels from `p0`,
/// whole K. With both halves (`NH = 2`) every code line is read once, in one
/// pass; the `NP` panel streams are prefetched ahead either way.
#[inline(always)]
unsafe fn q_rows<D: Dot256, const Q4: bool, const NP: usize, const R: usize, const NH: usize>(
    a: &TileArgs,
    p0: usize,
    h0: usize,
    i0: usize,
    out: *mut f32,
    ldo: usize,
) {
    let w = a.w;
    let nb = w.blocks_per_row();
    let cb = if Q4 { Q4_CODE_BYTES } else { Q8_CODE_BYTES };
    let so = w.scales_offset();
    let panels: [*const u8; NP] = core::array::from_fn(|i| w.panel(p0 + i).as_ptr());
    // SAFETY: features enabled by the caller; every pointer stays inside its
    // panel (b < nb), acts holds rows i0..i0 + R of nb blocks (driver
    // contract), h0 + NH <= 2, out holds rows i0..i0 + R of NP * 16 values at
    // stride ldo.
    unsafe {
        let acts = a.acts.as_ptr().add(i0 * nb);
        let mut acc = [[[_mm256_setzero_ps(); NH]; NP]; R];
        for b in 0..nb {
            let act: [&ActBlock; R] = core::array::from_fn(|r| &*acts.add(r * nb + b));
            for i in 0..NP {
                for l in (0..cb).step_by(64) {
                    prefetch(panels[i].wrapping_add(b * cb + l + GEMV_PREFETCH));
                }
                for j in 0..NH {
                    let codes = load_codes::<Q4>(panels[i].add(b * cb), h0 + j);
                    let dw = scales(panels[i].add(so + b * 32), h0 + j);
                    let isum = block_isums::<D, Q4, R>(&codes, &act);
                    for ((acc, act), isum) in acc.iter_mut().zip(&act).zip(isum) {
                        acc[i][j] = accumulate(acc[i][j], dw, act.d, isum);
                    }
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (i, v) in acc.iter().enumerate() {
                for (j, v) in v.iter().enumerate() {
                    let o = out.add((i0 + r) * ldo + i * NR + 8 * (h0 + j));
                    _mm256_storeu_ps(o, *v);
                }
            }
        }
    }
}

/// All `R` rows of the tile, two whole panels per [`q_rows`] call.
#[inline(always)]
unsafe fn q_pairs<D: Dot256, const Q4: bool, const R: usize>(
    a: &TileArgs,
    out: *mut f32,
    ldo: usize,
) {
    let mut p = 0;
    while p < a.np {
        // SAFETY: forwarded driver contract; panels p(+1) < np.
        unsafe {
            let o = out.add(p * NR);
            if a.np - p >= 2 {
                q_rows::<D, Q4, 2, R, 2>(a, a.p0 + p, 0, 0, o, ldo);
            } else {
                q_rows::<D, Q4, 1, R, 2>(a, a.p0 + p, 0, 0, o, ldo);
            }
        }
        p += 2;
    }
}

/// The maddubs dot's batched tile: 2 rows as batch 1 does (both halves per
/// pass; measured 25-45% faster than two half passes from DRAM), else each
/// half panel x up to 4 rows (Q8_0: 3), whole K (both halves would not fit
/// the 16 registers).
#[inline(always)]
unsafe fn q_gemm_halves<D: Dot256, const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize) {
    // SAFETY: driver contract (tile size, panels, act rows); features enabled by caller.
    unsafe {
        if a.mr == 2 {
            return q_pairs::<D, Q4, 2>(a, out, ldo);
        }
        // Q8_0's sign trick keeps the signed and absolute code vectors of a
        // chunk live beside the rows' chains: groups of 4 rows spill, so
        // batches of more than 4 rows run in groups of 3 (measured, 4096 x
        // 4096: M=128 105-109 -> 117-121 GOPS, M=7 90-93 -> 101-104; a
        // batch of 4 as 3 + 1 or 2 + 2: 93-98 -> 83-94).
        let rows = if Q4 || D::Q8_UNSIGNED || a.mr <= 4 {
            4
        } else {
            3
        };
        for pi in 0..a.np {
            let (p, o) = (a.p0 + pi, out.add(pi * NR));
            for h in 0..2 {
                let mut i0 = 0;
                while i0 < a.mr {
                    let r = (a.mr - i0).min(rows);
                    match r {
                        1 => q_rows::<D, Q4, 1, 1, 1>(a, p, h, i0, o, ldo),
                        2 => q_rows::<D, Q4, 1, 2, 1>(a, p, h, i0, o, ldo),
                        3 => q_rows::<D, Q4, 1, 3, 1>(a, p, h, i0, o, ldo),
                        _ => q_rows::<D, Q4, 1, 4, 1>(a, p, h, i0, o, ldo),
                    }
                    i0 += r;
                }
            }
        }
    }
}

/// Blocks per pass of the AVX-VNNI batched tile (a panel's codes for the
/// pass, 16 x 544 bytes, stay in L1 while every row group runs over them).
const GEMM_KB: usize = 16;

/// Batched AVX-VNNI tile: per panel, K in passes of `GEMM_KB` blocks, each
/// pass over 5-row groups.
#[inline(always)]
unsafe fn q_gemm_vnni<const Q4: bool>(a: &TileArgs, out: *mut f32, ldo: usize) {
    let nb = a.w.blocks_per_row();
    let mut kept = scratch::<Kept>();
    let kept = kept.as_mut_ptr() as *mut u8;
    let keep = a.mr > KEEP_ROWS;
    for pi in 0..a.np {
        let panel = a.w.panel(a.p0 + pi).as_ptr();
        // SAFETY: forwarded driver contract; panel pi < np.
        let out = unsafe { out.add(pi * NR) };
        let mut b0 = 0;
        while b0 < nb {
            let blocks = b0..(b0 + GEMM_KB).min(nb);
            b0 = blocks.end;
            let pass = Pass {
                a,
                panel,
                blocks,
                out,
                ldo,
                kept,
            };
            let mut i0 = 0;
            while i0 < a.mr {
                let r = (a.mr - i0).min(5);
                // SAFETY: forwarded driver contract; rows i0..i0+r < mr; the
                // first row group (5 rows: mr > KEEP_ROWS) fills `kept`
                // before the others read it.
                unsafe {
                    match (keep, i0) {
                        (false, _) => q_group::<Q4, FROM_PANEL>(&pass, i0, r),
                        (true, 0) => q_gemm_chunks::<Q4, 5, PANEL_TO_KEPT>(&pass, 0),
                        (true, _) => q_group::<Q4, FROM_KEPT>(&pass, i0, r),
                    }
                }
                i0 += r;
            }
        }
    }
}

/// What a pass's first row group keeps for the others: the split Q4_0
/// nibbles (`GEMM_KB` blocks x 8 chunks of both halves; chunk `c` of pass
/// block `j` at line `8 j + c`), then the widened scales (block `j`, both
/// halves, at line `GEMM_KB * 8 + j`).
type Kept = [F32Line; GEMM_KB * 9];

/// One pass of the batched AVX-VNNI tile: one panel over `blocks`, f32
/// accumulators in `out` (row stride `ldo`, halves at columns 0 and 8).
struct Pass<'t, 'a> {
    a: &'t TileArgs<'a>,
    panel: *const u8,
    blocks: Range<usize>,
    out: *mut f32,
    ldo: usize,
    /// A [`Kept`] buffer.
    kept: *mut u8,
}

/// Rows `i0..i0 + r` (`r <= 5`): [`q_gemm_chunks`] with `R = r`.
#[inline(always)]
unsafe fn q_group<const Q4: bool, const SRC: u8>(pass: &Pass, i0: usize, r: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match r {
            1 => q_gemm_chunks::<Q4, 1, SRC>(pass, i0),
            2 => q_gemm_chunks::<Q4, 2, SRC>(pass, i0),
            3 => q_gemm_chunks::<Q4, 3, SRC>(pass, i0),
            4 => q_gemm_chunks::<Q4, 4, SRC>(pass, i0),
            _ => q_gemm_chunks::<Q4, 5, SRC>(pass, i0),
        }
    }
}

/// Both halves of the pass's panel x `R` rows from `i0`, chunk by chunk:
/// each 4-code chunk is loaded once for all rows and each activation
/// broadcast serves both halves, so `2 R` independent `vpdpbusd` chains are
/// in flight. With 16 ymm registers the float accumulators live in `out`,
/// zeroed when the pass starts at block 0. `SRC`: where codes and scales
/// come from.
#[inline(always)]
unsafe fn q_gemm_chunks<const Q4: bool, const R: usize, const SRC: u8>(pass: &Pass, i0: usize) {
    let Pass {
        a,
        panel,
        ref blocks,
        out,
        ldo,
        kept,
    } = *pass;
    let nb = a.w.blocks_per_row();
    let cb = if Q4 { Q4_CODE_BYTES } else { Q8_CODE_BYTES };
    let so = a.w.scales_offset();
    // SAFETY: features (avx2, fma, f16c, avxvnni) enabled by the caller; rows
    // i0..i0+R < mr exist in acts; blocks < nb keep pointers in the panel; out
    // rows are in the tile; `kept` lines stay in its buffer (at most GEMM_KB
    // blocks per pass) and a PANEL_TO_KEPT call wrote the pass's lines before
    // a FROM_KEPT call reads them (q_gemm_vnni).
    unsafe {
        let acts = a.acts.as_ptr().add(i0 * nb);
        let out = out.add(i0 * ldo);
        if blocks.start == 0 {
            for r in 0..R {
                _mm256_storeu_ps(out.add(r * ldo), _mm256_setzero_ps());
                _mm256_storeu_ps(out.add(r * ldo + 8), _mm256_setzero_ps());
            }
        }
        for b in blocks.clone() {
            if !Q4 && i0 == 0 {
                // As in the AVX-512 tile: the first row group prefetches the
                // Q8_0 codes it reads from memory.
                for l in (0..cb).step_by(64) {
                    prefetch(panel.wrapping_add(b * cb + l + GEMV_PREFETCH));
                }
            }
            let act: [&ActBlock; R] = core::array::from_fn(|r| &*acts.add(r * nb + b));
            // Nibbles and stored Q8 codes (q + 128) are unsigned: both start
            // at the activation correction.
            let mut isum: [[__m256i; 2]; R] =
                core::array::from_fn(|r| [_mm256_set1_epi32(act[r].corr); 2]);
            let p = panel.add(b * cb);
            let k = kept.add((b - blocks.start) * 8 * 64);
            for c in 0..8 {
                let w: [__m256i; 2] = core::array::from_fn(|h| {
                    if Q4 && SRC == FROM_KEPT {
                        _mm256_load_si256(k.add(64 * c + 32 * h) as *const __m256i)
                    } else if Q4 {
                        // Chunks c and c + 4 share a load (low and high nibbles).
                        let v = _mm256_load_si256(p.add(64 * (c % 4) + 32 * h) as *const __m256i);
                        let v = if c < 4 { v } else { _mm256_srli_epi16(v, 4) };
                        let v = _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
                        if SRC == PANEL_TO_KEPT {
                            _mm256_store_si256(k.add(64 * c + 32 * h) as *mut __m256i, v);
                        }
                        v
                    } else {
                        _mm256_load_si256(p.add(64 * c + 32 * h) as *const __m256i)
                    }
                });
                for (r, isum) in isum.iter_mut().enumerate() {
                    let av = bcast4(act[r].qs.as_ptr(), c);
                    isum[0] = _mm256_dpbusd_avx_epi32(isum[0], w[0], av);
                    isum[1] = _mm256_dpbusd_avx_epi32(isum[1], w[1], av);
                }
            }
            let sl = kept.add((GEMM_KB * 8 + b - blocks.start) * 64) as *mut f32;
            for h in 0..2 {
                let dw = if SRC == FROM_KEPT {
                    _mm256_load_ps(sl.add(8 * h))
                } else {
                    let v = scales(panel.add(so + b * 32), h);
                    if SRC == PANEL_TO_KEPT {
                        _mm256_store_ps(sl.add(8 * h), v);
                    }
                    v
                };
                for (r, (act, isum)) in act.iter().zip(&isum).enumerate() {
                    let o = out.add(r * ldo + 8 * h);
                    _mm256_storeu_ps(o, accumulate(_mm256_loadu_ps(o), dw, act.d, isum[h]));
                }
            }
        }
    }
}

#[inline(always)]
unsafe fn q_tile<D: Dot256, const Q4: bool>(a: &mut TileArgs) {
    let ldo = a.np * NR;
    let out = a.tile.as_mut_ptr();
    // SAFETY: driver contract (tile size, panels, act rows); features enabled by caller.
    unsafe {
        if a.mr == 1 {
            q_pairs::<D, Q4, 1>(a, out, ldo);
        } else {
            D::gemm_tile::<Q4>(a, out, ldo);
        }
    }
}

/// Loads the weights of half `h` of k-step `kk`.
#[inline(always)]
unsafe fn load_w<const F16: bool>(panel: *const u8, kk: usize, h: usize) -> __m256 {
    // SAFETY: kk < k, so the bytes lie inside the panel.
    unsafe {
        if F16 {
            _mm256_cvtph_ps(_mm_load_si128(panel.add(kk * 32 + 16 * h) as *const __m128i))
        } else {
            _mm256_load_ps(panel.add(kk * 64 + 32 * h) as *const f32)
        }
    }
}

/// Where one `f_chunk` call reads and writes: one panel, k-steps
/// `k0..k0 + kc`, x rows at stride `xs` (chunk-relative: `x` points at step
/// `k0` of the first row), output rows at stride `ldo`.
#[derive(Clone, Copy)]
struct FChunk {
    panel: *const u8,
    /// `kc` steps of 16 f32 weights, or `None` to read (F16: widen) the panel.
    wp: Option<*const f32>,
    x: *const f32,
    xs: usize,
    k0: usize,
    kc: usize,
    out: *mut f32,
    ldo: usize,
    /// With `KEEP`: where to store the weights read from the panel.
    keep: *mut f32,
}

/// Rows of f32 accumulators per float register tile (x 2 halves: 12 of the
/// 16 ymm registers; two weight halves and one broadcast use the rest).
const F_ROWS: usize = 6;

/// `R` rows of one panel over one k-chunk; weights are read from `c.wp` or
/// straight from the panel (F16 widened as used). With `KEEP` (and
/// `c.wp == None`) the weights read are also stored to `c.keep`, at the
/// layout `wp` reads, for the next row groups.
#[inline(always)]
unsafe fn f_chunk<const F16: bool, const R: usize, const KEEP: bool>(c: FChunk) {
    let FChunk {
        panel,
        wp,
        x,
        xs,
        k0,
        kc,
        out,
        ldo,
        keep,
    } = c;
    // SAFETY: features enabled by the caller; rows 0..R of x hold kc values
    // at stride xs; k0 + kc <= k; out holds R rows of 16 at stride ldo; with
    // KEEP, keep holds kc * 16 values.
    unsafe {
        let mut acc: [[__m256; 2]; R] = core::array::from_fn(|r| {
            if k0 == 0 {
                [_mm256_setzero_ps(); 2]
            } else {
                [
                    _mm256_loadu_ps(out.add(r * ldo)),
                    _mm256_loadu_ps(out.add(r * ldo + 8)),
                ]
            }
        });
        for s in 0..kc {
            let (w0, w1) = match wp {
                Some(p) => (
                    _mm256_loadu_ps(p.add(s * NR)),
                    _mm256_loadu_ps(p.add(s * NR + 8)),
                ),
                None => {
                    // The panel streams from memory here: prefetch ahead as
                    // batch 1 does.
                    let step = if F16 { 32 } else { 64 };
                    prefetch(panel.wrapping_add((k0 + s) * step + GEMV_PREFETCH));
                    (
                        load_w::<F16>(panel, k0 + s, 0),
                        load_w::<F16>(panel, k0 + s, 1),
                    )
                }
            };
            if KEEP {
                _mm256_storeu_ps(keep.add(s * NR), w0);
                _mm256_storeu_ps(keep.add(s * NR + 8), w1);
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let xv = _mm256_set1_ps(*x.add(r * xs + s));
                acc[0] = _mm256_fmadd_ps(w0, xv, acc[0]);
                acc[1] = _mm256_fmadd_ps(w1, xv, acc[1]);
            }
        }
        for (r, v) in acc.iter().enumerate() {
            _mm256_storeu_ps(out.add(r * ldo), v[0]);
            _mm256_storeu_ps(out.add(r * ldo + 8), v[1]);
        }
    }
}

/// Where the tile's rows hold k-step `k0` (a multiple of `F16_KC`), and
/// their stride: packed x when the driver packed it, else the rows as given.
///
/// # Safety
/// `k0 < a.w.k()`.
#[inline(always)]
unsafe fn chunk_x(a: &TileArgs, k0: usize) -> (*const f32, usize) {
    // SAFETY: k0 < k, inside x (and inside xp, which holds every chunk).
    unsafe {
        if a.xp.is_empty() {
            (a.x.as_ptr().add(k0), a.w.k())
        } else {
            (a.xp.as_ptr().add(k0 * a.mr), F16_KC)
        }
    }
}

/// All `R` (<= 3) batch rows x `NP` panels from `p0`, whole K:
/// `acc = fma(w_k, x_k, acc)` for k in order, with `2 NP R` independent FMA
/// chains and `NP` panel streams prefetched ahead (one stream alone leaves
/// memory bandwidth unused). x is read packed when the driver packed it.
#[inline(always)]
unsafe fn f_rows<const F16: bool, const NP: usize, const R: usize>(
    a: &TileArgs,
    p0: usize,
    out: *mut f32,
    ldo: usize,
) {
    let k = a.w.k();
    let panels: [*const u8; NP] = core::array::from_fn(|i| a.w.panel(p0 + i).as_ptr());
    let step = if F16 { 32 } else { 64 };
    // SAFETY: features enabled by the caller; x (or xp, as TileArgs says)
    // holds the R rows' k values, kk < k keeps the loads in their panels,
    // out holds R rows of NP * 16 values at stride ldo.
    unsafe {
        let mut acc = [[[_mm256_setzero_ps(); 2]; NP]; R];
        let mut k0 = 0;
        while k0 < k {
            let kc = (k - k0).min(F16_KC);
            let (x, xs) = chunk_x(a, k0);
            for s in 0..kc {
                let xv: [__m256; R] = core::array::from_fn(|r| _mm256_set1_ps(*x.add(r * xs + s)));
                for i in 0..NP {
                    prefetch(panels[i].wrapping_add((k0 + s) * step + GEMV_PREFETCH));
                    for h in 0..2 {
                        let w = load_w::<F16>(panels[i], k0 + s, h);
                        for (acc, x) in acc.iter_mut().zip(&xv) {
                            acc[i][h] = _mm256_fmadd_ps(w, *x, acc[i][h]);
                        }
                    }
                }
            }
            k0 += kc;
        }
        for (r, acc) in acc.iter().enumerate() {
            for (i, v) in acc.iter().enumerate() {
                let o = out.add(r * ldo + i * NR);
                _mm256_storeu_ps(o, v[0]);
                _mm256_storeu_ps(o.add(8), v[1]);
            }
        }
    }
}

/// Up to 3 batch rows, two panels at a time.
#[inline(always)]
unsafe fn f_few<const F16: bool, const R: usize>(a: &TileArgs, out: *mut f32, ldo: usize) {
    let mut p = 0;
    while p < a.np {
        // SAFETY: forwarded driver contract; panels p.. < np.
        unsafe {
            let o = out.add(p * NR);
            if R == 1 && a.np - p >= 4 {
                f_rows::<F16, 4, R>(a, a.p0 + p, o, ldo);
                p += 4;
            } else if a.np - p >= 2 {
                f_rows::<F16, 2, R>(a, a.p0 + p, o, ldo);
                p += 2;
            } else {
                f_rows::<F16, 1, R>(a, a.p0 + p, o, ldo);
                p += 1;
            }
        }
    }
}

#[inline(always)]
unsafe fn f_tile<const F16: bool>(a: &mut TileArgs) {
    let k = a.w.k();
    let ldo = a.np * NR;
    let out = a.tile.as_mut_ptr();
    // SAFETY: driver contract (tile size, panels, x rows); features enabled by caller.
    unsafe {
        match a.mr {
            1 => return f_few::<F16, 1>(a, out, ldo),
            2 => return f_few::<F16, 2>(a, out, ldo),
            3 => return f_few::<F16, 3>(a, out, ldo),
            _ => {}
        }
        let mut buf = scratch::<[F32Line; F16_KC * NR / 16]>();
        let buf = buf.as_mut_ptr() as *mut f32;
        for pi in 0..a.np {
            let panel = a.w.panel(a.p0 + pi).as_ptr();
            let o = out.add(pi * NR);
            let mut k0 = 0;
            while k0 < k {
                let kc = (k - k0).min(F16_KC);
                let (x, xs) = chunk_x(a, k0);
                let mut c = FChunk {
                    panel,
                    wp: None,
                    x,
                    xs,
                    k0,
                    kc,
                    out: o,
                    ldo,
                    keep: buf,
                };
                // Row groups of at most F_ROWS, balanced (8 rows: 4 + 4, not
                // 6 + 2). F16: the first group widens as it goes; with more
                // groups it keeps the f32 weights for them (loads from memory
                // overlap its FMAs, and one group alone stores nothing).
                let mut i0 = 0;
                let mut groups = a.mr.div_ceil(F_ROWS);
                while i0 < a.mr {
                    let r = (a.mr - i0).div_ceil(groups);
                    let g = FChunk {
                        x: c.x.add(i0 * c.xs),
                        out: o.add(i0 * ldo),
                        ..c
                    };
                    if F16 && i0 == 0 && groups > 1 {
                        // mr > F_ROWS, so r >= 4.
                        match r {
                            4 => f_chunk::<F16, 4, true>(g),
                            5 => f_chunk::<F16, 5, true>(g),
                            _ => f_chunk::<F16, F_ROWS, true>(g),
                        }
                        c.wp = Some(buf as *const f32);
                    } else {
                        // mr >= 4 (f_rows runs fewer), so balanced groups
                        // have at least 3 rows.
                        debug_assert!(r >= 3);
                        match r {
                            3 => f_chunk::<F16, 3, false>(g),
                            4 => f_chunk::<F16, 4, false>(g),
                            5 => f_chunk::<F16, 5, false>(g),
                            _ => f_chunk::<F16, F_ROWS, false>(g),
                        }
                    }
                    i0 += r;
                    groups -= 1;
                }
                k0 += kc;
            }
        }
    }
}

/// Activation quantization of one row (canonical rule, 8 lanes at a time).
#[inline(always)]
unsafe fn quantize_row(x: &[f32], offset: i32, out: &mut [ActBlock]) {
    for (b, blk) in out.iter_mut().enumerate() {
        let start = b * QK;
        let len = (x.len() - start).min(QK);
        let mut pad = [0.0f32; QK];
        let src = if len == QK {
            &x[start..start + QK]
        } else {
            pad[..len].copy_from_slice(&x[start..]);
            &pad[..]
        };
        // SAFETY: src holds 32 values; features enabled by the caller.
        unsafe {
            let p = src.as_ptr();
            let v: [__m256; 4] = core::array::from_fn(|i| _mm256_loadu_ps(p.add(8 * i)));
            let mask = _mm256_set1_epi32(0x7FFF_FFFF);
            let abs = |v: __m256| _mm256_and_si256(_mm256_castps_si256(v), mask);
            let m = _mm256_max_epu32(
                _mm256_max_epu32(abs(v[0]), abs(v[1])),
                _mm256_max_epu32(abs(v[2]), abs(v[3])),
            );
            let m = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
            let m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0b01_00_11_10));
            let m = _mm_max_epu32(m, _mm_shuffle_epi32(m, 0b10_11_00_01));
            let (d, id) = block_scales(_mm_cvtsi128_si32(m) as u32);
            blk.d = d;
            if id == 0.0 {
                blk.qs = [0; QK];
                blk.corr = 0;
                continue;
            }
            let idv = _mm256_set1_ps(id);
            let q: [__m256i; 4] =
                core::array::from_fn(|i| _mm256_cvtps_epi32(_mm256_mul_ps(v[i], idv)));
            let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
            let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b01_00_11_10));
            let s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0b10_11_00_01));
            blk.corr = -offset * _mm_cvtsi128_si32(s);
            let p16 = _mm256_packs_epi16(
                _mm256_packs_epi32(q[0], q[1]),
                _mm256_packs_epi32(q[2], q[3]),
            );
            let ordered =
                _mm256_permutevar8x32_epi32(p16, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256(blk.qs.as_mut_ptr() as *mut __m256i, ordered);
        }
    }
}

kernel_table!(
    plain,
    crate::Isa::Avx2,
    "avx2,fma,f16c",
    Maddubs,
    gemv_panels: 4,
    gemm_panels: 2,
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
    crate::Isa::AvxVnni,
    "avx2,fma,f16c,avxvnni",
    VnniVex,
    gemv_panels: 4,
    gemm_panels: 2,
    pack_x: true,
    tiles: {
        Q8_0 => q_tile::<Dot, false>,
        Q4_0 => q_tile::<Dot, true>,
        F16 => f_tile::<true>,
        F32 => f_tile::<false>,
    }
);
