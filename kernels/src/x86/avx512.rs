//! AVX-512 kernels (F/BW/VL), with and without VNNI.
//!
//! One zmm holds the 16 rows of a panel (one i32/f32 lane per output row), so
//! each lane runs the canonical sequence of the scalar kernels. The integer
//! block dot is the only part that differs between the two levels, behind
//! [`Dot512`]: `vpdpbusd` (VNNI) or `vpmaddubsw` + `vpmaddwd` (BW).
//!
//! One algorithm serves every block format, parameterized by [`Kind`]: the
//! stored codes ([`Code`]: Q8_0 bytes, nibbles, nibbles plus the fifth bits
//! `qh`, which are added to the split nibbles once per block and panel) and
//! offset (`isum = raw + corr`) or minimum (`isum = raw`, then one more FMA
//! with `m` and `da * Σa`). Every float format runs one algorithm too,
//! parameterized by [`Widen`] (F16, BF16, F32).
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
//!   the split nibble codes (Q5: with their fifth bits) and the widened
//!   scales in a 20 KiB L1 buffer
//!   that the other groups read (`KEEP_ROWS`).
//! - BW block formats: one panel x 8 rows over whole blocks (the maddubs dot
//!   keeps i16 partial sums per block, which the chunk loop cannot share).
//! - Float formats: K in chunks of 128 steps over x packed chunk-major by the
//!   driver (once per row group, for all its tiles); per chunk, two panels x
//!   12 rows per register tile. The first row group loads (widens) the
//!   pair's weights inside its FMA loop, prefetched as batch 1 does (loads
//!   from memory overlap the compute), and keeps the f32 in an aligned L1
//!   buffer for the other groups; batches of up to 12 rows only stream.

use super::{
    prefetch, scratch, F16_KC, FROM_KEPT, FROM_PANEL, GEMV_PREFETCH, KEEP_ROWS, PANEL_TO_KEPT,
};
use crate::act::{block_scales, ActBlock};
use crate::formats::{
    BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0, FloatElem, PackedBlock, QK,
};
use crate::pack::NR;
use crate::{F32Line, TileArgs, MAX_TILE_ROWS};
use core::arch::x86_64::*;
use core::ops::Range;
use half::{bf16, f16};

/// How a block format stores its codes in a panel (see [`crate::pack`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Code {
    /// 8 chunks of bytes `q + 128` (Q8_0).
    Q8,
    /// 4 chunks of nibble pairs (Q4_0, Q4_1).
    Q4,
    /// 4 chunks of nibble pairs and a chunk of the fifth bits `qh` (Q5_0, Q5_1).
    Q5,
}

/// A block format as the kernels see it: its code kind, and (from
/// [`PackedBlock::SCALES`]) whether it has a minimum `m`, which decides
/// how `isum` and the accumulation go (crate docs, canonical arithmetic).
pub(crate) trait Kind: PackedBlock {
    /// The stored codes.
    const CODE: Code;
    /// A minimum: `isum = raw`, then `acc = fma(m, da * Σa, acc)`; else
    /// the codes carry an offset and `isum = raw + corr`.
    const MIN: bool = Self::SCALES == 2;
    /// Code bytes per panel and block.
    const CODE_BYTES: usize = Self::GROUPS * 64;
    /// Scale bytes per panel and block (16 `d`, then 16 `m`).
    const SCALE_BYTES: usize = Self::SCALES * NR * 2;
}

impl Kind for BlockQ8_0 {
    const CODE: Code = Code::Q8;
}
impl Kind for BlockQ4_0 {
    const CODE: Code = Code::Q4;
}
impl Kind for BlockQ4_1 {
    const CODE: Code = Code::Q4;
}
impl Kind for BlockQ5_0 {
    const CODE: Code = Code::Q5;
}
impl Kind for BlockQ5_1 {
    const CODE: Code = Code::Q5;
}

/// The exact integer part of one block for 16 rows.
pub(crate) trait Dot512 {
    /// Whether `q8_block` works on the unsigned codes (`q + 128`), so that the
    /// accumulator must start at the activation correction.
    const Q8_UNSIGNED: bool;
    /// `init + Σ_c Σ_{i<4} codes[c].u8[4r+i] * a[4c+i]` per lane `r`; codes
    /// <= 15, or <= 31 with `Q5`.
    unsafe fn nib_block<const Q5: bool>(
        init: __m512i,
        codes: &[__m512i; 8],
        a: *const i8,
    ) -> __m512i;
    /// Same for the stored Q8_0 codes: `init + Σ (q + 128) * a` if
    /// `Q8_UNSIGNED`, else `init + Σ q * a`, exactly.
    unsafe fn q8_block(init: __m512i, stored: &[__m512i; 8], a: *const i8) -> __m512i;
    /// The batched part of a tile (`mr > 1`), with the register tiling that
    /// measured fastest for this dot (see the module docs).
    unsafe fn gemm_tile<B: Kind>(a: &TileArgs, out: *mut f32, ldo: usize);
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
    unsafe fn nib_block<const Q5: bool>(
        init: __m512i,
        codes: &[__m512i; 8],
        a: *const i8,
    ) -> __m512i {
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
        unsafe { Self::nib_block::<false>(init, stored, a) }
    }

    #[inline(always)]
    unsafe fn gemm_tile<B: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe { q_gemm_vnni::<B>(a, out, ldo) }
    }
}

/// AVX512-BW: `vpmaddubsw` (u8*i8 pairs to saturating i16) then `vpmaddwd`.
pub(crate) struct Maddubs;

impl Dot512 for Maddubs {
    const Q8_UNSIGNED: bool = false;

    #[inline(always)]
    unsafe fn nib_block<const Q5: bool>(
        init: __m512i,
        codes: &[__m512i; 8],
        a: *const i8,
    ) -> __m512i {
        // SAFETY: only called from functions enabling avx512f/bw. Each i16 pair
        // sum is <= 2*15*127 = 3810, so eight of them (30480) fit in i16; with
        // 5-bit codes a pair is <= 2*31*127 = 7874 and only four (31496) fit,
        // so the i16 sums are widened every 4 chunks: exact either way.
        unsafe {
            let ones = _mm512_set1_epi16(1);
            let per = if Q5 { 4 } else { 8 };
            let mut acc = init;
            for (g, group) in codes.chunks_exact(per).enumerate() {
                let mut s16 = _mm512_setzero_si512();
                for (c, &v) in group.iter().enumerate() {
                    let p = _mm512_maddubs_epi16(v, bcast4(a, g * per + c));
                    s16 = _mm512_add_epi16(s16, p);
                }
                acc = _mm512_add_epi32(acc, _mm512_madd_epi16(s16, ones));
            }
            acc
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
    unsafe fn gemm_tile<B: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe { q_gemm_blocks::<Self, B>(a, out, ldo) }
    }
}

/// Splits nibble chunk `v` (chunk `c` of a block) into the codes of
/// elements `4c+i` (low nibbles) and `16+4c+i` (high nibbles); with `Q5`,
/// adds their fifth bits from `qh` (lane `r`: row `r`'s `qh`, whose bit `j`
/// belongs to element `j`).
#[inline(always)]
unsafe fn split_chunk<const Q5: bool>(v: __m512i, qh: __m512i, c: usize) -> [__m512i; 2] {
    // SAFETY: target features are enabled by the calling kernel.
    unsafe {
        let m = _mm512_set1_epi8(0x0F);
        let lo = _mm512_and_si512(v, m);
        let hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m);
        if !Q5 {
            return [lo, hi];
        }
        // Byte i of a lane needs bit 4c+i (low) or 16+4c+i (high) of the
        // lane's qh: bit 4(c%2)+i of qh byte c/2 or 2+c/2. Spread that qh
        // byte over the lane's 4 bytes, test each byte's bit, add 16 where set.
        let bits = _mm512_set1_epi32(if c.is_multiple_of(2) {
            0x0804_0201
        } else {
            0x8040_2010u32 as i32
        });
        let k_lo = _mm512_test_epi8_mask(spread_qh(qh, c / 2), bits);
        let k_hi = _mm512_test_epi8_mask(spread_qh(qh, 2 + c / 2), bits);
        let sixteen = _mm512_set1_epi8(0x10);
        [
            _mm512_mask_add_epi8(lo, k_lo, lo, sixteen),
            _mm512_mask_add_epi8(hi, k_hi, hi, sixteen),
        ]
    }
}

/// Byte `s` (< 4) of each 4-byte lane of `qh`, in all 4 bytes of the lane.
#[inline(always)]
unsafe fn spread_qh(qh: __m512i, s: usize) -> __m512i {
    // SAFETY: target features are enabled by the calling kernel.
    unsafe {
        let s = s as i32 * 0x0101_0101;
        let idx = _mm512_set4_epi32(0x0C0C_0C0C + s, 0x0808_0808 + s, 0x0404_0404 + s, s);
        _mm512_shuffle_epi8(qh, idx)
    }
}

/// One 64-byte code chunk.
#[inline(always)]
unsafe fn chunk(p: *const u8, c: usize) -> __m512i {
    // SAFETY: the caller's `p + 64c` is a 64-byte aligned chunk inside a panel.
    unsafe { _mm512_load_si512(p.add(64 * c) as *const _) }
}

/// Loads the 8 code vectors of one block (unsigned codes of elements
/// `4c..4c+4` in vector `c`): Q8_0 as stored, nibble formats split (and
/// their fifth bits added).
#[inline(always)]
unsafe fn load_codes<B: Kind>(p: *const u8) -> [__m512i; 8] {
    // SAFETY: p points at one block's codes inside a panel (B::CODE_BYTES),
    // 64-byte aligned by the packed layout.
    unsafe {
        let mut v = [_mm512_setzero_si512(); 8];
        match B::CODE {
            Code::Q8 => {
                for (c, v) in v.iter_mut().enumerate() {
                    *v = chunk(p, c);
                }
                v
            }
            Code::Q4 | Code::Q5 => {
                let q5 = B::CODE == Code::Q5;
                let qh = if q5 {
                    chunk(p, 4)
                } else {
                    _mm512_setzero_si512()
                };
                for c in 0..4 {
                    let [lo, hi] = if q5 {
                        split_chunk::<true>(chunk(p, c), qh, c)
                    } else {
                        split_chunk::<false>(chunk(p, c), qh, c)
                    };
                    v[c] = lo;
                    v[c + 4] = hi;
                }
                v
            }
        }
    }
}

/// Where a block's integer dot starts: `corr` for codes with an offset
/// (undoing it exactly), 0 for formats with a minimum and for a signed Q8 dot.
#[inline(always)]
unsafe fn isum_init<D: Dot512, B: Kind>(act: &ActBlock) -> __m512i {
    // SAFETY: target features are enabled by the calling kernel.
    unsafe {
        if B::MIN || (B::CODE == Code::Q8 && !D::Q8_UNSIGNED) {
            _mm512_setzero_si512()
        } else {
            _mm512_set1_epi32(act.corr)
        }
    }
}

#[inline(always)]
unsafe fn block_isum<D: Dot512, B: Kind>(codes: &[__m512i; 8], act: &ActBlock) -> __m512i {
    // SAFETY: target features are enabled by the calling kernel.
    unsafe {
        let init = isum_init::<D, B>(act);
        match B::CODE {
            Code::Q8 => D::q8_block(init, codes, act.qs.as_ptr()),
            Code::Q4 => D::nib_block::<false>(init, codes, act.qs.as_ptr()),
            Code::Q5 => D::nib_block::<true>(init, codes, act.qs.as_ptr()),
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

/// The minimum term's factor of an activation block: `da * (Σa as f32)`
/// (one f32 multiply; `corr = Σa` for formats with a minimum), broadcast.
#[inline(always)]
unsafe fn min_factor(act: &ActBlock) -> __m512 {
    // SAFETY: target features are enabled by the calling kernel.
    unsafe { _mm512_set1_ps(act.d * act.corr as f32) }
}

#[inline(always)]
unsafe fn scales(p: *const u8) -> __m512 {
    // SAFETY: p points at 16 f16 scales (32 bytes) inside a panel.
    unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
}

/// Batch 1, `NP` panels at once.
#[inline(always)]
unsafe fn q_gemv<D: Dot512, B: Kind, const NP: usize>(a: &TileArgs, p0: usize, out: *mut f32) {
    let w = a.w;
    let nb = w.blocks_per_row();
    let (cb, sb) = (B::CODE_BYTES, B::SCALE_BYTES);
    let so = w.scales_offset();
    let panels: [*const u8; NP] = core::array::from_fn(|i| w.panel(p0 + i).as_ptr());
    // SAFETY: target features enabled by the caller; every pointer stays inside its
    // panel (b < nb), acts holds nb blocks (driver contract), out holds NP*16 values.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NP];
        for b in 0..nb {
            let act = a.acts.get_unchecked(b);
            let mf = if B::MIN {
                min_factor(act)
            } else {
                _mm512_setzero_ps()
            };
            for i in 0..NP {
                for l in (0..cb).step_by(64) {
                    prefetch(panels[i].wrapping_add(b * cb + l + GEMV_PREFETCH));
                }
                let codes = load_codes::<B>(panels[i].add(b * cb));
                let isum = block_isum::<D, B>(&codes, act);
                let sp = panels[i].add(so + b * sb);
                // The scales stream too, as far ahead in blocks as the codes
                // (left to the hardware prefetchers, Q5_0 ran 20% slower).
                prefetch(sp.wrapping_add(GEMV_PREFETCH * sb / cb));
                acc[i] = accumulate(acc[i], scales(sp), act.d, isum);
                if B::MIN {
                    acc[i] = _mm512_fmadd_ps(scales(sp.add(32)), mf, acc[i]);
                }
            }
        }
        for (i, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add(i * NR), *v);
        }
    }
}

/// Blocks per pass of a batched tile: the codes of these blocks for the
/// tile's panels (up to 2 x 16 x 384 bytes, or what `Kept` holds)
/// stay in L1 while every row group of the tile runs over them.
const GEMM_KB: usize = 16;

/// What a pass's first row group keeps for the others: the split nibble
/// codes (`GEMM_KB` blocks x up to 2 panels x 8 vectors; vector `c` of
/// block `j`, panel `i` at line `(j * P + i) * 8 + c`), then the widened
/// scales `d` (block `j`, panel `i` at line `GEMM_KB * 16 + j * P + i`) and
/// `m` (at line `GEMM_KB * 18 + j * P + i`).
type Kept = [F32Line; GEMM_KB * 2 * 10];

/// Line of [`Kept`] where the `d` scales start (`m`: `GEMM_KB * 2` further).
const KEPT_SCALES: usize = GEMM_KB * 2 * 8;

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
unsafe fn q_gemm_chunks<B: Kind, const P: usize, const R: usize, const SRC: u8>(
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
    let (cb, sb) = (B::CODE_BYTES, B::SCALE_BYTES);
    let so = a.w.scales_offset();
    let nibbles = B::CODE != Code::Q8;
    // SAFETY: target features enabled by the caller; rows i0..i0+R < mr exist in
    // acts (driver contract); blocks < nb keep panel pointers in their panels;
    // out rows are in the tile; `kept` lines stay in its buffer (fewer than
    // GEMM_KB blocks per pass, P <= 2) and a PANEL_TO_KEPT call wrote the
    // pass's lines before a FROM_KEPT call reads them (q_gemm_vnni_rows).
    unsafe {
        let acts = a.acts.as_ptr().add(i0 * nb);
        let out = out.add(i0 * ldo);
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        if blocks.start != 0 {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (i, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_loadu_ps(out.add(r * ldo + i * NR));
                }
            }
        }
        for b in blocks.clone() {
            if B::CODE == Code::Q8 && i0 == 0 {
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
            let j = b - blocks.start;
            let mut act = [&*acts; R];
            for (r, act) in act.iter_mut().enumerate() {
                *act = &*acts.add(r * nb + b);
            }
            // Codes are unsigned: those with an offset start at the
            // activation correction, those of formats with a minimum at 0.
            let mut isum = [[_mm512_setzero_si512(); P]; R];
            for (isum, act) in isum.iter_mut().zip(&act) {
                *isum = [isum_init::<Vnni, B>(act); P];
            }
            if nibbles && SRC != FROM_KEPT {
                let mut qh = [_mm512_setzero_si512(); P];
                if B::CODE == Code::Q5 {
                    for (i, qh) in qh.iter_mut().enumerate() {
                        *qh = chunk(panels[i].add(b * cb), 4);
                    }
                }
                for c in 0..4 {
                    let mut lo = [_mm512_setzero_si512(); P];
                    let mut hi = [_mm512_setzero_si512(); P];
                    for i in 0..P {
                        let v = chunk(panels[i].add(b * cb), c);
                        [lo[i], hi[i]] = if B::CODE == Code::Q5 {
                            split_chunk::<true>(v, qh[i], c)
                        } else {
                            split_chunk::<false>(v, qh[i], c)
                        };
                        if SRC == PANEL_TO_KEPT {
                            let k = kept.add((j * P + i) * 8 * 64);
                            _mm512_store_si512(k.add(c * 64) as *mut _, lo[i]);
                            _mm512_store_si512(k.add((c + 4) * 64) as *mut _, hi[i]);
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
                    let mut v = [_mm512_setzero_si512(); P];
                    for (i, v) in v.iter_mut().enumerate() {
                        *v = if nibbles {
                            chunk(kept.add((j * P + i) * 8 * 64), c)
                        } else {
                            chunk(panels[i].add(b * cb), c)
                        };
                    }
                    for (r, isum) in isum.iter_mut().enumerate() {
                        let av = bcast4(act[r].qs.as_ptr(), c);
                        for i in 0..P {
                            isum[i] = _mm512_dpbusd_epi32(isum[i], v[i], av);
                        }
                    }
                }
            }
            let mut dw = [_mm512_setzero_ps(); P];
            let mut mw = [_mm512_setzero_ps(); P];
            for i in 0..P {
                let line = |l: usize| kept.add((l + j * P + i) * 64) as *mut f32;
                let (dl, ml) = (line(KEPT_SCALES), line(KEPT_SCALES + GEMM_KB * 2));
                if SRC == FROM_KEPT {
                    dw[i] = _mm512_load_ps(dl);
                    if B::MIN {
                        mw[i] = _mm512_load_ps(ml);
                    }
                } else {
                    let sp = panels[i].add(so + b * sb);
                    dw[i] = scales(sp);
                    if B::MIN {
                        mw[i] = scales(sp.add(32));
                    }
                    if SRC == PANEL_TO_KEPT {
                        _mm512_store_ps(dl, dw[i]);
                        if B::MIN {
                            _mm512_store_ps(ml, mw[i]);
                        }
                    }
                }
            }
            for r in 0..R {
                // Per row: the minimum term's factor serves every panel.
                let mf = if B::MIN {
                    min_factor(act[r])
                } else {
                    _mm512_setzero_ps()
                };
                for i in 0..P {
                    acc[r][i] = accumulate(acc[r][i], dw[i], act[r].d, isum[r][i]);
                    if B::MIN {
                        acc[r][i] = _mm512_fmadd_ps(mw[i], mf, acc[r][i]);
                    }
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
unsafe fn q_gemm_vnni<B: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
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
                    q_gemm_vnni_rows::<B, 2>(&Pass {
                        a,
                        panels,
                        blocks,
                        out,
                        ldo,
                        kept,
                    });
                } else {
                    let panels = [panel(0)];
                    q_gemm_vnni_rows::<B, 1>(&Pass {
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
unsafe fn q_gemm_vnni_rows<B: Kind, const P: usize>(pass: &Pass<P>) {
    let mr = pass.a.mr;
    // Deriving 5-bit codes costs more than storing and reloading them: Q5
    // keeps them as soon as a second row group reads them.
    let keep = mr > if B::CODE == Code::Q5 { 6 } else { KEEP_ROWS };
    let mut i0 = 0;
    while i0 < mr {
        let r = (mr - i0).min(6);
        // SAFETY: forwarded driver contract; rows i0..i0+r < mr; the first row
        // group (6 rows: mr > 6 when keeping) fills `kept` before the others
        // read it.
        unsafe {
            match (keep, i0) {
                (false, _) => q_group::<B, P, FROM_PANEL>(pass, i0, r),
                (true, 0) => q_gemm_chunks::<B, P, 6, PANEL_TO_KEPT>(pass, 0),
                (true, _) => q_group::<B, P, FROM_KEPT>(pass, i0, r),
            }
        }
        i0 += r;
    }
}

/// Rows `i0..i0 + r` (`r <= 6`): [`q_gemm_chunks`] with `R = r`.
#[inline(always)]
unsafe fn q_group<B: Kind, const P: usize, const SRC: u8>(pass: &Pass<P>, i0: usize, r: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match r {
            1 => q_gemm_chunks::<B, P, 1, SRC>(pass, i0),
            2 => q_gemm_chunks::<B, P, 2, SRC>(pass, i0),
            3 => q_gemm_chunks::<B, P, 3, SRC>(pass, i0),
            4 => q_gemm_chunks::<B, P, 4, SRC>(pass, i0),
            5 => q_gemm_chunks::<B, P, 5, SRC>(pass, i0),
            _ => q_gemm_chunks::<B, P, 6, SRC>(pass, i0),
        }
    }
}

/// One panel, `R` batch rows, whole K (the BW tile: its block dot keeps
/// partial sums in i16, so it works on a block's 8 code vectors at once).
#[inline(always)]
unsafe fn q_gemm_block_rows<D: Dot512, B: Kind, const R: usize>(
    a: &TileArgs,
    panel: *const u8,
    i0: usize,
    out: *mut f32,
    ldo: usize,
) {
    let w = a.w;
    let nb = w.blocks_per_row();
    let (cb, sb) = (B::CODE_BYTES, B::SCALE_BYTES);
    let so = w.scales_offset();
    // SAFETY: target features enabled by the caller; rows i0..i0+R < mr exist in
    // acts (driver contract); panel pointers stay in the panel; out rows are in the tile.
    unsafe {
        let acts = a.acts.as_ptr().add(i0 * nb);
        let mut acc = [_mm512_setzero_ps(); R];
        for b in 0..nb {
            let codes = load_codes::<B>(panel.add(b * cb));
            let sp = panel.add(so + b * sb);
            let dw = scales(sp);
            let mw = if B::MIN {
                scales(sp.add(32))
            } else {
                _mm512_setzero_ps()
            };
            for (r, acc) in acc.iter_mut().enumerate() {
                let act = &*acts.add(r * nb + b);
                *acc = accumulate(*acc, dw, act.d, block_isum::<D, B>(&codes, act));
                if B::MIN {
                    *acc = _mm512_fmadd_ps(mw, min_factor(act), *acc);
                }
            }
        }
        for (r, v) in acc.iter().enumerate() {
            _mm512_storeu_ps(out.add((i0 + r) * ldo), *v);
        }
    }
}

/// Batched BW tile: each panel x 8-row groups, whole K.
#[inline(always)]
unsafe fn q_gemm_blocks<D: Dot512, B: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
    for pi in 0..a.np {
        let panel = a.w.panel(a.p0 + pi).as_ptr();
        let mut i0 = 0;
        while i0 < a.mr {
            let r = (a.mr - i0).min(8);
            // SAFETY: forwarded driver contract; rows i0..i0+r < mr, panel pi < np.
            unsafe {
                let o = out.add(pi * NR);
                match r {
                    1 => q_gemm_block_rows::<D, B, 1>(a, panel, i0, o, ldo),
                    2 => q_gemm_block_rows::<D, B, 2>(a, panel, i0, o, ldo),
                    3 => q_gemm_block_rows::<D, B, 3>(a, panel, i0, o, ldo),
                    4 => q_gemm_block_rows::<D, B, 4>(a, panel, i0, o, ldo),
                    5 => q_gemm_block_rows::<D, B, 5>(a, panel, i0, o, ldo),
                    6 => q_gemm_block_rows::<D, B, 6>(a, panel, i0, o, ldo),
                    7 => q_gemm_block_rows::<D, B, 7>(a, panel, i0, o, ldo),
                    _ => q_gemm_block_rows::<D, B, 8>(a, panel, i0, o, ldo),
                }
            }
            i0 += r;
        }
    }
}

#[inline(always)]
unsafe fn q_tile<D: Dot512, B: Kind>(a: &mut TileArgs) {
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
                    1 => q_gemv::<D, B, 1>(a, a.p0 + p, o),
                    2 => q_gemv::<D, B, 2>(a, a.p0 + p, o),
                    3 => q_gemv::<D, B, 3>(a, a.p0 + p, o),
                    _ => q_gemv::<D, B, 4>(a, a.p0 + p, o),
                }
                p += 4;
            }
            return;
        }
        D::gemm_tile::<B>(a, out, ldo);
    }
}

/// A float format's element as the kernels read it: 16 rows' values of a
/// k-step, widened exactly to f32.
pub(crate) trait Widen: FloatElem {
    /// Bytes per k-step of a panel (16 values).
    const STEP: usize = NR * core::mem::size_of::<Self>();
    /// The 16 values at `p`, as f32.
    unsafe fn load16(p: *const u8) -> __m512;
}

impl Widen for f16 {
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m512 {
        // SAFETY: (caller) p holds 16 f16; target features enabled by the kernel.
        unsafe { _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)) }
    }
}

impl Widen for bf16 {
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m512 {
        // SAFETY: (caller) p holds 16 bf16; target features enabled by the kernel.
        // A bf16 is the high half of its f32: widening is `bits << 16`.
        unsafe {
            let v = _mm512_cvtepu16_epi32(_mm256_loadu_si256(p as *const __m256i));
            _mm512_castsi512_ps(_mm512_slli_epi32(v, 16))
        }
    }
}

impl Widen for f32 {
    #[inline(always)]
    unsafe fn load16(p: *const u8) -> __m512 {
        // SAFETY: (caller) p holds 16 f32; target features enabled by the kernel.
        unsafe { _mm512_loadu_ps(p as *const f32) }
    }
}

/// Batch 1, `NP` panels: `acc = fma(w_k, x_k, acc)` for k in order.
#[inline(always)]
unsafe fn f_gemv<E: Widen, const NP: usize>(a: &TileArgs, p0: usize, out: *mut f32) {
    let k = a.w.k();
    let panels: [*const u8; NP] = core::array::from_fn(|i| a.w.panel(p0 + i).as_ptr());
    // SAFETY: features enabled by the caller; x holds k values (driver contract);
    // k-step kk < k lies inside each panel.
    unsafe {
        let mut acc = [_mm512_setzero_ps(); NP];
        for kk in 0..k {
            let x = _mm512_set1_ps(*a.x.get_unchecked(kk));
            for i in 0..NP {
                let w = panels[i].add(kk * E::STEP);
                prefetch(w.wrapping_add(GEMV_PREFETCH));
                acc[i] = _mm512_fmadd_ps(E::load16(w), x, acc[i]);
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
/// first step, each with `step` bytes between k-steps; 16 values of the
/// chunk kernel's element `E` per step (widened as used).
#[derive(Clone, Copy)]
struct ChunkW<const P: usize> {
    w: [*const u8; P],
    step: usize,
    /// With `KEEP`, where to also store the widened weights (step `s`,
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
    E: Widen,
    const P: usize,
    const R: usize,
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
        let mut acc = [[_mm512_setzero_ps(); P]; R];
        if !first {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (i, acc) in acc.iter_mut().enumerate() {
                    *acc = _mm512_loadu_ps(out.add(r * ldo + i * NR));
                }
            }
        }
        for s in 0..kc {
            if s < pf.count {
                let line = pf.base.wrapping_add(64 * s);
                _mm_prefetch::<_MM_HINT_T1>(line as *const i8);
            }
            let mut wv = [_mm512_setzero_ps(); P];
            for (i, wv) in wv.iter_mut().enumerate() {
                let w = cw.w[i].add(s * cw.step);
                if S {
                    // Weights stream from memory here, once: prefetch ahead as
                    // the batch-1 kernels do.
                    prefetch(w.wrapping_add(GEMV_PREFETCH));
                }
                *wv = E::load16(w);
                if KEEP {
                    _mm512_storeu_ps(cw.keep.add((s * P + i) * NR), *wv);
                }
            }
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
unsafe fn f_gemm<E: Widen, const P: usize>(
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
        // panels (widens them) as it computes and keeps the f32 in `buf`
        // (aligned, in L1), the others read them from there.
        debug_assert!(a.mr > 12);
        let cw = ChunkW {
            w: core::array::from_fn(|i| buf.add(i * NR) as *const u8),
            step: P * NR * 4,
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
                let src = panel_chunk::<E, P>(a, p, k0, buf);
                f_gemm_chunk::<E, P, 12, true, true>(src, x, kc, o, ldo, k0 == 0, pf);
                i0 += 12;
                continue;
            }
            match r {
                1 => f_gemm_chunk::<f32, P, 1, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                2 => f_gemm_chunk::<f32, P, 2, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                3 => f_gemm_chunk::<f32, P, 3, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                4 => f_gemm_chunk::<f32, P, 4, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                5 => f_gemm_chunk::<f32, P, 5, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                6 => f_gemm_chunk::<f32, P, 6, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                7 => f_gemm_chunk::<f32, P, 7, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                8 => f_gemm_chunk::<f32, P, 8, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                9 => f_gemm_chunk::<f32, P, 9, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                10 => f_gemm_chunk::<f32, P, 10, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                11 => f_gemm_chunk::<f32, P, 11, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
                _ => f_gemm_chunk::<f32, P, 12, false, false>(cw, x, kc, o, ldo, k0 == 0, pf),
            }
            i0 += r;
        }
    }
}

/// The weights of `P` panels from `p`, k-steps from `k0`, as the FMA loop
/// streams them from the panels (widened there), storing the f32 to
/// `keep` unless it is null.
///
/// # Safety
/// `p + P <= a.w.panels()` and `k0 < a.w.k()`.
#[inline(always)]
unsafe fn panel_chunk<E: Widen, const P: usize>(
    a: &TileArgs,
    p: usize,
    k0: usize,
    keep: *mut f32,
) -> ChunkW<P> {
    // SAFETY: (caller) the panels exist and hold step k0 (E::STEP bytes per step).
    unsafe {
        ChunkW {
            w: core::array::from_fn(|i| a.w.panel(p + i).as_ptr().add(k0 * E::STEP)),
            step: E::STEP,
            keep,
        }
    }
}

/// Float batches of at most 12 rows (one register tile): K-chunks of `P`
/// panels with the weights loaded (widened) as the FMA loop uses them,
/// prefetched ahead. Staging them (as `f_gemm` does for larger batches)
/// would store and reload every weight for a single use and serialize the
/// loads from memory ahead of the compute (measured: F16 M=8 4096x4096
/// 96 -> 145 GFLOP/s).
#[inline(always)]
unsafe fn f_gemm_few<E: Widen, const P: usize>(
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
        let cw = panel_chunk::<E, P>(a, p, k0, core::ptr::null_mut());
        let first = k0 == 0;
        match a.mr {
            1 => f_gemm_chunk::<E, P, 1, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            2 => f_gemm_chunk::<E, P, 2, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            3 => f_gemm_chunk::<E, P, 3, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            4 => f_gemm_chunk::<E, P, 4, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            5 => f_gemm_chunk::<E, P, 5, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            6 => f_gemm_chunk::<E, P, 6, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            7 => f_gemm_chunk::<E, P, 7, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            8 => f_gemm_chunk::<E, P, 8, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            9 => f_gemm_chunk::<E, P, 9, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            10 => f_gemm_chunk::<E, P, 10, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            11 => f_gemm_chunk::<E, P, 11, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
            _ => f_gemm_chunk::<E, P, 12, true, false>(cw, xc, kc, out, ldo, first, NO_LINES),
        }
    }
}

#[inline(always)]
unsafe fn f_tile<E: Widen>(a: &mut TileArgs) {
    let out = a.tile.as_mut_ptr();
    // SAFETY: driver contract (tile size, panels, x rows); features enabled by caller.
    unsafe {
        if a.mr == 1 {
            let mut p = 0;
            while p < a.np {
                let o = out.add(p * NR);
                match a.np - p {
                    1 => f_gemv::<E, 1>(a, a.p0 + p, o),
                    2 => f_gemv::<E, 2>(a, a.p0 + p, o),
                    3 => f_gemv::<E, 3>(a, a.p0 + p, o),
                    _ => f_gemv::<E, 4>(a, a.p0 + p, o),
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
                        f_gemm_few::<E, 2>(a, a.p0 + p, k0, kc, xc, o);
                    } else {
                        f_gemm_few::<E, 1>(a, a.p0 + p, k0, kc, xc, o);
                    }
                    p += 2;
                    continue;
                }
                if a.np - p >= 2 {
                    f_gemm::<E, 2>(a, a.p0 + p, k0, kc, xc, o, pfx);
                    p += 2;
                } else {
                    f_gemm::<E, 1>(a, a.p0 + p, k0, kc, xc, o, pfx);
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
    bounds: Kind, Widen
);
kernel_table!(
    vnni,
    crate::Isa::Avx512Vnni,
    "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c",
    Vnni,
    gemv_panels: 4,
    gemm_panels: 8,
    pack_x: true,
    bounds: Kind, Widen
);
