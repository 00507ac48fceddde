//! NEON + FEAT_DotProd: `sdot` (by element) sums the 4 products of each
//! 4-byte lane, which is exactly one row's lane of the packed layout.

use super::{
    bf16_tile, f16_tile, f32_tile, load_q6_high, load_q8_signed, load_qh, nib_chunk, q6_chunk,
    q_tile, quantize_row, BlockDot, Halves, LaneDot, LaneQ8, Prep, Qh, GEMM_ROWS, GEMV_PANELS,
};
use crate::formats::{
    BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
    PackedBlock,
};
use crate::{Isa, Kernels, TileArgs, WeightFormat};
use core::arch::aarch64::*;
use core::arch::asm;

pub(crate) static KERNELS: Kernels = Kernels {
    isa: Isa::NeonDotprod,
    quantize_row,
    tiles: crate::Tiles::NONE
        .with(WeightFormat::Q8_0, block_tile::<BlockQ8_0, Q8>)
        .with(WeightFormat::Q4_0, block_tile::<BlockQ4_0, Q4>)
        .with(WeightFormat::Q4_1, block_tile::<BlockQ4_1, Q4>)
        .with(WeightFormat::Q5_0, block_tile::<BlockQ5_0, Q5>)
        .with(WeightFormat::Q5_1, block_tile::<BlockQ5_1, Q5>)
        .with(WeightFormat::Q4_K, block_tile::<BlockQ4_K, Q4>)
        .with(WeightFormat::Q5_K, block_tile::<BlockQ5_K, Q5>)
        .with(WeightFormat::Q6_K, block_tile::<BlockQ6_K, Q6>)
        .with(WeightFormat::F16, f16_tile)
        .with(WeightFormat::BF16, bf16_tile)
        .with(WeightFormat::F32, f32_tile),
    gemv_panels: GEMV_PANELS,
    gemm_panels: 1,
    pack_x: false,
};

/// The tile of format `B` with dot `D` for every batch row.
#[target_feature(enable = "dotprod")]
unsafe fn block_tile<B: PackedBlock, D: BlockDot>(a: &mut TileArgs) {
    // SAFETY: dotprod is enabled here; the caller meets the TileArgs contract.
    unsafe { q_tile::<B, D, D, GEMM_ROWS>(a) }
}

/// `acc[j] += Σ_t w[4j + t] * a[4 * (C % 4) + t]` (signed x signed `sdot`).
///
/// # Safety
/// The CPU has dotprod (the assembler only accepts it inside such functions).
#[inline(always)]
unsafe fn sdot<const C: usize>(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: register-only instruction; dotprod support is the caller's duty.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[{l}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            a = in(vreg) a,
            l = const C % 4,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// `sdot` on the signed codes (XOR 0x80 of the layout's unsigned ones).
pub(super) struct Sdot;

impl LaneDot for Sdot {
    type W = int8x16_t;

    #[inline(always)]
    unsafe fn load(p: *const u8) -> int8x16_t {
        // SAFETY: 16 readable bytes (caller).
        unsafe { load_q8_signed(p) }
    }

    #[inline(always)]
    unsafe fn dot<const C: usize>(acc: int32x4_t, w: int8x16_t, a: int8x16_t) -> int32x4_t {
        // SAFETY: dotprod (caller).
        unsafe { sdot::<C>(acc, w, a) }
    }
}

/// Q8_0: signed codes, so no offset.
pub(super) type Q8 = LaneQ8<Sdot, true>;

/// The nibble formats: 4-bit codes (Q4_0, Q4_1) or, for `HIGH`, 5-bit codes
/// (Q5_0, Q5_1) from five packed chunks; 0..=31 are valid signed bytes.
pub(super) struct Nib<const HIGH: bool>;

/// Q4_0 and Q4_1.
pub(super) type Q4 = Nib<false>;
/// Q5_0 and Q5_1.
pub(super) type Q5 = Nib<true>;

impl<const HIGH: bool> BlockDot for Nib<HIGH> {
    const GROUPS: usize = if HIGH { 5 } else { 4 };
    const SIGNED: bool = false;

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
        _: &Halves<MR>,
    ) -> [int32x4_t; MR] {
        // SAFETY: NEON (baseline) and dotprod (caller); chunks 0..GROUPS of
        // group g lie in the block (caller).
        unsafe {
            let qh = load_qh::<HIGH>(codes, g);
            let mut acc = [[vdupq_n_s32(0); 2]; MR];
            nib_dot::<HIGH, 0, MR>(codes, g, &qh, prep, &mut acc);
            nib_dot::<HIGH, 1, MR>(codes, g, &qh, prep, &mut acc);
            nib_dot::<HIGH, 2, MR>(codes, g, &qh, prep, &mut acc);
            nib_dot::<HIGH, 3, MR>(codes, g, &qh, prep, &mut acc);
            acc.map(|[a, b]| vaddq_s32(a, b))
        }
    }
}

/// Chunk `C`: low nibbles are elements `4C..4C+4`, high ones `16+4C..`.
///
/// # Safety
/// Chunk `C` of group `g` is readable; the CPU has dotprod.
#[inline(always)]
unsafe fn nib_dot<const HIGH: bool, const C: usize, const MR: usize>(
    codes: *const u8,
    g: usize,
    qh: &Qh,
    prep: &Prep<MR>,
    acc: &mut [[int32x4_t; 2]; MR],
) {
    // SAFETY: NEON (baseline) and dotprod (caller); chunk C is readable (caller).
    unsafe {
        let (lo, hi) = nib_chunk::<HIGH, C>(codes, g, qh);
        let (lo, hi) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
        for (acc, p) in acc.iter_mut().zip(prep) {
            acc[0] = sdot::<C>(acc[0], lo, p[0]);
            acc[1] = sdot::<C>(acc[1], hi, p[1]);
        }
    }
}

/// Q6_K: 6-bit codes (0..=63, valid signed bytes), each 16-value half summed
/// apart from its `-32 * Σa`.
pub(super) struct Q6;

impl BlockDot for Q6 {
    const GROUPS: usize = 6;
    const SIGNED: bool = false;

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
        halves: &Halves<MR>,
    ) -> [int32x4_t; MR] {
        // SAFETY: NEON (baseline) and dotprod (caller); chunks 0..6 of group g
        // lie in the block (caller).
        unsafe {
            let high = load_q6_high(codes, g);
            let mut acc = halves.start;
            q6_dot::<0, MR>(codes, g, &high, prep, &mut acc);
            q6_dot::<1, MR>(codes, g, &high, prep, &mut acc);
            q6_dot::<2, MR>(codes, g, &high, prep, &mut acc);
            q6_dot::<3, MR>(codes, g, &high, prep, &mut acc);
            // The starts are in `acc` already.
            acc.map(|a| halves.combine(a))
        }
    }
}

/// Chunk `C` of Q6_K: low nibbles (first half) are elements `4C..4C+4`, high
/// ones (second half) `16+4C..`.
///
/// # Safety
/// Chunk `C` of group `g` is readable; the CPU has dotprod.
#[inline(always)]
unsafe fn q6_dot<const C: usize, const MR: usize>(
    codes: *const u8,
    g: usize,
    high: &[uint8x16_t; 2],
    prep: &Prep<MR>,
    acc: &mut [[int32x4_t; 2]; MR],
) {
    // SAFETY: NEON (baseline) and dotprod (caller); chunk C is readable (caller).
    unsafe {
        let (lo, hi) = q6_chunk::<C>(codes, g, high);
        let (lo, hi) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
        for (acc, p) in acc.iter_mut().zip(prep) {
            acc[0] = sdot::<C>(acc[0], lo, p[0]);
            acc[1] = sdot::<C>(acc[1], hi, p[1]);
        }
    }
}
