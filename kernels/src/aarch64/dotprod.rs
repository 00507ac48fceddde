//! NEON + FEAT_DotProd: `sdot` (by element) sums the 4 products of each
//! 4-byte lane, which is exactly one row's lane of the packed layout.

use super::{
    chunk, f16_tile, f32_tile, load_q8_signed, nibbles, q_tile, quantize_row, BlockDot, LaneDot,
    LaneQ8, Prep, GEMM_ROWS, GEMV_PANELS,
};
use crate::pack::Q4_CODE_BYTES;
use crate::{Isa, Kernels, TileArgs};
use core::arch::aarch64::*;
use core::arch::asm;

pub(crate) static KERNELS: Kernels = Kernels {
    isa: Isa::NeonDotprod,
    quantize_row,
    tiles: crate::Tiles::NONE
        .with(crate::WeightFormat::Q8_0, q8_tile)
        .with(crate::WeightFormat::Q4_0, q4_tile)
        .with(crate::WeightFormat::F16, f16_tile)
        .with(crate::WeightFormat::F32, f32_tile),
    gemv_panels: GEMV_PANELS,
    gemm_panels: 1,
    pack_x: false,
};

#[target_feature(enable = "dotprod")]
unsafe fn q8_tile(a: &mut TileArgs) {
    // SAFETY: dotprod is enabled here; the caller meets the TileArgs contract.
    unsafe { q_tile::<Q8, Q8, GEMM_ROWS>(a) }
}

#[target_feature(enable = "dotprod")]
unsafe fn q4_tile(a: &mut TileArgs) {
    // SAFETY: as above.
    unsafe { q_tile::<Q4, Q4, GEMM_ROWS>(a) }
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
pub(super) type Q8 = LaneQ8<Sdot, 0>;

/// Q4_0: nibbles 0..=15 are valid signed bytes; offset 8.
pub(super) struct Q4;

impl BlockDot for Q4 {
    const CODE_BYTES: usize = Q4_CODE_BYTES;
    const OFFSET: i32 = 8;

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
    ) -> [int32x4_t; MR] {
        // SAFETY: NEON (baseline) and dotprod (caller); chunks 0..4 of group g
        // lie in the block (caller).
        unsafe {
            let mut acc = [[vdupq_n_s32(0); 2]; MR];
            q4_chunk::<0, MR>(codes, g, prep, &mut acc);
            q4_chunk::<1, MR>(codes, g, prep, &mut acc);
            q4_chunk::<2, MR>(codes, g, prep, &mut acc);
            q4_chunk::<3, MR>(codes, g, prep, &mut acc);
            acc.map(|[a, b]| vaddq_s32(a, b))
        }
    }
}

/// Chunk `C`: low nibbles are elements `4C..4C+4`, high ones `16+4C..`.
///
/// # Safety
/// Chunk `C` of group `g` is readable; the CPU has dotprod.
#[inline(always)]
unsafe fn q4_chunk<const C: usize, const MR: usize>(
    codes: *const u8,
    g: usize,
    prep: &Prep<MR>,
    acc: &mut [[int32x4_t; 2]; MR],
) {
    // SAFETY: NEON (baseline) and dotprod (caller); chunk C is readable (caller).
    unsafe {
        let (lo, hi) = nibbles(vld1q_u8(codes.add(chunk(C, g))));
        let (lo, hi) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
        for (acc, p) in acc.iter_mut().zip(prep) {
            acc[0] = sdot::<C>(acc[0], lo, p[0]);
            acc[1] = sdot::<C>(acc[1], hi, p[1]);
        }
    }
}
