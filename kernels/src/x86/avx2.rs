//! AVX2 kernels (+FMA, F16C), with `vpmaddubsw` or AVX-VNNI's VEX `vpdpbusd`.
//!
//! One algorithm per dot serves every block format (Q8_0, Q4_0, Q4_1, Q5_0,
//! Q5_1), parameterized by its code [`Kind`]: Q8_0 bytes, nibbles, or
//! nibbles plus a `qh` chunk (bit 4, merged into the codes once per block
//! and half panel for all rows), each with an offset (`isum = raw + corr`)
//! or a minimum (`isum = raw`, then `acc = fma(m, da * Σa, acc)`); and one
//! per float format (F16, BF16, F32), parameterized by how a half k-step is
//! widened ([`Float`]).
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
//!   the unsigned nibble codes and the widened scales in a 10 KiB L1
//!   buffer that the other groups read (`KEEP_ROWS`);
//! - float formats, up to 3 rows: two panels x all rows over the whole of K
//!   (two prefetched panel streams: one alone leaves memory bandwidth unused);
//! - float formats, more rows: one panel x up to 6 rows (balanced row groups)
//!   over x packed chunk-major by the driver; F16 and BF16 are widened by the
//!   first row group as it computes and kept as f32 for the chunk's other
//!   groups.
//!
//! Batch 1 runs two panels per pass (floats: four), both halves of each
//! block (or k-step) together, so every line of the panels is read once,
//! and prefetches each panel stream ahead as the AVX-512 batch-1 kernels do.

use super::{
    prefetch, scratch, F16_KC, FROM_KEPT, FROM_PANEL, GEMV_PREFETCH, KEEP_ROWS, PANEL_TO_KEPT,
};
use crate::act::{block_scales, ActBlock};
#[allow(unused_imports)] // named by the kernel tables
use crate::formats::{BlockQ4_0, BlockQ4_1, BlockQ5_0, BlockQ5_1, BlockQ8_0};
use crate::formats::{FloatElem, PackedBlock, WeightFormat, QK};
use crate::pack::NR;
use crate::{F32Line, TileArgs};
use core::arch::x86_64::*;
use core::ops::Range;

/// How a block format stores its codes (see [`crate::pack`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codes {
    /// 8 chunks of bytes `q + 128` (Q8_0).
    Q8,
    /// 4 chunks of nibble pairs (Q4_0, Q4_1).
    Q4,
    /// As `Q4`, plus a 5th chunk of `qh` bytes holding bit 4 (Q5_0, Q5_1).
    Q5,
}

/// The code kind of a block format: {Q8, Q4, Q5} x {offset (`isum = raw +
/// corr`), minimum (`isum = raw`, then the `m` term)}, from its
/// [`PackedBlock`] layout. One algorithm serves every block format.
pub(crate) trait Kind: PackedBlock {
    const CODES: Codes = match Self::GROUPS {
        8 => Codes::Q8,
        4 => Codes::Q4,
        5 => Codes::Q5,
        _ => panic!("unknown code layout"),
    };
    /// Nibble codes (<= 31): split from their chunks, summed as small codes.
    const NIBBLES: bool = !matches!(Self::CODES, Codes::Q8);
    /// A format with a minimum: scales `d` then `m`, and `corr = Σa`.
    const MIN: bool = Self::SCALES == 2;
    /// Code bytes per panel and block.
    const CODE_BYTES: usize = Self::GROUPS * 64;
    /// Scale bytes per panel and block.
    const SCALE_BYTES: usize = Self::SCALES * NR * 2;
}
impl<B: PackedBlock> Kind for B {}

/// The float kind of a float format: how a half k-step is widened to f32.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Float {
    /// `vcvtph2ps`.
    F16,
    /// Zero-extend to 32 bits, shift left by 16.
    BF16,
    /// As stored.
    F32,
}

trait FloatKind: FloatElem {
    const KIND: Float = match Self::FORMAT {
        WeightFormat::F16 => Float::F16,
        WeightFormat::BF16 => Float::BF16,
        WeightFormat::F32 => Float::F32,
        _ => panic!("not a float format"),
    };
    /// Bytes of one k-step (16 values).
    const STEP: usize = NR * core::mem::size_of::<Self>();
    /// Whether the stored values are narrower than f32 (widened per use).
    const NARROW: bool = !matches!(Self::KIND, Float::F32);
}
impl<E: FloatElem> FloatKind for E {}

/// The exact integer part of one block for 8 rows (one half panel).
pub(crate) trait Dot256 {
    /// Whether `q8_rows` works on the unsigned codes (`q + 128`), so that the
    /// accumulators must start at the activation correction.
    const Q8_UNSIGNED: bool;
    /// `init + Σ_c Σ_{i<4} codes[c].u8[4r+i] * a[4c+i]` for nibble formats
    /// (`K::NIBBLES`): codes <= 15 (Q4) or <= 31 (Q5).
    unsafe fn nib_block<K: Kind>(init: __m256i, codes: &[__m256i; 8], a: *const i8) -> __m256i;
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
    unsafe fn gemm_tile<K: Kind>(a: &TileArgs, out: *mut f32, ldo: usize);
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
    unsafe fn nib_block<K: Kind>(init: __m256i, codes: &[__m256i; 8], a: *const i8) -> __m256i {
        // SAFETY: called from avx2 functions. Pair sums <= 2*15*127 = 3810
        // (Q4): eight of them fit in i16; <= 2*31*127 = 7874 (Q5): four fit
        // (31496). So each i16 partial sum is exact.
        let per = if K::CODES == Codes::Q5 { 4 } else { 8 };
        unsafe {
            let ones = _mm256_set1_epi16(1);
            let mut acc = init;
            let mut s16 = _mm256_setzero_si256();
            for (c, &v) in codes.iter().enumerate() {
                let p = _mm256_maddubs_epi16(v, bcast4(a, c));
                s16 = if c % per == 0 {
                    p
                } else {
                    _mm256_add_epi16(s16, p)
                };
                if c % per == per - 1 {
                    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(s16, ones));
                }
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
    unsafe fn gemm_tile<K: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe { q_gemm_halves::<Self, K>(a, out, ldo) }
    }
}

/// AVX-VNNI: VEX-encoded `vpdpbusd` (no saturation).
pub(crate) struct VnniVex;

impl Dot256 for VnniVex {
    const Q8_UNSIGNED: bool = true;

    #[inline(always)]
    unsafe fn nib_block<K: Kind>(init: __m256i, codes: &[__m256i; 8], a: *const i8) -> __m256i {
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
            *acc = unsafe { Self::nib_block::<BlockQ8_0>(*acc, stored, a) };
        }
        acc
    }

    #[inline(always)]
    unsafe fn gemm_tile<K: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
        // SAFETY: forwarded contract; features enabled by the calling kernel.
        unsafe { q_gemm_vnni::<K>(a, out, ldo) }
    }
}

/// Bit 4 of the Q5 codes of chunk `c` (0..8; chunks 4..8 are the high
/// nibbles of chunks 0..4), as 0x10 or 0 per byte, from the half panel's
/// `qh` chunk. Byte `i` of lane `r` is element `4c + i` of row `r` (high
/// chunks: `16 + 4(c - 4) + i`, the same number), whose bit is bit `4c + i`
/// of lane `r` of `qh`: byte `c / 2`, bit `4(c % 2) + i`. One byte shuffle
/// per byte of `qh` (shared by chunks `2j`, `2j + 1`), an AND with the bit of
/// each byte, compare-equal.
#[inline(always)]
unsafe fn high_bits(qh: __m256i, c: usize) -> __m256i {
    // SAFETY: features (avx2) enabled by the calling kernel.
    unsafe {
        let lanes = _mm256_setr_epi32(
            0,
            0x0404_0404,
            0x0808_0808,
            0x0C0C_0C0C,
            0,
            0x0404_0404,
            0x0808_0808,
            0x0C0C_0C0C,
        );
        let x = _mm256_shuffle_epi8(qh, _mm256_add_epi8(lanes, _mm256_set1_epi8((c / 2) as i8)));
        let bit = _mm256_set1_epi32(if c.is_multiple_of(2) {
            0x0804_0201
        } else {
            0x8040_2010u32 as i32
        });
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(x, bit), bit);
        _mm256_and_si256(set, _mm256_set1_epi8(0x10))
    }
}

/// Chunk `c` (0..8) of half `h` of a nibble block at `p`: the nibbles of
/// 32-byte chunk `c % 4`, low (`c < 4`) or high, with bit 4 from `qh` (the
/// half's `qh` chunk, Q5 only).
#[inline(always)]
unsafe fn nib_chunk<K: Kind>(p: *const u8, h: usize, c: usize, qh: __m256i) -> __m256i {
    // SAFETY: p points at one block's codes inside a panel, 32-byte aligned halves.
    unsafe {
        let v = _mm256_load_si256(p.add(64 * (c % 4) + 32 * h) as *const __m256i);
        let v = if c < 4 { v } else { _mm256_srli_epi16(v, 4) };
        let v = _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
        if K::CODES == Codes::Q5 {
            _mm256_or_si256(v, high_bits(qh, c))
        } else {
            v
        }
    }
}

/// The `qh` chunk of half `h` of a block at `p` (Q5; else unused, zero).
#[inline(always)]
unsafe fn load_qh<K: Kind>(p: *const u8, h: usize) -> __m256i {
    // SAFETY: p points at one block's codes inside a panel; Q5 has 5 chunks.
    unsafe {
        if K::CODES == Codes::Q5 {
            _mm256_load_si256(p.add(64 * 4 + 32 * h) as *const __m256i)
        } else {
            _mm256_setzero_si256()
        }
    }
}

/// The 8 code vectors of half `h` of one block: Q8_0's stored codes, or the
/// unsigned 4- or 5-bit codes. (Loops rather than `array::from_fn`: see
/// `VnniVex::q8_rows`.)
#[inline(always)]
unsafe fn load_codes<K: Kind>(p: *const u8, h: usize) -> [__m256i; 8] {
    // SAFETY: p points at one block's codes inside a panel, 32-byte aligned halves.
    unsafe {
        let mut v = [_mm256_setzero_si256(); 8];
        if K::NIBBLES {
            let qh = load_qh::<K>(p, h);
            for (c, v) in v.iter_mut().enumerate() {
                *v = nib_chunk::<K>(p, h, c, qh);
            }
        } else {
            for (c, v) in v.iter_mut().enumerate() {
                *v = _mm256_load_si256(p.add(64 * c + 32 * h) as *const __m256i);
            }
        }
        v
    }
}

/// Where a block's integer sum starts: the activation correction when the
/// codes carry an offset (unsigned nibbles, or Q8_0 codes as stored),
/// zero for formats with a minimum (`isum = raw`) and for signed Q8_0.
#[inline(always)]
unsafe fn isum_init<D: Dot256, K: Kind>(act: &ActBlock) -> __m256i {
    // SAFETY: features enabled by the calling kernel.
    unsafe {
        if !K::MIN && (K::NIBBLES || D::Q8_UNSIGNED) {
            _mm256_set1_epi32(act.corr)
        } else {
            _mm256_setzero_si256()
        }
    }
}

/// The exact integer sums of one block (half panel) for `R` activation rows.
/// (Loops rather than `array::from_fn`: see `VnniVex::q8_rows`.)
#[inline(always)]
unsafe fn block_isums<D: Dot256, K: Kind, const R: usize>(
    codes: &[__m256i; 8],
    act: &[&ActBlock; R],
) -> [__m256i; R] {
    // SAFETY: features enabled by the calling kernel.
    unsafe {
        let mut isum = [_mm256_setzero_si256(); R];
        for (isum, act) in isum.iter_mut().zip(act) {
            *isum = isum_init::<D, K>(act);
        }
        if K::NIBBLES {
            for (isum, act) in isum.iter_mut().zip(act) {
                *isum = D::nib_block::<K>(*isum, codes, act.qs.as_ptr());
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

/// The activation block's `da` and, for formats with a minimum,
/// `da * (corr as f32)` (`corr = Σa`; one f32 multiply).
#[inline(always)]
fn act_scales<K: Kind>(act: &ActBlock) -> [f32; 2] {
    [act.d, if K::MIN { act.d * act.corr as f32 } else { 0.0 }]
}

/// `acc = fma(dw * da, isum as f32, acc)`, lane-wise; then, for formats
/// with a minimum, `acc = fma(mw, da * Σa, acc)` (`[da, da * Σa]`: see
/// [`act_scales`]).
#[inline(always)]
unsafe fn accumulate<K: Kind>(
    acc: __m256,
    dw: __m256,
    mw: __m256,
    [da, s]: [f32; 2],
    isum: __m256i,
) -> __m256 {
    // SAFETY: features enabled by the calling kernel.
    unsafe {
        let acc = _mm256_fmadd_ps(
            _mm256_mul_ps(dw, _mm256_set1_ps(da)),
            _mm256_cvtepi32_ps(isum),
            acc,
        );
        if K::MIN {
            _mm256_fmadd_ps(mw, _mm256_set1_ps(s), acc)
        } else {
            acc
        }
    }
}

/// Scales `s` (0: `d`, 1: `m`) of half `h` of the block whose scales are at `p`.
#[inline(always)]
unsafe fn scales(p: *const u8, s: usize, h: usize) -> __m256 {
    // SAFETY: p points at a block's 16 (or 2 x 16) f16 scales inside a
    // panel; half h is 16 bytes.
    unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p.add(32 * s + 16 * h) as *const __m128i)) }
}

/// The `d` and (with a minimum; else unused) `m` scales of half `h`.
#[inline(always)]
unsafe fn block_scales_dm<K: Kind>(p: *const u8, h: usize) -> (__m256, __m256) {
    // SAFETY: as for `scales`; `m` follows `d` when K::MIN.
    unsafe {
        let m = if K::MIN {
            scales(p, 1, h)
        } else {
            _mm256_setzero_ps()
        };
        (scales(p, 0, h), m)
    }
}

/// Where [`q_rows`] works: halves `h0..h0 + NH` of the panels from `p0`,
/// batch rows from `i0`, blocks `blocks` (whole K, or one pass of the
/// maddubs Q5 tile), raw accumulators in `out` (row stride `ldo`; loaded
/// back when `blocks` does not start at 0), and the pass's [`Kept`] codes.
#[derive(Clone)]
struct Rows {
    p0: usize,
    h0: usize,
    i0: usize,
    blocks: Range<usize>,
    out: *mut f32,
    ldo: usize,
    kept: *mut u8,
}

/// `R` batch rows x `NH` halves of `NP` panels, as `g` says. With both
/// halves (`NH = 2`) every code line is read once, in one pass; the `NP`
/// panel streams are prefetched ahead either way. `SRC`: where the codes
/// come from (`PANEL_TO_KEPT` also stores them to `g.kept`, chunk `c` of
/// pass block `j` at line `8 j + c`, as the AVX-VNNI tile keeps them).
#[inline(always)]
unsafe fn q_rows<
    D: Dot256,
    K: Kind,
    const NP: usize,
    const R: usize,
    const NH: usize,
    const SRC: u8,
>(
    a: &TileArgs,
    g: &Rows,
) {
    let Rows {
        p0,
        h0,
        i0,
        ref blocks,
        out,
        ldo,
        kept,
    } = *g;
    let w = a.w;
    let nb = w.blocks_per_row();
    let cb = K::CODE_BYTES;
    let so = w.scales_offset();
    let panels: [*const u8; NP] = core::array::from_fn(|i| w.panel(p0 + i).as_ptr());
    // SAFETY: features enabled by the caller; every pointer stays inside its
    // panel (b < nb), acts holds rows i0..i0 + R of nb blocks (driver
    // contract), h0 + NH <= 2, out holds rows i0..i0 + R of NP * 16 values at
    // stride ldo; with SRC != FROM_PANEL, kept is a Kept buffer, blocks
    // holds at most GEMM_KB blocks, and a PANEL_TO_KEPT call of the same pass
    // and half wrote what a FROM_KEPT call reads.
    unsafe {
        let acts = a.acts.as_ptr().add(i0 * nb);
        let mut acc = [[[_mm256_setzero_ps(); NH]; NP]; R];
        if blocks.start > 0 {
            for (r, acc) in acc.iter_mut().enumerate() {
                for (i, v) in acc.iter_mut().enumerate() {
                    for (j, v) in v.iter_mut().enumerate() {
                        *v = _mm256_loadu_ps(out.add((i0 + r) * ldo + i * NR + 8 * (h0 + j)));
                    }
                }
            }
        }
        for b in blocks.clone() {
            let act: [&ActBlock; R] = core::array::from_fn(|r| &*acts.add(r * nb + b));
            let k = kept.wrapping_add((b - blocks.start) * 8 * 64);
            for i in 0..NP {
                if SRC != FROM_KEPT {
                    for l in (0..cb).step_by(64) {
                        prefetch(panels[i].wrapping_add(b * cb + l + GEMV_PREFETCH));
                    }
                }
                for j in 0..NH {
                    let h = h0 + j;
                    let codes = if SRC == FROM_KEPT {
                        let mut v = [_mm256_setzero_si256(); 8];
                        for (c, v) in v.iter_mut().enumerate() {
                            *v = _mm256_load_si256(k.add(64 * c + 32 * h) as *const __m256i);
                        }
                        v
                    } else {
                        let v = load_codes::<K>(panels[i].add(b * cb), h);
                        if SRC == PANEL_TO_KEPT {
                            for (c, v) in v.iter().enumerate() {
                                _mm256_store_si256(k.add(64 * c + 32 * h) as *mut __m256i, *v);
                            }
                        }
                        v
                    };
                    let (dw, mw) = block_scales_dm::<K>(panels[i].add(so + b * K::SCALE_BYTES), h);
                    let isum = block_isums::<D, K, R>(&codes, &act);
                    for ((acc, act), isum) in acc.iter_mut().zip(&act).zip(isum) {
                        let sa = act_scales::<K>(act);
                        acc[i][j] = accumulate::<K>(acc[i][j], dw, mw, sa, isum);
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
unsafe fn q_pairs<D: Dot256, K: Kind, const R: usize>(a: &TileArgs, out: *mut f32, ldo: usize) {
    let mut p = 0;
    while p < a.np {
        let g = Rows {
            p0: a.p0 + p,
            h0: 0,
            i0: 0,
            blocks: 0..a.w.blocks_per_row(),
            // SAFETY: forwarded driver contract; panels p(+1) < np.
            out: unsafe { out.add(p * NR) },
            ldo,
            kept: core::ptr::null_mut(),
        };
        // SAFETY: forwarded driver contract; panels p(+1) < np.
        unsafe {
            if a.np - p >= 2 {
                q_rows::<D, K, 2, R, 2, FROM_PANEL>(a, &g);
            } else {
                q_rows::<D, K, 1, R, 2, FROM_PANEL>(a, &g);
            }
        }
        p += 2;
    }
}

/// Rows `g.i0..g.i0 + r` (`r <= 4`) of one half panel: [`q_rows`] with `R = r`.
#[inline(always)]
unsafe fn q_half_group<D: Dot256, K: Kind, const SRC: u8>(a: &TileArgs, g: &Rows, r: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match r {
            1 => q_rows::<D, K, 1, 1, 1, SRC>(a, g),
            2 => q_rows::<D, K, 1, 2, 1, SRC>(a, g),
            3 => q_rows::<D, K, 1, 3, 1, SRC>(a, g),
            _ => q_rows::<D, K, 1, 4, 1, SRC>(a, g),
        }
    }
}

/// The maddubs dot's batched tile: 2 rows as batch 1 does (both halves per
/// pass; measured 25-45% faster than two half passes from DRAM), else each
/// half panel x up to 4 rows (Q8_0: 3), whole K (both halves would not fit
/// the 16 registers). Q5 codes with more than one row group: K in passes of
/// `GEMM_KB` blocks, the first row group of a pass keeping the 5-bit codes
/// it builds for the others (their bit-4 merge costs about as much as the
/// dot of 2 rows).
#[inline(always)]
unsafe fn q_gemm_halves<D: Dot256, K: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
    // SAFETY: driver contract (tile size, panels, act rows); features enabled by caller.
    unsafe {
        if a.mr == 2 {
            return q_pairs::<D, K, 2>(a, out, ldo);
        }
        // Q8_0's sign trick keeps the signed and absolute code vectors of a
        // chunk live beside the rows' chains: groups of 4 rows spill, so
        // batches of more than 4 rows run in groups of 3 (measured, 4096 x
        // 4096: M=128 105-109 -> 117-121 GOPS, M=7 90-93 -> 101-104; a
        // batch of 4 as 3 + 1 or 2 + 2: 93-98 -> 83-94).
        let rows = if K::NIBBLES || D::Q8_UNSIGNED || a.mr <= 4 {
            4
        } else {
            3
        };
        let nb = a.w.blocks_per_row();
        let keep = K::CODES == Codes::Q5 && a.mr > rows;
        let mut kept = scratch::<Kept>();
        let kept = kept.as_mut_ptr() as *mut u8;
        let pass = if keep { GEMM_KB } else { nb };
        for pi in 0..a.np {
            for h in 0..2 {
                let mut b0 = 0;
                while b0 < nb {
                    let blocks = b0..(b0 + pass).min(nb);
                    b0 = blocks.end;
                    let mut i0 = 0;
                    while i0 < a.mr {
                        let r = (a.mr - i0).min(rows);
                        let g = Rows {
                            p0: a.p0 + pi,
                            h0: h,
                            i0,
                            blocks: blocks.clone(),
                            out: out.add(pi * NR),
                            ldo,
                            kept,
                        };
                        match (keep, i0) {
                            (false, _) => q_half_group::<D, K, FROM_PANEL>(a, &g, r),
                            (true, 0) => q_rows::<D, K, 1, 4, 1, PANEL_TO_KEPT>(a, &g),
                            (true, _) => q_half_group::<D, K, FROM_KEPT>(a, &g, r),
                        }
                        i0 += r;
                    }
                }
            }
        }
    }
}

/// Blocks per pass of the AVX-VNNI batched tile (a panel's codes for the
/// pass, 16 x 544 bytes for Q8_0, stay in L1 while every row group runs over
/// them).
const GEMM_KB: usize = 16;

/// Batched AVX-VNNI tile: per panel, K in passes of `GEMM_KB` blocks, each
/// pass over 5-row groups.
#[inline(always)]
unsafe fn q_gemm_vnni<K: Kind>(a: &TileArgs, out: *mut f32, ldo: usize) {
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
                        (false, _) => q_group::<K, FROM_PANEL>(&pass, i0, r),
                        (true, 0) => q_gemm_chunks::<K, 5, PANEL_TO_KEPT>(&pass, 0),
                        (true, _) => q_group::<K, FROM_KEPT>(&pass, i0, r),
                    }
                }
                i0 += r;
            }
        }
    }
}

/// What a pass's first row group keeps for the others: the unsigned nibble
/// codes (Q4: split, Q5: with bit 4; `GEMM_KB` blocks x 8 chunks of both
/// halves; chunk `c` of pass block `j` at line `8 j + c`), then the widened
/// `d` scales (block `j`, both halves, at line `GEMM_KB * 8 + j`), then the
/// widened `m` scales of formats with a minimum (line `GEMM_KB * 9 + j`).
type Kept = [F32Line; GEMM_KB * 10];

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
unsafe fn q_group<K: Kind, const SRC: u8>(pass: &Pass, i0: usize, r: usize) {
    // SAFETY: forwarded contract.
    unsafe {
        match r {
            1 => q_gemm_chunks::<K, 1, SRC>(pass, i0),
            2 => q_gemm_chunks::<K, 2, SRC>(pass, i0),
            3 => q_gemm_chunks::<K, 3, SRC>(pass, i0),
            4 => q_gemm_chunks::<K, 4, SRC>(pass, i0),
            _ => q_gemm_chunks::<K, 5, SRC>(pass, i0),
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
unsafe fn q_gemm_chunks<K: Kind, const R: usize, const SRC: u8>(pass: &Pass, i0: usize) {
    let Pass {
        a,
        panel,
        ref blocks,
        out,
        ldo,
        kept,
    } = *pass;
    let nb = a.w.blocks_per_row();
    let cb = K::CODE_BYTES;
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
            if !K::NIBBLES && i0 == 0 {
                // As in the AVX-512 tile: the first row group prefetches the
                // Q8_0 codes it reads from memory.
                for l in (0..cb).step_by(64) {
                    prefetch(panel.wrapping_add(b * cb + l + GEMV_PREFETCH));
                }
            }
            let act: [&ActBlock; R] = core::array::from_fn(|r| &*acts.add(r * nb + b));
            let mut isum = [[_mm256_setzero_si256(); 2]; R];
            for (isum, act) in isum.iter_mut().zip(&act) {
                *isum = [isum_init::<VnniVex, K>(act); 2];
            }
            let p = panel.add(b * cb);
            let k = kept.add((b - blocks.start) * 8 * 64);
            let from_kept = K::NIBBLES && SRC == FROM_KEPT;
            let mut qh = [_mm256_setzero_si256(); 2];
            if !from_kept {
                for (h, qh) in qh.iter_mut().enumerate() {
                    *qh = load_qh::<K>(p, h);
                }
            }
            for c in 0..8 {
                let mut w = [_mm256_setzero_si256(); 2];
                for (h, w) in w.iter_mut().enumerate() {
                    let kc = k.add(64 * c + 32 * h) as *mut __m256i;
                    *w = if from_kept {
                        _mm256_load_si256(kc)
                    } else if K::NIBBLES {
                        let v = nib_chunk::<K>(p, h, c, qh[h]);
                        if SRC == PANEL_TO_KEPT {
                            _mm256_store_si256(kc, v);
                        }
                        v
                    } else {
                        _mm256_load_si256(p.add(64 * c + 32 * h) as *const __m256i)
                    };
                }
                for (r, isum) in isum.iter_mut().enumerate() {
                    let av = bcast4(act[r].qs.as_ptr(), c);
                    isum[0] = _mm256_dpbusd_avx_epi32(isum[0], w[0], av);
                    isum[1] = _mm256_dpbusd_avx_epi32(isum[1], w[1], av);
                }
            }
            // With a minimum: before the stores to `out` below (which the
            // compiler cannot tell apart from `act`), once per row for both
            // halves (else `da * Σa` is reconverted per half). Without, `da`
            // is broadcast straight from `act` at its use.
            let mut sa = [[0.0f32; 2]; R];
            if K::MIN {
                for (sa, act) in sa.iter_mut().zip(&act) {
                    *sa = act_scales::<K>(act);
                }
            }
            let sl = kept.add((GEMM_KB * 8 + b - blocks.start) * 64) as *mut f32;
            let ml = kept.add((GEMM_KB * 9 + b - blocks.start) * 64) as *mut f32;
            for h in 0..2 {
                let (dw, mw) = if SRC == FROM_KEPT {
                    let m = if K::MIN {
                        _mm256_load_ps(ml.add(8 * h))
                    } else {
                        _mm256_setzero_ps()
                    };
                    (_mm256_load_ps(sl.add(8 * h)), m)
                } else {
                    let (d, m) = block_scales_dm::<K>(panel.add(so + b * K::SCALE_BYTES), h);
                    if SRC == PANEL_TO_KEPT {
                        _mm256_store_ps(sl.add(8 * h), d);
                        if K::MIN {
                            _mm256_store_ps(ml.add(8 * h), m);
                        }
                    }
                    (d, m)
                };
                for (r, (act, isum)) in act.iter().zip(&isum).enumerate() {
                    let o = out.add(r * ldo + 8 * h);
                    let sa = if K::MIN { sa[r] } else { act_scales::<K>(act) };
                    let v = accumulate::<K>(_mm256_loadu_ps(o), dw, mw, sa, isum[h]);
                    _mm256_storeu_ps(o, v);
                }
            }
        }
    }
}

#[inline(always)]
unsafe fn q_tile<D: Dot256, K: Kind>(a: &mut TileArgs) {
    let ldo = a.np * NR;
    let out = a.tile.as_mut_ptr();
    // SAFETY: driver contract (tile size, panels, act rows); features enabled by caller.
    unsafe {
        if a.mr == 1 {
            q_pairs::<D, K, 1>(a, out, ldo);
        } else {
            D::gemm_tile::<K>(a, out, ldo);
        }
    }
}

/// Loads the weights of half `h` of k-step `kk`, widened exactly.
#[inline(always)]
unsafe fn load_w<E: FloatKind>(panel: *const u8, kk: usize, h: usize) -> __m256 {
    // SAFETY: kk < k, so the bytes lie inside the panel.
    unsafe {
        let p = panel.add(kk * E::STEP + E::STEP / 2 * h);
        match E::KIND {
            Float::F16 => _mm256_cvtph_ps(_mm_load_si128(p as *const __m128i)),
            Float::BF16 => _mm256_castsi256_ps(_mm256_slli_epi32(
                _mm256_cvtepu16_epi32(_mm_load_si128(p as *const __m128i)),
                16,
            )),
            Float::F32 => _mm256_load_ps(p as *const f32),
        }
    }
}

/// Where one `f_chunk` call reads and writes: one panel, k-steps
/// `k0..k0 + kc`, x rows at stride `xs` (chunk-relative: `x` points at step
/// `k0` of the first row), output rows at stride `ldo`.
#[derive(Clone, Copy)]
struct FChunk {
    panel: *const u8,
    /// `kc` steps of 16 f32 weights, or `None` to read (F16, BF16: widen) the panel.
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
/// straight from the panel (F16, BF16 widened as used). With `KEEP` (and
/// `c.wp == None`) the weights read are also stored to `c.keep`, at the
/// layout `wp` reads, for the next row groups.
#[inline(always)]
unsafe fn f_chunk<E: FloatKind, const R: usize, const KEEP: bool>(c: FChunk) {
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
                    prefetch(panel.wrapping_add((k0 + s) * E::STEP + GEMV_PREFETCH));
                    (load_w::<E>(panel, k0 + s, 0), load_w::<E>(panel, k0 + s, 1))
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
unsafe fn f_rows<E: FloatKind, const NP: usize, const R: usize>(
    a: &TileArgs,
    p0: usize,
    out: *mut f32,
    ldo: usize,
) {
    let k = a.w.k();
    let panels: [*const u8; NP] = core::array::from_fn(|i| a.w.panel(p0 + i).as_ptr());
    let step = E::STEP;
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
                        let w = load_w::<E>(panels[i], k0 + s, h);
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
unsafe fn f_few<E: FloatKind, const R: usize>(a: &TileArgs, out: *mut f32, ldo: usize) {
    let mut p = 0;
    while p < a.np {
        // SAFETY: forwarded driver contract; panels p.. < np.
        unsafe {
            let o = out.add(p * NR);
            if R == 1 && a.np - p >= 4 {
                f_rows::<E, 4, R>(a, a.p0 + p, o, ldo);
                p += 4;
            } else if a.np - p >= 2 {
                f_rows::<E, 2, R>(a, a.p0 + p, o, ldo);
                p += 2;
            } else {
                f_rows::<E, 1, R>(a, a.p0 + p, o, ldo);
                p += 1;
            }
        }
    }
}

#[inline(always)]
unsafe fn f_tile<E: FloatKind>(a: &mut TileArgs) {
    let k = a.w.k();
    let ldo = a.np * NR;
    let out = a.tile.as_mut_ptr();
    // SAFETY: driver contract (tile size, panels, x rows); features enabled by caller.
    unsafe {
        match a.mr {
            1 => return f_few::<E, 1>(a, out, ldo),
            2 => return f_few::<E, 2>(a, out, ldo),
            3 => return f_few::<E, 3>(a, out, ldo),
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
                // 6 + 2). F16, BF16: the first group widens as it goes; with more
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
                    if E::NARROW && i0 == 0 && groups > 1 {
                        // mr > F_ROWS, so r >= 4.
                        match r {
                            4 => f_chunk::<E, 4, true>(g),
                            5 => f_chunk::<E, 5, true>(g),
                            _ => f_chunk::<E, F_ROWS, true>(g),
                        }
                        c.wp = Some(buf as *const f32);
                    } else {
                        // mr >= 4 (f_rows runs fewer), so balanced groups
                        // have at least 3 rows.
                        debug_assert!(r >= 3);
                        match r {
                            3 => f_chunk::<E, 3, false>(g),
                            4 => f_chunk::<E, 4, false>(g),
                            5 => f_chunk::<E, 5, false>(g),
                            _ => f_chunk::<E, F_ROWS, false>(g),
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
    bounds: Kind, FloatKind
);
kernel_table!(
    vnni,
    crate::Isa::AvxVnni,
    "avx2,fma,f16c,avxvnni",
    VnniVex,
    gemv_panels: 4,
    gemm_panels: 2,
    pack_x: true,
    bounds: Kind, FloatKind
);
