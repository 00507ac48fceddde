//! NEON baseline (every aarch64 CPU): integer block dots with widening
//! multiplies (`smull`/`smlal` into i16 lanes, `sadalp`/`saddlp` into i32).

use super::{
    bf16_tile, chunk, f16_tile, f32_tile, load_q6_high, load_q8_signed, load_qh, nib_chunk,
    q6_chunk, q_tile, quantize_row, BlockDot, Halves, Prep, Qh, GEMV_PANELS,
};
use crate::formats::{
    BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
    PackedBlock,
};
use crate::{Isa, Kernels, TileArgs, WeightFormat};
use core::arch::aarch64::*;

/// Batch rows per tile call for m > 1: with 4, the i16/i32 partial sums of
/// the widening multiplies no longer fit in the 32 vector registers.
const NEON_ROWS: usize = 2;

pub(crate) static KERNELS: Kernels = Kernels {
    isa: Isa::Neon,
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
unsafe fn block_tile<B: PackedBlock, D: BlockDot>(a: &mut TileArgs) {
    // SAFETY: NEON is the aarch64 baseline; the caller meets the TileArgs contract.
    unsafe { q_tile::<B, D, D, NEON_ROWS>(a) }
}

/// Broadcasts 4-byte lane `lane` (0..4, a constant after inlining) of `v`.
#[inline(always)]
fn bcast(v: int8x16_t, lane: usize) -> int8x16_t {
    // SAFETY: NEON (baseline), registers only.
    unsafe {
        let v = vreinterpretq_s32_s8(v);
        vreinterpretq_s8_s32(match lane {
            0 => vdupq_laneq_s32::<0>(v),
            1 => vdupq_laneq_s32::<1>(v),
            2 => vdupq_laneq_s32::<2>(v),
            _ => vdupq_laneq_s32::<3>(v),
        })
    }
}

/// Q8_0: codes made signed (XOR 0x80), so no offset.
pub(super) struct Q8;

impl BlockDot for Q8 {
    const GROUPS: usize = 8;
    const SIGNED: bool = true;

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
        _: &Halves<MR>,
    ) -> [int32x4_t; MR] {
        // SAFETY: NEON (baseline); chunks 0..8 of group g lie in the block (caller).
        unsafe {
            let mut acc = [[vdupq_n_s32(0); 2]; MR];
            q8_pair::<0, MR>(codes, g, prep, &mut acc);
            q8_pair::<2, MR>(codes, g, prep, &mut acc);
            q8_pair::<4, MR>(codes, g, prep, &mut acc);
            q8_pair::<6, MR>(codes, g, prep, &mut acc);
            // [r0 r0 r1 r1] + [r2 r2 r3 r3] pairwise -> [r0 r1 r2 r3]
            acc.map(|[a, b]| vpaddq_s32(a, b))
        }
    }
}

/// Chunks `C` and `C + 1` (elements `4C..4C+8`). Each i16 lane sums two
/// products, `|sum| <= 2 * 128 * 127 < 2^15`, so it is exact.
///
/// # Safety
/// Both chunks of group `g` are readable.
#[inline(always)]
unsafe fn q8_pair<const C: usize, const MR: usize>(
    codes: *const u8,
    g: usize,
    prep: &Prep<MR>,
    acc: &mut [[int32x4_t; 2]; MR],
) {
    // SAFETY: NEON (baseline); both chunks are readable (caller).
    unsafe {
        let w0 = load_q8_signed(codes.add(chunk(C, g)));
        let w1 = load_q8_signed(codes.add(chunk(C + 1, g)));
        for (acc, p) in acc.iter_mut().zip(prep) {
            let a0 = bcast(p[C / 4], C % 4);
            let a1 = bcast(p[(C + 1) / 4], (C + 1) % 4);
            // rows 4g, 4g+1 in the low halves, rows 4g+2, 4g+3 in the high halves
            let lo = vmlal_s8(
                vmull_s8(vget_low_s8(w0), vget_low_s8(a0)),
                vget_low_s8(w1),
                vget_low_s8(a1),
            );
            let hi = vmlal_high_s8(vmull_high_s8(w0, a0), w1, a1);
            acc[0] = vpadalq_s16(acc[0], lo);
            acc[1] = vpadalq_s16(acc[1], hi);
        }
    }
}

/// The nibble formats: unsigned 4-bit codes (Q4_0, Q4_1) or, for `HIGH`,
/// 5-bit codes (Q5_0, Q5_1) from five packed chunks.
pub(super) struct Nib<const HIGH: bool>;

/// Q4_0 and Q4_1.
type Q4 = Nib<false>;
/// Q5_0 and Q5_1.
type Q5 = Nib<true>;

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
        // SAFETY: NEON (baseline); chunks 0..GROUPS of group g lie in the
        // block (caller).
        unsafe {
            let qh = load_qh::<HIGH>(codes, g);
            let mut acc = [[vdupq_n_s16(0); 2]; MR];
            nib_mul::<HIGH, 0, MR>(codes, g, &qh, prep, &mut acc);
            nib_mul::<HIGH, 1, MR>(codes, g, &qh, prep, &mut acc);
            nib_mul::<HIGH, 2, MR>(codes, g, &qh, prep, &mut acc);
            nib_mul::<HIGH, 3, MR>(codes, g, &qh, prep, &mut acc);
            acc.map(|[a, b]| vpaddq_s32(vpaddlq_s16(a), vpaddlq_s16(b)))
        }
    }
}

/// Chunk `C`: low nibbles are elements `4C..4C+4`, high ones `16+4C..`. Each
/// i16 lane sums 8 products over the block, `|sum| <= 8 * 31 * 127 < 2^15`
/// (codes of at most 5 bits), so it is exact.
///
/// # Safety
/// Chunk `C` of group `g` is readable.
#[inline(always)]
unsafe fn nib_mul<const HIGH: bool, const C: usize, const MR: usize>(
    codes: *const u8,
    g: usize,
    qh: &Qh,
    prep: &Prep<MR>,
    acc: &mut [[int16x8_t; 2]; MR],
) {
    // SAFETY: NEON (baseline); chunk C is readable (caller).
    unsafe {
        let (lo, hi) = nib_chunk::<HIGH, C>(codes, g, qh);
        let (lo, hi) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
        for (acc, p) in acc.iter_mut().zip(prep) {
            let alo = bcast(p[0], C);
            let ahi = bcast(p[1], C);
            let a01 = vmlal_s8(acc[0], vget_low_s8(lo), vget_low_s8(alo));
            acc[0] = vmlal_s8(a01, vget_low_s8(hi), vget_low_s8(ahi));
            let a23 = vmlal_high_s8(acc[1], lo, alo);
            acc[1] = vmlal_high_s8(a23, hi, ahi);
        }
    }
}

/// Q6_K: 6-bit codes, each 16-value half summed apart.
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
        // SAFETY: NEON (baseline); chunks 0..6 of group g lie in the block (caller).
        unsafe {
            let high = load_q6_high(codes, g);
            // [half][rows 0-1, rows 2-3] per batch row
            let mut acc = [[[vdupq_n_s16(0); 2]; 2]; MR];
            q6_mul::<0, MR>(codes, g, &high, prep, &mut acc);
            q6_mul::<1, MR>(codes, g, &high, prep, &mut acc);
            q6_mul::<2, MR>(codes, g, &high, prep, &mut acc);
            q6_mul::<3, MR>(codes, g, &high, prep, &mut acc);
            core::array::from_fn(|i| {
                let raw = acc[i].map(|[a, b]| vpaddq_s32(vpaddlq_s16(a), vpaddlq_s16(b)));
                halves.isum(i, raw)
            })
        }
    }
}

/// Chunk `C` of Q6_K: low nibbles (first half) are elements `4C..4C+4`, high
/// ones (second half) `16+4C..`. Each i16 lane sums one product per chunk,
/// 4 in all, `|sum| <= 4 * 63 * 128 < 2^15`, so it is exact.
///
/// # Safety
/// Chunk `C` of group `g` is readable.
#[inline(always)]
unsafe fn q6_mul<const C: usize, const MR: usize>(
    codes: *const u8,
    g: usize,
    high: &[uint8x16_t; 2],
    prep: &Prep<MR>,
    acc: &mut [[[int16x8_t; 2]; 2]; MR],
) {
    // SAFETY: NEON (baseline); chunk C is readable (caller).
    unsafe {
        let (lo, hi) = q6_chunk::<C>(codes, g, high);
        let (lo, hi) = (vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi));
        for (acc, p) in acc.iter_mut().zip(prep) {
            let alo = bcast(p[0], C);
            let ahi = bcast(p[1], C);
            acc[0][0] = vmlal_s8(acc[0][0], vget_low_s8(lo), vget_low_s8(alo));
            acc[0][1] = vmlal_high_s8(acc[0][1], lo, alo);
            acc[1][0] = vmlal_s8(acc[1][0], vget_low_s8(hi), vget_low_s8(ahi));
            acc[1][1] = vmlal_high_s8(acc[1][1], hi, ahi);
        }
    }
}
