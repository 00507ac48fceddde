//! Portable reference kernels. Their results define the canonical bits.
//!
//! These read the packed panel layout directly (see [`crate::pack`]) and
//! perform, per output, exactly the operations listed in the crate docs.

use crate::act::{quantize_row_scalar, ActBlock};
use crate::formats::QK;
use crate::pack::{PackedMatrix, NR, Q4_CODE_BYTES, Q8_CODE_BYTES};
use crate::{Kernels, TileArgs};
use half::f16;

pub(crate) static KERNELS: Kernels = Kernels {
    isa: crate::Isa::Scalar,
    quantize_row,
    q8_0: q8_tile,
    q4_0: q4_tile,
    f16: f16_tile,
    f32: f32_tile,
    gemv_panels: 1,
    gemm_panels: 1,
    pack_x: false,
};

unsafe fn quantize_row(x: &[f32], offset: i32, out: &mut [ActBlock]) {
    quantize_row_scalar(x, offset, out);
}

fn scales_f32(panel: &[u8], so: usize, b: usize) -> [f32; NR] {
    let s = &panel[so + b * NR * 2..so + (b + 1) * NR * 2];
    core::array::from_fn(|r| f16::from_le_bytes([s[2 * r], s[2 * r + 1]]).to_f32())
}

/// Shared block loop: `dots(codes_of_block, act_block) -> [i32; 16]` gives the raw
/// unsigned-code dot products; `act.corr` undoes the code offset exactly.
fn q_tile(
    a: &mut TileArgs,
    acts: &[ActBlock],
    code_bytes: usize,
    dots: impl Fn(&[u8], &ActBlock) -> [i32; NR],
) {
    let w = a.w;
    let nb = w.blocks_per_row();
    let so = w.scales_offset();
    for (i, out_row) in a.tile.chunks_exact_mut(a.np * NR).take(a.mr).enumerate() {
        let row_acts = &acts[i * nb..(i + 1) * nb];
        for (pi, out) in out_row.chunks_exact_mut(NR).enumerate() {
            let panel = w.panel(a.p0 + pi);
            let mut acc = [0.0f32; NR];
            for (b, act) in row_acts.iter().enumerate() {
                let raw = dots(&panel[b * code_bytes..(b + 1) * code_bytes], act);
                let dw = scales_f32(panel, so, b);
                for r in 0..NR {
                    let isum = raw[r] + act.corr;
                    acc[r] = (dw[r] * act.d).mul_add(isum as f32, acc[r]);
                }
            }
            out.copy_from_slice(&acc);
        }
    }
}

unsafe fn q8_tile(a: &mut TileArgs) {
    let acts = a.acts;
    q_tile(a, acts, Q8_CODE_BYTES, |codes, act| {
        core::array::from_fn(|r| {
            (0..QK)
                .map(|j| codes[(j / 4) * 64 + r * 4 + j % 4] as i32 * act.qs[j] as i32)
                .sum()
        })
    });
}

unsafe fn q4_tile(a: &mut TileArgs) {
    let acts = a.acts;
    q_tile(a, acts, Q4_CODE_BYTES, |codes, act| {
        core::array::from_fn(|r| {
            (0..QK / 2)
                .map(|j| {
                    let byte = codes[(j / 4) * 64 + r * 4 + j % 4];
                    (byte & 0x0F) as i32 * act.qs[j] as i32
                        + (byte >> 4) as i32 * act.qs[j + 16] as i32
                })
                .sum()
        })
    });
}

fn float_tile(a: &mut TileArgs, weight: impl Fn(&[u8], usize, usize) -> f32) {
    let w: &PackedMatrix = a.w;
    let k = w.k();
    for (i, out_row) in a.tile.chunks_exact_mut(a.np * NR).take(a.mr).enumerate() {
        let x = &a.x[i * k..(i + 1) * k];
        for (pi, out) in out_row.chunks_exact_mut(NR).enumerate() {
            let panel = w.panel(a.p0 + pi);
            let mut acc = [0.0f32; NR];
            for (kk, &xv) in x.iter().enumerate() {
                for (r, acc) in acc.iter_mut().enumerate() {
                    *acc = weight(panel, kk, r).mul_add(xv, *acc);
                }
            }
            out.copy_from_slice(&acc);
        }
    }
}

unsafe fn f16_tile(a: &mut TileArgs) {
    float_tile(a, |p, kk, r| {
        let o = (kk * NR + r) * 2;
        f16::from_le_bytes([p[o], p[o + 1]]).to_f32()
    });
}

unsafe fn f32_tile(a: &mut TileArgs) {
    float_tile(a, |p, kk, r| {
        let o = (kk * NR + r) * 4;
        f32::from_le_bytes(p[o..o + 4].try_into().unwrap())
    });
}
