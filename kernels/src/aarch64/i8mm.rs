//! NEON + dotprod + FEAT_I8MM: `usmmla` for pairs of batch rows, `usdot` for
//! a single Q8_0 row (single rows of the nibble formats use the dotprod
//! `sdot` path).
//!
//! `usmmla d, n, m` adds the 2x2 product of two 2x8 byte matrices:
//! `d = [n0·m0, n0·m1, n1·m0, n1·m1]`, with `n` unsigned and `m` signed. Here `n`
//! holds two weight rows (8 codes each, zipped from two adjacent chunks, so the
//! unsigned layout codes are used as they are) and `m` the same 8 elements of
//! two batch rows. Sums are of the unsigned codes, as the driver expects.

use super::{
    bf16_tile, chunk, dotprod, f16_tile, f32_tile, high5, load_acts, load_q6_high, load_qh, low5,
    nibbles, q_tile, quantize_row, with_high2, BlockDot, Halves, HighBits, LaneDot, LaneQ8, Prep,
    Qh, GEMM_ROWS, GEMV_PANELS,
};
use crate::act::ActBlock;
use crate::formats::{
    BlockQ4_0, BlockQ4_1, BlockQ4_K, BlockQ5_0, BlockQ5_1, BlockQ5_K, BlockQ6_K, BlockQ8_0,
    PackedBlock,
};
use crate::{Isa, Kernels, TileArgs, WeightFormat};
use core::arch::aarch64::*;
use core::arch::asm;

pub(crate) static KERNELS: Kernels = Kernels {
    isa: Isa::NeonI8mm,
    quantize_row,
    tiles: crate::Tiles::NONE
        .with(
            WeightFormat::Q8_0,
            block_tile::<BlockQ8_0, Q8Pairs, Q8Single>,
        )
        .with(
            WeightFormat::Q4_0,
            block_tile::<BlockQ4_0, Q4Pairs, dotprod::Q4>,
        )
        .with(
            WeightFormat::Q4_1,
            block_tile::<BlockQ4_1, Q4Pairs, dotprod::Q4>,
        )
        .with(
            WeightFormat::Q5_0,
            block_tile::<BlockQ5_0, Q5Pairs, dotprod::Q5>,
        )
        .with(
            WeightFormat::Q5_1,
            block_tile::<BlockQ5_1, Q5Pairs, dotprod::Q5>,
        )
        .with(
            WeightFormat::Q4_K,
            block_tile::<BlockQ4_K, Q4Pairs, dotprod::Q4>,
        )
        .with(
            WeightFormat::Q5_K,
            block_tile::<BlockQ5_K, Q5Pairs, dotprod::Q5>,
        )
        .with(
            WeightFormat::Q6_K,
            block_tile::<BlockQ6_K, Q6Pairs, dotprod::Q6>,
        )
        .with(WeightFormat::F16, f16_tile)
        .with(WeightFormat::BF16, bf16_tile)
        .with(WeightFormat::F32, f32_tile),
    gemv_panels: GEMV_PANELS,
    gemm_panels: 1,
    pack_x: false,
};

/// The tile of format `B`: `Multi` for pairs of batch rows, `Single` for one.
#[target_feature(enable = "dotprod,i8mm")]
unsafe fn block_tile<B: PackedBlock, Multi: BlockDot, Single: BlockDot>(a: &mut TileArgs) {
    // SAFETY: dotprod and i8mm are enabled here; the caller meets the TileArgs
    // contract.
    unsafe { q_tile::<B, Multi, Single, GEMM_ROWS>(a) }
}

/// `acc += [n0·m0, n0·m1, n1·m0, n1·m1]` (`n` unsigned, `m` signed, 8-byte rows).
///
/// # Safety
/// The CPU has i8mm (the assembler only accepts it inside such functions).
#[inline(always)]
unsafe fn usmmla(acc: int32x4_t, n: uint8x16_t, m: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: register-only instruction; i8mm support is the caller's duty.
    unsafe {
        asm!(
            "usmmla {acc:v}.4s, {n:v}.16b, {m:v}.16b",
            acc = inout(vreg) acc,
            n = in(vreg) n,
            m = in(vreg) m,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// `acc[j] += Σ_t w[4j + t] * a[4 * (C % 4) + t]` (`w` unsigned, `a` signed).
///
/// # Safety
/// The CPU has i8mm.
#[inline(always)]
unsafe fn usdot<const C: usize>(acc: int32x4_t, w: uint8x16_t, a: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: register-only instruction; i8mm support is the caller's duty.
    unsafe {
        asm!(
            "usdot {acc:v}.4s, {w:v}.16b, {a:v}.4b[{l}]",
            acc = inout(vreg) acc,
            w = in(vreg) w,
            a = in(vreg) a,
            l = const C % 4,
            options(pure, nomem, nostack, preserves_flags),
        );
    }
    acc
}

/// Pairs rows `2j`, `2j+1`: element range `8q..8q+8` of both rows as one `m`
/// operand, stored at `prep[2j + q / 2][q % 2]`.
#[inline(always)]
fn prep_pairs<const MR: usize>(acts: [&ActBlock; MR]) -> Prep<MR> {
    const { assert!(MR.is_multiple_of(2)) };
    let v = load_acts(acts);
    let mut out = v;
    for j in (0..MR).step_by(2) {
        let (x, y) = (v[j], v[j + 1]);
        for h in 0..2 {
            // SAFETY: NEON (baseline), registers only.
            out[j + h] = unsafe {
                let (x, y) = (vreinterpretq_s64_s8(x[h]), vreinterpretq_s64_s8(y[h]));
                [
                    vreinterpretq_s8_s64(vzip1q_s64(x, y)),
                    vreinterpretq_s8_s64(vzip2q_s64(x, y)),
                ]
            };
        }
    }
    out
}

/// Two weight rows with 8 consecutive elements each, from chunks `c`, `c + 1`
/// of one row group: `([r0, r1], [r2, r3])`.
///
/// # Safety
/// Chunks `c`, `c + 1` of group `g` are readable.
#[inline(always)]
unsafe fn load_row_pairs(codes: *const u8, c: usize, g: usize) -> (uint8x16_t, uint8x16_t) {
    // SAFETY: NEON (baseline); both chunks are readable (caller).
    unsafe {
        let c0 = vreinterpretq_u32_u8(vld1q_u8(codes.add(chunk(c, g))));
        let c1 = vreinterpretq_u32_u8(vld1q_u8(codes.add(chunk(c + 1, g))));
        (
            vreinterpretq_u8_u32(vzip1q_u32(c0, c1)),
            vreinterpretq_u8_u32(vzip2q_u32(c0, c1)),
        )
    }
}

/// `acc[2j] = [r0·a, r0·b, r1·a, r1·b]`, `acc[2j+1]` the same for r2, r3 ->
/// one `[r0 r1 r2 r3]` vector per batch row.
#[inline(always)]
fn unpair<const MR: usize>(acc: [int32x4_t; MR]) -> [int32x4_t; MR] {
    let mut out = acc;
    for j in (0..MR).step_by(2) {
        // SAFETY: NEON (baseline), registers only.
        unsafe {
            out[j] = vuzp1q_s32(acc[j], acc[j + 1]);
            out[j + 1] = vuzp2q_s32(acc[j], acc[j + 1]);
        }
    }
    out
}

/// Q8_0, an even number of batch rows: unsigned codes, offset 128.
struct Q8Pairs;

impl BlockDot for Q8Pairs {
    const GROUPS: usize = 8;
    const SIGNED: bool = false;

    #[inline(always)]
    unsafe fn prep<const MR: usize>(acts: [&ActBlock; MR]) -> Prep<MR> {
        prep_pairs(acts)
    }

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
        _: &Halves<MR>,
    ) -> [int32x4_t; MR] {
        // SAFETY: NEON (baseline) and i8mm (caller); chunks 2q, 2q+1 of group g
        // lie in the block (caller).
        unsafe {
            let mut acc = [vdupq_n_s32(0); MR];
            for q in 0..4 {
                let (n01, n23) = load_row_pairs(codes, 2 * q, g);
                for j in (0..MR).step_by(2) {
                    let m = prep[j + q / 2][q % 2];
                    acc[j] = usmmla(acc[j], n01, m);
                    acc[j + 1] = usmmla(acc[j + 1], n23, m);
                }
            }
            unpair(acc)
        }
    }
}

/// The nibble formats, an even number of batch rows: 4-bit codes (Q4_0,
/// Q4_1) or, for `HIGH`, 5-bit codes (Q5_0, Q5_1) from five packed chunks.
struct NibPairs<const HIGH: bool>;

/// Q4_0 and Q4_1.
type Q4Pairs = NibPairs<false>;
/// Q5_0 and Q5_1.
type Q5Pairs = NibPairs<true>;

impl<const HIGH: bool> BlockDot for NibPairs<HIGH> {
    const GROUPS: usize = if HIGH { 5 } else { 4 };
    const SIGNED: bool = false;

    #[inline(always)]
    unsafe fn prep<const MR: usize>(acts: [&ActBlock; MR]) -> Prep<MR> {
        prep_pairs(acts)
    }

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
        _: &Halves<MR>,
    ) -> [int32x4_t; MR] {
        // SAFETY: NEON (baseline) and i8mm (caller); chunks 0..GROUPS of
        // group g lie in the block (caller).
        unsafe {
            let qh = load_qh::<HIGH>(codes, g);
            let mut acc = [vdupq_n_s32(0); MR];
            nib_pairs::<HIGH, 0, MR>(codes, g, &qh, prep, &mut acc);
            nib_pairs::<HIGH, 1, MR>(codes, g, &qh, prep, &mut acc);
            unpair(acc)
        }
    }
}

/// Chunks `2Q`, `2Q + 1` zipped into row pairs: low nibbles are elements
/// `8Q..8Q+8` of each row, high ones `16+8Q..16+8Q+8`.
///
/// # Safety
/// Both chunks of group `g` are readable; the CPU has i8mm.
#[inline(always)]
unsafe fn nib_pairs<const HIGH: bool, const Q: usize, const MR: usize>(
    codes: *const u8,
    g: usize,
    qh: &Qh,
    prep: &Prep<MR>,
    acc: &mut [int32x4_t; MR],
) {
    // SAFETY: NEON (baseline) and i8mm (caller); both chunks are readable (caller).
    unsafe {
        let (z01, z23) = load_row_pairs(codes, 2 * Q, g);
        let ((lo01, hi01), (lo23, hi23)) = if HIGH {
            (
                (low5(z01), high5(z01, qh, &PairBits::<Q>::HI01)),
                (low5(z23), high5(z23, qh, &PairBits::<Q>::HI23)),
            )
        } else {
            (nibbles(z01), nibbles(z23))
        };
        for j in (0..MR).step_by(2) {
            let (mlo, mhi) = (prep[j][Q], prep[j + 1][Q]);
            acc[j] = usmmla(usmmla(acc[j], lo01, mlo), hi01, mhi);
            acc[j + 1] = usmmla(usmmla(acc[j + 1], lo23, mlo), hi23, mhi);
        }
    }
}

/// [`HighBits`] of the high codes of the row pairs of chunks `2Q`, `2Q + 1`
/// (8 bytes per row).
struct PairBits<const Q: usize>;

impl<const Q: usize> PairBits<Q> {
    const HI01: HighBits = HighBits::new(0, 8, 16 + 8 * Q);
    const HI23: HighBits = HighBits::new(2, 8, 16 + 8 * Q);
}

/// Q6_K, an even number of batch rows: 6-bit codes, each 16-value half
/// summed apart.
struct Q6Pairs;

impl BlockDot for Q6Pairs {
    const GROUPS: usize = 6;
    const SIGNED: bool = false;

    #[inline(always)]
    unsafe fn prep<const MR: usize>(acts: [&ActBlock; MR]) -> Prep<MR> {
        prep_pairs(acts)
    }

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
        halves: &Halves<MR>,
    ) -> [int32x4_t; MR] {
        // SAFETY: NEON (baseline) and i8mm (caller); chunks 0..6 of group g
        // lie in the block (caller).
        unsafe {
            let high = load_q6_high(codes, g);
            // [half] per batch row, rows paired as `unpair` expects
            let mut acc = [[vdupq_n_s32(0); 2]; MR];
            q6_pairs::<0, MR>(codes, g, &high, prep, &mut acc);
            q6_pairs::<1, MR>(codes, g, &high, prep, &mut acc);
            let lo = unpair(acc.map(|a| a[0]));
            let hi = unpair(acc.map(|a| a[1]));
            core::array::from_fn(|i| halves.isum(i, [lo[i], hi[i]]))
        }
    }
}

/// Chunks `2Q`, `2Q + 1` of Q6_K zipped into row pairs: low nibbles are
/// elements `8Q..8Q+8` of each row (first half), high ones `16+8Q..` (second
/// half); the high parts of chunk `c` are bits `2c..2c+2` of the high chunks'
/// bytes, so the zipped high chunks are shifted by `4 - 4Q` (first 4 bytes
/// of each row) and `2 - 4Q` (last 4).
///
/// # Safety
/// Chunks `2Q`, `2Q + 1` of group `g` are readable; the CPU has i8mm.
#[inline(always)]
unsafe fn q6_pairs<const Q: usize, const MR: usize>(
    codes: *const u8,
    g: usize,
    high: &[uint8x16_t; 2],
    prep: &Prep<MR>,
    acc: &mut [[int32x4_t; 2]; MR],
) {
    // SAFETY: NEON (baseline) and i8mm (caller); both chunks are readable (caller).
    unsafe {
        let (z01, z23) = load_row_pairs(codes, 2 * Q, g);
        let (lo01, hi01) = nibbles(z01);
        let (lo23, hi23) = nibbles(z23);
        let (a, b) = ((4 - 4 * Q as i32) as i8, (2 - 4 * Q as i32) as i8);
        let shift: [i8; 16] = core::array::from_fn(|t| if t % 8 < 4 { a } else { b });
        let shift = vld1q_s8(shift.as_ptr());
        let bits = |h: uint8x16_t, pair: usize| {
            let h = vreinterpretq_u32_u8(h);
            let z = if pair == 0 {
                vzip1q_u32(h, h)
            } else {
                vzip2q_u32(h, h)
            };
            vshlq_u8(vreinterpretq_u8_u32(z), shift)
        };
        let lo01 = with_high2(lo01, bits(high[0], 0));
        let hi01 = with_high2(hi01, bits(high[1], 0));
        let lo23 = with_high2(lo23, bits(high[0], 1));
        let hi23 = with_high2(hi23, bits(high[1], 1));
        for j in (0..MR).step_by(2) {
            let (mlo, mhi) = (prep[j][Q], prep[j + 1][Q]);
            acc[j][0] = usmmla(acc[j][0], lo01, mlo);
            acc[j][1] = usmmla(acc[j][1], hi01, mhi);
            acc[j + 1][0] = usmmla(acc[j + 1][0], lo23, mlo);
            acc[j + 1][1] = usmmla(acc[j + 1][1], hi23, mhi);
        }
    }
}

/// `usdot` on the layout's unsigned codes.
struct Usdot;

impl LaneDot for Usdot {
    type W = uint8x16_t;

    #[inline(always)]
    unsafe fn load(p: *const u8) -> uint8x16_t {
        // SAFETY: NEON (baseline); 16 readable bytes (caller).
        unsafe { vld1q_u8(p) }
    }

    #[inline(always)]
    unsafe fn dot<const C: usize>(acc: int32x4_t, w: uint8x16_t, a: int8x16_t) -> int32x4_t {
        // SAFETY: i8mm (caller).
        unsafe { usdot::<C>(acc, w, a) }
    }
}

/// Q8_0, one batch row: unsigned codes, offset 128.
type Q8Single = LaneQ8<Usdot, false>;
