//! aarch64 kernels: NEON baseline, NEON + `sdot` (dotprod) and NEON + `usmmla`
//! (i8mm).
//!
//! The three levels share everything but the integer block dot product:
//! - the activation quantizer and the F16 / BF16 / F32 tiles are plain NEON
//!   (part of the aarch64 baseline), so all three tables use the same functions;
//! - the block-format tiles run one generic driver ([`q_tile`]) over the
//!   format's [`PackedBlock`]: it loads the f16 scales, applies the canonical
//!   `acc = fma(dw * da, isum, acc)` per block (then `acc = fma(m, da * Σa,
//!   acc)` for formats with a minimum) and writes the tile. Each level plugs
//!   in a [`BlockDot`], the exact raw sums of 4 weight rows x `MR` batch rows
//!   for one block. Q8_0 with a by-element dot instruction (`sdot`, `usdot`)
//!   is one generic [`LaneQ8`] over a [`LaneDot`]; the 4- and 5-bit formats
//!   share each level's nibble dot, which for Q5_0 / Q5_1 takes the packed
//!   5-bit codes apart instead ([`low5`], [`high5`]). Q4_0 and
//!   Q4_1 (Q5_0 and Q5_1) run the same dot: only the driver's use of the raw
//!   sums differs. Q4_K / Q5_K run it too, 32-value sub-block by sub-block
//!   (packed as Q4_1 / Q5_1 blocks), the driver computing each sub-block's
//!   scale and minimum from the super-block's `d`, `dmin` and 6-bit codes;
//!   Q6_K has no dot here yet (the scalar kernel runs it).
//!
//! One f32 lane per output row: a panel's 16 rows are 4 `float32x4_t`, so every
//! lane performs the scalar sequence of the crate docs in the same order.
//!
//! `sdot`, `usdot` and `usmmla` are not stable intrinsics, so they are written
//! with `asm!` in `#[inline(always)]` helpers. The assembler rejects them in any
//! function that lacks the target feature, so they can only end up inside the
//! `#[target_feature]` tile functions of their level.

mod dotprod;
mod i8mm;
mod neon;

pub(crate) use dotprod::KERNELS as DOTPROD;
pub(crate) use i8mm::KERNELS as I8MM;
pub(crate) use neon::KERNELS as NEON;

use crate::act::{block_scales, ActBlock};
use crate::formats::{PackedBlock, QK};
use crate::pack::{PackedMatrix, NR};
use crate::TileArgs;
use core::arch::aarch64::*;
use core::arch::asm;

/// Batch rows per tile call for m > 1 (dotprod and i8mm; NEON uses 2: its
/// widening multiplies need more registers per row).
const GEMM_ROWS: usize = 4;
/// Panels per tile call for m == 1 (every level).
const GEMV_PANELS: usize = 4;

/// Widens 8 f16 bit patterns to f32 (`fcvtl`, exact; part of base AdvSIMD).
/// The `f16` vector types are unstable in Rust, hence `asm!`.
#[inline(always)]
fn f16x8_to_f32(h: uint16x8_t) -> [float32x4_t; 2] {
    let (lo, hi): (float32x4_t, float32x4_t);
    // SAFETY: register-only conversion instructions of the aarch64 baseline.
    unsafe {
        asm!(
            "fcvtl {lo:v}.4s, {h:v}.4h",
            "fcvtl2 {hi:v}.4s, {h:v}.8h",
            h = in(vreg) h,
            lo = out(vreg) lo,
            hi = out(vreg) hi,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    [lo, hi]
}

/// Loads 16 little-endian f16 values at `p` as 4 f32 vectors.
///
/// # Safety
/// `p..p + 32` must be readable.
#[inline(always)]
unsafe fn load_f16x16(p: *const u8) -> [float32x4_t; 4] {
    // SAFETY: NEON (baseline); the caller guarantees 32 readable bytes, and `ld1`
    // needs no alignment.
    let (a, b) = unsafe { (vld1q_u16(p.cast()), vld1q_u16(p.add(16).cast())) };
    let [a0, a1] = f16x8_to_f32(a);
    let [b0, b1] = f16x8_to_f32(b);
    [a0, a1, b0, b1]
}

/// Loads `4 * G` f16 scales at `p` (`G` even) as `G` f32 vectors.
///
/// # Safety
/// `p..p + 8 * G` is readable.
#[inline(always)]
unsafe fn load_scales<const G: usize>(p: *const u8) -> [float32x4_t; G] {
    // SAFETY: NEON (baseline); 16 * j + 16 <= 8 * G readable bytes (caller).
    unsafe {
        let mut out = [vdupq_n_f32(0.0); G];
        for j in 0..G / 2 {
            let [lo, hi] = f16x8_to_f32(vld1q_u16(p.add(16 * j).cast()));
            out[2 * j] = lo;
            out[2 * j + 1] = hi;
        }
        out
    }
}

/// Loads `4 * G` bytes at `p` (`G` even) as `G` f32 vectors (exact).
///
/// # Safety
/// `p..p + 4 * G` is readable.
#[inline(always)]
unsafe fn load_u8s<const G: usize>(p: *const u8) -> [float32x4_t; G] {
    // SAFETY: NEON (baseline); 8 * j + 8 <= 4 * G readable bytes (caller).
    unsafe {
        let mut out = [vdupq_n_f32(0.0); G];
        for j in 0..G / 2 {
            let v = vmovl_u8(vld1_u8(p.add(8 * j)));
            out[2 * j] = vcvtq_f32_u32(vmovl_u16(vget_low_u16(v)));
            out[2 * j + 1] = vcvtq_f32_u32(vmovl_high_u16(v));
        }
        out
    }
}

/// Loads `4 * G` int8 values at `p` (`G` even) as `G` i32 vectors.
///
/// # Safety
/// `p..p + 4 * G` is readable.
#[inline(always)]
unsafe fn load_i8s<const G: usize>(p: *const u8) -> [int32x4_t; G] {
    // SAFETY: NEON (baseline); 8 * j + 8 <= 4 * G readable bytes (caller).
    unsafe {
        let mut out = [vdupq_n_s32(0); G];
        for j in 0..G / 2 {
            let v = vmovl_s8(vld1_s8(p.add(8 * j).cast()));
            out[2 * j] = vmovl_s16(vget_low_s16(v));
            out[2 * j + 1] = vmovl_high_s16(v);
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Activation quantization
// ---------------------------------------------------------------------------

/// NEON activation quantizer (identical bits to `quantize_row_scalar`).
///
/// # Safety
/// None beyond the NEON baseline; `out.len() == ceil(x.len() / 32)` is asserted.
#[target_feature(enable = "neon")]
pub(super) unsafe fn quantize_row(x: &[f32], offset: i32, out: &mut [ActBlock]) {
    assert_eq!(out.len(), x.len().div_ceil(QK), "activation block count");
    let mut blocks = x.chunks_exact(QK);
    for (blk, v) in out.iter_mut().zip(&mut blocks) {
        *blk = quantize_block(v.try_into().unwrap(), offset);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut v = [0.0f32; QK];
        v[..tail.len()].copy_from_slice(tail);
        out[out.len() - 1] = quantize_block(&v, offset);
    }
}

#[target_feature(enable = "neon")]
#[inline]
fn quantize_block(v: &[f32; QK], offset: i32) -> ActBlock {
    // SAFETY: `v` holds 32 f32, read as 8 vectors.
    let x: [float32x4_t; 8] = core::array::from_fn(|j| unsafe { vld1q_f32(v.as_ptr().add(4 * j)) });
    let abs_mask = vdupq_n_u32(0x7FFF_FFFF);
    let mut m = vandq_u32(vreinterpretq_u32_f32(x[0]), abs_mask);
    for xj in &x[1..] {
        m = vmaxq_u32(m, vandq_u32(vreinterpretq_u32_f32(*xj), abs_mask));
    }
    let (d, id) = block_scales(vmaxvq_u32(m));
    let mut blk = <ActBlock as bytemuck::Zeroable>::zeroed();
    blk.set_scales(d, offset, [0, 0]);
    if id != 0.0 {
        // One f32 multiply, then round to nearest, ties to even (`fcvtns`).
        // |x * id| <= 127 (plus rounding), so the narrowing moves are exact.
        let q: [int32x4_t; 8] = core::array::from_fn(|j| vcvtnq_s32_f32(vmulq_n_f32(x[j], id)));
        let h: [int16x8_t; 4] =
            core::array::from_fn(|j| vcombine_s16(vmovn_s32(q[2 * j]), vmovn_s32(q[2 * j + 1])));
        let b0 = vcombine_s8(vmovn_s16(h[0]), vmovn_s16(h[1]));
        let b1 = vcombine_s8(vmovn_s16(h[2]), vmovn_s16(h[3]));
        // SAFETY: `qs` holds 32 bytes, written as 2 vectors.
        unsafe {
            vst1q_s8(blk.qs.as_mut_ptr(), b0);
            vst1q_s8(blk.qs.as_mut_ptr().add(16), b1);
        }
        let half_sums = [vaddlvq_s8(b0) as i32, vaddlvq_s8(b1) as i32];
        blk.set_scales(d, offset, half_sums);
    }
    blk
}

// ---------------------------------------------------------------------------
// Block-format tiles
// ---------------------------------------------------------------------------

/// Activations of one block prepared for `MR` batch rows: two vectors per row
/// (their layout is the [`BlockDot`] implementation's choice).
pub(super) type Prep<const MR: usize> = [[int8x16_t; 2]; MR];

/// Exact integer dot products of one block, for one ISA level and code kind
/// (Q8_0 bytes, nibbles, nibbles + `qh`).
pub(super) trait BlockDot {
    /// 64-byte code chunks per panel and block: the [`PackedBlock::GROUPS`]
    /// of the formats this dot reads.
    const GROUPS: usize;
    /// Whether the sums are of the signed GGUF codes (Q8_0 codes XOR 0x80),
    /// which is `isum` already; else of the layout's unsigned codes, the
    /// canonical `raw`.
    const SIGNED: bool;

    /// Prepares the activation blocks of `MR` batch rows.
    ///
    /// # Safety
    /// The CPU supports the implementation's level.
    #[inline(always)]
    unsafe fn prep<const MR: usize>(acts: [&ActBlock; MR]) -> Prep<MR> {
        load_acts(acts)
    }

    /// Sums (see [`BlockDot::SIGNED`]) of weight rows `4g..4g+4` of the block
    /// whose codes start at `codes`, one vector per batch row; for Q6_K's
    /// dots (`GROUPS == 6`) the sub-block's `isum`, formed with `halves`
    /// (which the other dots ignore).
    ///
    /// # Safety
    /// `codes..codes + 64 * GROUPS` is readable, `g < 4`, and the CPU supports
    /// the implementation's level.
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
        halves: &Halves<MR>,
    ) -> [int32x4_t; MR];
}

/// What a Q6_K dot needs besides the codes, for one row group and 32-value
/// sub-block: the int8 scales of the rows' two 16-value halves (lane `r`: row
/// `4g + r`) and, per batch row, each half's `-32 * Σa` (the sums of the
/// codes' offset, which the dot starts from). Zeros for the other formats.
#[derive(Clone, Copy)]
pub(super) struct Halves<const MR: usize> {
    /// `[s0, s1]`, sign-extended.
    pub(super) scales: [int32x4_t; 2],
    /// `[-32 * Σa_lo, -32 * Σa_hi]` per batch row, broadcast.
    pub(super) start: [[int32x4_t; 2]; MR],
}

impl<const MR: usize> Halves<MR> {
    /// The canonical `isum = s0 * lo + s1 * hi` from the two halves' sums of
    /// `(code - 32) * a`. Exact in i32: each half sum is at most
    /// `16 * 32 * 128` in magnitude and `|s| <= 128`, so `|isum| < 2^24`.
    #[inline(always)]
    pub(super) fn combine(&self, [lo, hi]: [int32x4_t; 2]) -> int32x4_t {
        // SAFETY: NEON (baseline), registers only.
        unsafe { vmlaq_s32(vmulq_s32(self.scales[0], lo), self.scales[1], hi) }
    }

    /// [`Halves::combine`] for batch row `i` from the halves' sums of the
    /// unsigned codes (`raw`), started at `start`.
    #[inline(always)]
    pub(super) fn isum(&self, i: usize, [lo, hi]: [int32x4_t; 2]) -> int32x4_t {
        // SAFETY: NEON (baseline), registers only.
        let (lo, hi) = unsafe {
            (
                vaddq_s32(self.start[i][0], lo),
                vaddq_s32(self.start[i][1], hi),
            )
        };
        self.combine([lo, hi])
    }
}

/// The high-part chunks (4 and 5) of a Q6_K sub-block's row group `g`.
///
/// # Safety
/// Chunks 4 and 5 of group `g` are readable.
#[inline(always)]
pub(super) unsafe fn load_q6_high(codes: *const u8, g: usize) -> [uint8x16_t; 2] {
    // SAFETY: NEON (baseline); both chunks are readable (caller).
    unsafe {
        [
            vld1q_u8(codes.add(chunk(4, g))),
            vld1q_u8(codes.add(chunk(5, g))),
        ]
    }
}

/// Bits `2C..2C+2` of every byte of `h` moved to bits 4-5 (others junk).
#[inline(always)]
fn q6_bits<const C: usize>(h: uint8x16_t) -> uint8x16_t {
    // SAFETY: NEON (baseline), registers only.
    unsafe {
        match C {
            0 => vshlq_n_u8::<4>(h),
            1 => vshlq_n_u8::<2>(h),
            2 => h,
            _ => vshrq_n_u8::<2>(h),
        }
    }
}

/// Bits 4-5 of `bits` put into `nib` (0..=15): 6-bit codes.
#[inline(always)]
pub(super) fn with_high2(nib: uint8x16_t, bits: uint8x16_t) -> uint8x16_t {
    // SAFETY: NEON (baseline), registers only.
    unsafe { vbslq_u8(vdupq_n_u8(0x30), bits, nib) }
}

/// The 6-bit codes of chunk `C` (0..4) of a Q6_K sub-block's row group `g`:
/// elements `4C..4C+4` (first half) and `16+4C..16+4C+4` (second half) of
/// each row lane. The high parts of element `16h + 4C + i` are bits
/// `2C..2C+2` of lane byte `i` of high chunk `h`.
///
/// # Safety
/// Chunk `C` of group `g` is readable.
#[inline(always)]
pub(super) unsafe fn q6_chunk<const C: usize>(
    codes: *const u8,
    g: usize,
    high: &[uint8x16_t; 2],
) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: NEON (baseline); chunk C is readable (caller).
    let (lo, hi) = nibbles(unsafe { vld1q_u8(codes.add(chunk(C, g))) });
    (
        with_high2(lo, q6_bits::<C>(high[0])),
        with_high2(hi, q6_bits::<C>(high[1])),
    )
}

/// A by-element dot instruction (`sdot`, `usdot`): lane `j` of the result adds
/// `Σ_t w[4j + t] * a[4 * (C % 4) + t]`, i.e. 4 weight rows times one 4-byte
/// group of activations, the packed layout's unit.
pub(super) trait LaneDot {
    /// The weight operand (signed or unsigned bytes).
    type W: Copy;
    /// Loads 16 code bytes as the weight operand.
    ///
    /// # Safety
    /// `p..p + 16` is readable.
    unsafe fn load(p: *const u8) -> Self::W;
    /// # Safety
    /// The CPU supports the instruction.
    unsafe fn dot<const C: usize>(acc: int32x4_t, w: Self::W, a: int8x16_t) -> int32x4_t;
}

/// Q8_0 blocks with a [`LaneDot`] instruction, on signed codes (`SIGNED`) or
/// the layout's unsigned ones. Chunks 0..4 read the first activation vector,
/// 4..8 the second (two accumulators per row).
pub(super) struct LaneQ8<L, const SIGNED: bool>(core::marker::PhantomData<L>);

impl<L: LaneDot, const SIGNED: bool> BlockDot for LaneQ8<L, SIGNED> {
    const GROUPS: usize = 8;
    const SIGNED: bool = SIGNED;

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
        _: &Halves<MR>,
    ) -> [int32x4_t; MR] {
        // SAFETY: NEON (baseline) and `L`'s level (caller); chunks 0..8 of
        // group g lie in the block (caller).
        unsafe {
            let mut acc = [[vdupq_n_s32(0); 2]; MR];
            lane_chunk::<L, 0, MR>(codes, g, prep, &mut acc);
            lane_chunk::<L, 1, MR>(codes, g, prep, &mut acc);
            lane_chunk::<L, 2, MR>(codes, g, prep, &mut acc);
            lane_chunk::<L, 3, MR>(codes, g, prep, &mut acc);
            lane_chunk::<L, 4, MR>(codes, g, prep, &mut acc);
            lane_chunk::<L, 5, MR>(codes, g, prep, &mut acc);
            lane_chunk::<L, 6, MR>(codes, g, prep, &mut acc);
            lane_chunk::<L, 7, MR>(codes, g, prep, &mut acc);
            acc.map(|[a, b]| vaddq_s32(a, b))
        }
    }
}

/// Chunk `C` (elements `4C..4C+4`) of group `g` for every batch row.
///
/// # Safety
/// Chunk `C` of group `g` is readable; the CPU supports `L`.
#[inline(always)]
unsafe fn lane_chunk<L: LaneDot, const C: usize, const MR: usize>(
    codes: *const u8,
    g: usize,
    prep: &Prep<MR>,
    acc: &mut [[int32x4_t; 2]; MR],
) {
    // SAFETY: `L`'s level (caller); chunk C is readable (caller).
    unsafe {
        let w = L::load(codes.add(chunk(C, g)));
        for (acc, p) in acc.iter_mut().zip(prep) {
            acc[C / 4] = L::dot::<C>(acc[C / 4], w, p[C / 4]);
        }
    }
}

/// The codes of each block as two vectors: `qs[0..16]`, `qs[16..32]`.
#[inline(always)]
pub(super) fn load_acts<const MR: usize>(acts: [&ActBlock; MR]) -> Prep<MR> {
    // SAFETY: NEON (baseline); each `qs` holds 32 bytes.
    acts.map(|a| unsafe { [vld1q_s8(a.qs.as_ptr()), vld1q_s8(a.qs.as_ptr().add(16))] })
}

/// Loads 16 Q8_0 codes and undoes the `+ 128` of the layout (XOR 0x80), giving
/// the signed GGUF codes.
///
/// # Safety
/// `p..p + 16` is readable.
#[inline(always)]
pub(super) unsafe fn load_q8_signed(p: *const u8) -> int8x16_t {
    // SAFETY: NEON (baseline); 16 readable bytes (caller).
    unsafe { vreinterpretq_s8_u8(veorq_u8(vld1q_u8(p), vdupq_n_u8(0x80))) }
}

/// Splits 16 Q4_0 bytes into low and high nibbles (0..=15 each, so valid as
/// signed or unsigned bytes).
#[inline(always)]
pub(super) fn nibbles(raw: uint8x16_t) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: NEON (baseline), registers only.
    unsafe { (vandq_u8(raw, vdupq_n_u8(0x0F)), vshrq_n_u8::<4>(raw)) }
}

/// Chunk 4 of a Q5 row group: byte `i` of lane `r` holds, at bits
/// `2c..2c + 2`, the low two bits of row `4g + r`'s code of element
/// `16 + 4c + i` (see [`crate::pack`]).
pub(super) type Qh = uint8x16_t;

/// The [`Qh`] of row group `g`, or zeros for the 4-bit formats (then unused).
///
/// # Safety
/// For `HIGH`, chunk 4 of group `g` is readable.
#[inline(always)]
pub(super) unsafe fn load_qh<const HIGH: bool>(codes: *const u8, g: usize) -> Qh {
    // SAFETY: NEON (baseline); chunk 4 is readable when it is read (caller).
    unsafe {
        if HIGH {
            vld1q_u8(codes.add(chunk(4, g)))
        } else {
            vdupq_n_u8(0)
        }
    }
}

/// Where the low two bits of a vector of 16 high codes (elements 16..32)
/// are: byte `t` of the vector holds element `elem0 + t % per_row` of row
/// lane `lane0 + t / per_row` (`per_row` = 4 for one chunk, 8 for a zipped
/// pair of chunks), whose bits are bits `2c..2c + 2` of byte `elem % 4` of
/// the lane's [`Qh`], `c = (elem - 16) / 4`. Built at compile time; few
/// distinct constants, so that they stay in registers.
pub(super) struct HighBits {
    /// Whether the bytes must be gathered (a table lookup): a single chunk
    /// (lanes 0-3, 4 elements each) finds its bits in its own byte.
    gather: bool,
    /// Byte of the [`Qh`] vector to read: `4 * lane + elem % 4`.
    idx: [u8; 16],
    /// Right shift (as a negative left shift) that moves the bits to bits
    /// 0..2: `-2c`.
    shift: [i8; 16],
}

impl HighBits {
    /// See the type.
    pub(super) const fn new(lane0: usize, per_row: usize, elem0: usize) -> HighBits {
        assert!(16 % per_row == 0 && elem0 >= 16 && elem0 + per_row <= 32);
        let mut h = HighBits {
            gather: false,
            idx: [0; 16],
            shift: [0; 16],
        };
        let mut t = 0;
        while t < 16 {
            let elem = elem0 + t % per_row;
            h.idx[t] = (4 * (lane0 + t / per_row) + elem % 4) as u8;
            h.shift[t] = -2 * ((elem - 16) / 4) as i8;
            h.gather |= h.idx[t] as usize != t;
            t += 1;
        }
        h
    }
}

/// The 5-bit codes of elements 0..16 of packed Q5 chunk bytes `raw`: bits
/// 0..5 of each byte.
#[inline(always)]
pub(super) fn low5(raw: uint8x16_t) -> uint8x16_t {
    // SAFETY: NEON (baseline), registers only.
    unsafe { vandq_u8(raw, vdupq_n_u8(0x1F)) }
}

/// The 5-bit codes of elements 16..32 of packed Q5 chunk bytes `raw` (laid
/// out as `h` says): bits 5..8 of each byte as the code's bits 2..5, over
/// its bits 0..2 from `qh`.
#[inline(always)]
pub(super) fn high5(raw: uint8x16_t, qh: &Qh, h: &HighBits) -> uint8x16_t {
    // SAFETY: NEON (baseline); `idx` and `shift` hold 16 bytes each.
    unsafe {
        let bytes = if h.gather {
            vqtbl1q_u8(*qh, vld1q_u8(h.idx.as_ptr()))
        } else {
            *qh
        };
        // bits 0..2 of `low` are the code's; `sli` keeps them under the top
        let low = vshlq_u8(bytes, vld1q_s8(h.shift.as_ptr()));
        vsliq_n_u8::<2>(low, vshrq_n_u8::<5>(raw))
    }
}

/// The codes of chunk `C` (0..4) of row group `g`: elements `4C..4C+4` (low)
/// and `16+4C..16+4C+4` (high) of each row lane, as nibbles or, for `HIGH`,
/// the packed 5-bit codes with the high ones' low bits from `qh`.
///
/// # Safety
/// Chunk `C` of group `g` is readable.
#[inline(always)]
pub(super) unsafe fn nib_chunk<const HIGH: bool, const C: usize>(
    codes: *const u8,
    g: usize,
    qh: &Qh,
) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: NEON (baseline); chunk C is readable (caller).
    let raw = unsafe { vld1q_u8(codes.add(chunk(C, g))) };
    if HIGH {
        (low5(raw), high5(raw, qh, &ChunkBits::<C>::HI))
    } else {
        nibbles(raw)
    }
}

/// [`HighBits`] of chunk `C`'s high codes (4 bytes per row lane).
struct ChunkBits<const C: usize>;

impl<const C: usize> ChunkBits<C> {
    const HI: HighBits = HighBits::new(0, 4, 16 + 4 * C);
}

/// Offset of 16-byte row group `g` of chunk `c` inside a block's codes.
#[inline(always)]
pub(super) const fn chunk(c: usize, g: usize) -> usize {
    c * 64 + g * 16
}

/// One panel of `B` blocks x `MR` batch rows. `G` row groups (of 4 rows) are
/// done per pass over the blocks (4 = the whole panel; fewer keeps `MR` x `G`
/// accumulators in registers).
///
/// # Safety
/// `D`'s level is supported; `w` holds `B` blocks; `p < w.panels()`; every
/// `acts[i]` holds `w.blocks_per_row()` blocks; every `out[i]` holds 16 values.
#[inline(always)]
unsafe fn q_panel<B: PackedBlock, D: BlockDot, const MR: usize, const G: usize>(
    w: &PackedMatrix,
    p: usize,
    acts: [&[ActBlock]; MR],
    out: [&mut [f32]; MR],
) {
    // 32-value sub-blocks per block: 8 for the k-quants. Q4_K / Q5_K ones
    // are Q4_1 / Q5_1 sub-blocks with scales from the super-block's `d`,
    // `dmin` and 6-bit codes; Q6_K ones (6 chunks, so its dots have
    // `GROUPS == 6`) have two int8 half scales.
    let subs = const { B::VALUES / QK };
    let halves = const { D::GROUPS == 6 };
    const {
        let subs = B::VALUES / QK;
        assert!(D::GROUPS * subs == B::GROUPS && (B::SCALES == 1 || B::SCALES == 2));
        assert!(subs == 1 || B::SCALES == 2 || D::GROUPS == 6);
        // Signed sums are Q8_0's `isum`; a minimum needs the unsigned `raw`.
        assert!(!D::SIGNED || (B::SCALES == 1 && B::OFFSET == 128));
    };
    let code_bytes = D::GROUPS * 64;
    let scale_bytes = crate::pack::scale_bytes::<B>();
    let nb = w.blocks_per_row();
    let so = w.scales_offset();
    let panel = w.panel(p);
    assert!(w.format() == B::FORMAT);
    assert!(nb * code_bytes <= so && so + nb.div_ceil(subs) * scale_bytes <= panel.len());
    assert!(acts.iter().all(|a| a.len() >= nb) && out.iter().all(|o| o.len() >= NR));
    let base = panel.as_ptr();
    let mut out = out;
    for h in 0..4 / G {
        // SAFETY: NEON (baseline) and `D`'s level (caller); the codes and scales
        // of every (sub-)block b < nb lie inside the panel (asserted above), the
        // pass reads scales (d, then m; k-quants then sub-block scale and
        // minimum bytes, Q6_K half scales) of rows 4hG..4(h+1)G, and
        // g = hG + gg < 4.
        let acc = unsafe {
            let mut acc = [[vdupq_n_f32(0.0); G]; MR];
            #[allow(clippy::needless_range_loop)] // b also addresses codes and scales
            for b in 0..nb {
                let blk: [&ActBlock; MR] = core::array::from_fn(|i| &acts[i][b]);
                let prep = D::prep(blk);
                let scales = base.add(so + (b / subs) * scale_bytes);
                let sc = scales.add(h * G * 8);
                let mut dw = load_scales::<G>(sc);
                let mut mw = if B::SCALES == 2 {
                    load_scales::<G>(sc.add(NR * 2))
                } else {
                    [vdupq_n_f32(0.0); G]
                };
                // Sub-block scale bytes: byte t of row r at 16 t + r.
                let small = scales.add(B::SCALES * NR * 2 + h * G * 4);
                let mut hs = [[vdupq_n_s32(0); 2]; G];
                let mut start = [[vdupq_n_s32(0); 2]; MR];
                if halves {
                    // Q6_K: int8 scales 2s and 2s + 1 of sub-block s.
                    let sub = small.add(2 * (b % subs) * NR);
                    let (s0, s1) = (load_i8s::<G>(sub), load_i8s::<G>(sub.add(NR)));
                    for g in 0..G {
                        hs[g] = [s0[g], s1[g]];
                    }
                    for i in 0..MR {
                        start[i] = blk[i].half_sums.map(|s| vdupq_n_s32(-32 * s as i32));
                    }
                } else if subs > 1 {
                    // `d * sc` and `-(dmin * mn)`: one exact f32 multiply each.
                    let sub = small.add((b % subs) * NR);
                    let (scs, mns) = (load_u8s::<G>(sub), load_u8s::<G>(sub.add(subs * NR)));
                    for g in 0..G {
                        dw[g] = vmulq_f32(dw[g], scs[g]);
                        mw[g] = vnegq_f32(vmulq_f32(mw[g], mns[g]));
                    }
                }
                let codes = base.add(b * code_bytes);
                let s = Sub {
                    blk: &blk,
                    prep: &prep,
                    dw: &dw,
                    mw: &mw,
                    hs: &hs,
                    start: &start,
                };
                // Unrolled by hand (const index) so `acc` and the scales stay in
                // registers.
                q_group::<B, D, MR, G, 0>(codes, h, &s, &mut acc);
                q_group::<B, D, MR, G, 1>(codes, h, &s, &mut acc);
                q_group::<B, D, MR, G, 2>(codes, h, &s, &mut acc);
                q_group::<B, D, MR, G, 3>(codes, h, &s, &mut acc);
            }
            acc
        };
        for (o, a) in out.iter_mut().zip(&acc) {
            for (gg, v) in a.iter().enumerate() {
                let r = (h * G + gg) * 4;
                // SAFETY: NEON (baseline); r + 4 <= 16 <= o.len().
                unsafe { vst1q_f32(o[r..r + 4].as_mut_ptr(), *v) };
            }
        }
    }
}

/// One (sub-)block's activations and the scales of a pass's `G` row groups.
struct Sub<'a, const MR: usize, const G: usize> {
    blk: &'a [&'a ActBlock; MR],
    prep: &'a Prep<MR>,
    /// `d` (k-quants with a minimum: `d * sc`) per row group.
    dw: &'a [float32x4_t; G],
    /// `m` (k-quants: `-(dmin * mn)`) per row group, formats with a minimum.
    mw: &'a [float32x4_t; G],
    /// Q6_K: the half scales per row group (see [`Halves`]).
    hs: &'a [[int32x4_t; 2]; G],
    /// Q6_K: the halves' `-32 * Σa` per batch row.
    start: &'a [[int32x4_t; 2]; MR],
}

/// Row group `h * G + GG` of one block for `MR` batch rows (nothing if
/// `GG >= G`), as in the scalar kernel: `acc = fma(dw * da, isum as f32,
/// acc)` with `isum = raw + corr` (offset formats; `isum` itself for signed
/// sums and Q6_K's dots) or `isum = raw` (formats with a minimum, which then
/// add `acc = fma(m, da * Σa, acc)`, `Σa = corr`).
///
/// # Safety
/// As for [`BlockDot::group`], with `g = h * G + GG`.
#[inline(always)]
unsafe fn q_group<B: PackedBlock, D: BlockDot, const MR: usize, const G: usize, const GG: usize>(
    codes: *const u8,
    h: usize,
    s: &Sub<'_, MR, G>,
    acc: &mut [[float32x4_t; G]; MR],
) {
    if GG >= G {
        return;
    }
    let halves = Halves {
        scales: s.hs[GG],
        start: *s.start,
    };
    // SAFETY: NEON (baseline), `D`'s level and readable codes (caller).
    unsafe {
        let raw = D::group(codes, h * G + GG, s.prep, &halves);
        for i in 0..MR {
            let blk = s.blk[i];
            let isum = if D::SIGNED || B::SCALES == 2 || D::GROUPS == 6 {
                raw[i]
            } else {
                vaddq_s32(raw[i], vdupq_n_s32(blk.corr))
            };
            let d = vmulq_n_f32(s.dw[GG], blk.d);
            acc[i][GG] = vfmaq_f32(acc[i][GG], d, vcvtq_f32_s32(isum));
            if B::SCALES == 2 {
                let sa = blk.dsum;
                acc[i][GG] = vfmaq_n_f32(acc[i][GG], s.mw[GG], sa);
            }
        }
    }
}

/// Splits `a.tile` into the output rows of batch rows `i..i + MR` for panel `pi`.
fn tile_rows<const MR: usize>(
    tile: &mut [f32],
    np: usize,
    i: usize,
    pi: usize,
) -> [&mut [f32]; MR] {
    let mut rows = tile.chunks_exact_mut(np * NR).skip(i).take(MR);
    core::array::from_fn(|_| {
        let row = rows.next().expect("tile holds mr rows");
        &mut row[pi * NR..(pi + 1) * NR]
    })
}

/// The tile of block format `B`: `Multi` does groups of 4 (if `MAX_MR >= 4`)
/// then 2 batch rows, `Single` the last odd row (and m == 1).
///
/// # Safety
/// Both levels are supported; `a` meets the [`TileArgs`] contract.
#[inline(always)]
pub(super) unsafe fn q_tile<
    B: PackedBlock,
    Multi: BlockDot,
    Single: BlockDot,
    const MAX_MR: usize,
>(
    a: &mut TileArgs,
) {
    let nb = a.w.blocks_per_row();
    let acts = a.acts;
    let row = |i: usize| &acts[i * nb..(i + 1) * nb];
    for pi in 0..a.np {
        let p = a.p0 + pi;
        let mut i = 0;
        while i < a.mr {
            let tile = &mut *a.tile;
            // SAFETY (all three): levels supported (caller); p < panels, rows
            // i.. exist in `acts` and `tile` (TileArgs contract, slices checked).
            match a.mr - i {
                rest if rest >= 4 && MAX_MR >= 4 => unsafe {
                    q_panel::<B, Multi, 4, 2>(
                        a.w,
                        p,
                        [row(i), row(i + 1), row(i + 2), row(i + 3)],
                        tile_rows::<4>(tile, a.np, i, pi),
                    );
                    i += 4;
                },
                1 => unsafe {
                    q_panel::<B, Single, 1, 4>(a.w, p, [row(i)], tile_rows::<1>(tile, a.np, i, pi));
                    i += 1;
                },
                _ => unsafe {
                    q_panel::<B, Multi, 2, 4>(
                        a.w,
                        p,
                        [row(i), row(i + 1)],
                        tile_rows::<2>(tile, a.np, i, pi),
                    );
                    i += 2;
                },
            }
        }
    }
}

// ---------------------------------------------------------------------------
// F16 / BF16 / F32 tiles
// ---------------------------------------------------------------------------

/// How a float format's 16 weights of one k-step are loaded.
trait FloatWeights {
    /// Bytes per k-step of a panel.
    const STEP: usize;
    /// # Safety
    /// `p..p + STEP` is readable.
    unsafe fn load(p: *const u8) -> [float32x4_t; 4];
}

struct F32W;
impl FloatWeights for F32W {
    const STEP: usize = NR * 4;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [float32x4_t; 4] {
        // SAFETY: NEON (baseline); 64 readable bytes (caller).
        core::array::from_fn(|q| unsafe { vld1q_f32(p.add(16 * q).cast()) })
    }
}

struct F16W;
impl FloatWeights for F16W {
    const STEP: usize = NR * 2;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [float32x4_t; 4] {
        // SAFETY: 32 readable bytes (caller).
        unsafe { load_f16x16(p) }
    }
}

struct Bf16W;
impl FloatWeights for Bf16W {
    const STEP: usize = NR * 2;
    #[inline(always)]
    unsafe fn load(p: *const u8) -> [float32x4_t; 4] {
        // SAFETY: NEON (baseline); 32 readable bytes (caller). A bf16 is the
        // upper half of its f32: widening shifts by 16 are exact.
        unsafe {
            let (a, b) = (vld1q_u16(p.cast()), vld1q_u16(p.add(16).cast()));
            [
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(a))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(a)),
                vreinterpretq_f32_u32(vshll_n_u16::<16>(vget_low_u16(b))),
                vreinterpretq_f32_u32(vshll_high_n_u16::<16>(b)),
            ]
        }
    }
}

/// `NP` panels from `p` x `MR` batch rows: `acc = fma(w_k, x_k, acc)` for k in
/// order, one lane per output. Panics if a slice is too short.
#[target_feature(enable = "neon")]
#[inline]
fn float_block<W: FloatWeights, const MR: usize, const NP: usize>(
    w: &PackedMatrix,
    p: usize,
    x: [&[f32]; MR],
    out: [[&mut [f32]; NP]; MR],
) {
    let k = w.k();
    let panels: [&[u8]; NP] = core::array::from_fn(|j| w.panel(p + j));
    assert!(panels.iter().all(|pn| k * W::STEP <= pn.len()));
    assert!(x.iter().all(|r| r.len() == k));
    let mut acc = [[[vdupq_n_f32(0.0); 4]; NP]; MR];
    #[allow(clippy::needless_range_loop)] // kk also addresses the weights
    for kk in 0..k {
        // SAFETY: NEON (baseline); kk * STEP + STEP <= k * STEP <= panel
        // length (asserted).
        let wv: [[float32x4_t; 4]; NP] =
            core::array::from_fn(|j| unsafe { W::load(panels[j].as_ptr().add(kk * W::STEP)) });
        for i in 0..MR {
            let xv = x[i][kk];
            for j in 0..NP {
                for q in 0..4 {
                    acc[i][j][q] = vfmaq_n_f32(acc[i][j][q], wv[j][q], xv);
                }
            }
        }
    }
    for (orow, arow) in out.into_iter().zip(&acc) {
        for (o, a) in orow.into_iter().zip(arow) {
            for (q, v) in a.iter().enumerate() {
                // SAFETY: 4q + 4 <= 16 <= o.len() (slice checked).
                unsafe { vst1q_f32(o[4 * q..4 * q + 4].as_mut_ptr(), *v) };
            }
        }
    }
}

/// The float tile: m == 1 does 2 panels at a time; otherwise 4, 2, 1 rows.
/// Panics (instead of reading out of bounds) if `a` breaks the [`TileArgs`]
/// contract.
#[target_feature(enable = "neon")]
#[inline]
fn float_tile<W: FloatWeights>(a: &mut TileArgs) {
    let k = a.w.k();
    let x = a.x;
    let row = |i: usize| &x[i * k..(i + 1) * k];
    let np = a.np;
    let mut pi = 0;
    while pi < np {
        let p = a.p0 + pi;
        let tile = &mut *a.tile;
        if a.mr == 1 && np - pi >= 2 {
            let (r0, r1) = tile[..np * NR].split_at_mut((pi + 1) * NR);
            let out = [[&mut r0[pi * NR..], &mut r1[..NR]]];
            float_block::<W, 1, 2>(a.w, p, [row(0)], out);
            pi += 2;
            continue;
        }
        let mut i = 0;
        while i < a.mr {
            let tile = &mut *a.tile;
            match a.mr - i {
                1 => {
                    let [o] = tile_rows::<1>(tile, np, i, pi);
                    float_block::<W, 1, 1>(a.w, p, [row(i)], [[o]]);
                    i += 1;
                }
                2 | 3 => {
                    let [o0, o1] = tile_rows::<2>(tile, np, i, pi);
                    float_block::<W, 2, 1>(a.w, p, [row(i), row(i + 1)], [[o0], [o1]]);
                    i += 2;
                }
                _ => {
                    let [o0, o1, o2, o3] = tile_rows::<4>(tile, np, i, pi);
                    float_block::<W, 4, 1>(
                        a.w,
                        p,
                        [row(i), row(i + 1), row(i + 2), row(i + 3)],
                        [[o0], [o1], [o2], [o3]],
                    );
                    i += 4;
                }
            }
        }
        pi += 1;
    }
}

/// F32 tile (shared by all levels: plain NEON). `unsafe` only to fit the table.
#[target_feature(enable = "neon")]
pub(super) unsafe fn f32_tile(a: &mut TileArgs) {
    float_tile::<F32W>(a)
}

/// F16 tile (shared by all levels: plain NEON + `fcvtl`).
#[target_feature(enable = "neon")]
pub(super) unsafe fn f16_tile(a: &mut TileArgs) {
    float_tile::<F16W>(a)
}

/// BF16 tile (shared by all levels: plain NEON, widened with `shll`).
#[target_feature(enable = "neon")]
pub(super) unsafe fn bf16_tile(a: &mut TileArgs) {
    float_tile::<Bf16W>(a)
}

#[cfg(test)]
mod tests;
