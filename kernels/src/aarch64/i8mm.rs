//! NEON + dotprod + FEAT_I8MM: `usmmla` for pairs of batch rows, `usdot` for
//! a single Q8_0 row (Q4_0 single rows use the dotprod `sdot` path).
//!
//! `usmmla d, n, m` adds the 2x2 product of two 2x8 byte matrices:
//! `d = [n0·m0, n0·m1, n1·m0, n1·m1]`, with `n` unsigned and `m` signed. Here `n`
//! holds two weight rows (8 codes each, zipped from two adjacent chunks, so the
//! unsigned layout codes are used as they are) and `m` the same 8 elements of
//! two batch rows. Sums are undone with the code offset (128 / 8) exactly.

use super::{
    chunk, dotprod, f16_tile, f32_tile, load_acts, nibbles, q_tile, quantize_row, BlockDot,
    LaneDot, LaneQ8, Prep, GEMM_ROWS, GEMV_PANELS,
};
use crate::act::ActBlock;
use crate::pack::{Q4_CODE_BYTES, Q8_CODE_BYTES};
use crate::{Isa, Kernels, TileArgs};
use core::arch::aarch64::*;
use core::arch::asm;

pub(crate) static KERNELS: Kernels = Kernels {
    isa: Isa::NeonI8mm,
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

#[target_feature(enable = "dotprod,i8mm")]
unsafe fn q8_tile(a: &mut TileArgs) {
    // SAFETY: dotprod and i8mm are enabled here; the caller meets the TileArgs
    // contract.
    unsafe { q_tile::<Q8Pairs, Q8Single, GEMM_ROWS>(a) }
}

#[target_feature(enable = "dotprod,i8mm")]
unsafe fn q4_tile(a: &mut TileArgs) {
    // SAFETY: as above.
    unsafe { q_tile::<Q4Pairs, dotprod::Q4, GEMM_ROWS>(a) }
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
    const CODE_BYTES: usize = Q8_CODE_BYTES;
    const OFFSET: i32 = 128;

    #[inline(always)]
    unsafe fn prep<const MR: usize>(acts: [&ActBlock; MR]) -> Prep<MR> {
        prep_pairs(acts)
    }

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
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

/// Q4_0, an even number of batch rows: nibbles, offset 8.
struct Q4Pairs;

impl BlockDot for Q4Pairs {
    const CODE_BYTES: usize = Q4_CODE_BYTES;
    const OFFSET: i32 = 8;

    #[inline(always)]
    unsafe fn prep<const MR: usize>(acts: [&ActBlock; MR]) -> Prep<MR> {
        prep_pairs(acts)
    }

    #[inline(always)]
    unsafe fn group<const MR: usize>(
        codes: *const u8,
        g: usize,
        prep: &Prep<MR>,
    ) -> [int32x4_t; MR] {
        // SAFETY: NEON (baseline) and i8mm (caller); chunks 2q, 2q+1 of group g
        // lie in the block (caller).
        unsafe {
            let mut acc = [vdupq_n_s32(0); MR];
            #[allow(clippy::needless_range_loop)] // q also selects chunks 2q, 2q+1
            for q in 0..2 {
                let (z01, z23) = load_row_pairs(codes, 2 * q, g);
                // low nibbles: elements 8q..8q+8; high ones: 16+8q..16+8q+8
                let (lo01, hi01) = nibbles(z01);
                let (lo23, hi23) = nibbles(z23);
                for j in (0..MR).step_by(2) {
                    let (mlo, mhi) = (prep[j][q], prep[j + 1][q]);
                    acc[j] = usmmla(usmmla(acc[j], lo01, mlo), hi01, mhi);
                    acc[j + 1] = usmmla(usmmla(acc[j + 1], lo23, mlo), hi23, mhi);
                }
            }
            unpair(acc)
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
type Q8Single = LaneQ8<Usdot, 128>;
