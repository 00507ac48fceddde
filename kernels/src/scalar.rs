//! Portable reference kernels. Their results define the canonical bits.
//!
//! These read the packed panel layout directly (see [`crate::pack`]) and
//! perform, per output, exactly the operations listed in the crate docs,
//! written once over [`PackedBlock`] and [`FloatElem`]: every format has a
//! scalar kernel, and an ISA without its own kernel for a format runs this
//! one ([`crate::Kernels`] falls back to it).

use crate::act::{quantize_row_scalar, ActBlock};
use crate::formats::{FloatElem, PackedBlock, WeightFormat, QK};
use crate::pack::{panel_block, NR};
use crate::{match_format, Kernels, TileArgs, Tiles};

pub(crate) static KERNELS: Kernels = Kernels {
    isa: crate::Isa::Scalar,
    quantize_row,
    tiles: all_tiles(),
    gemv_panels: 1,
    gemm_panels: 1,
    pack_x: false,
};

/// The scalar tile of every format.
const fn all_tiles() -> Tiles {
    let mut t = Tiles::NONE;
    let mut i = 0;
    while i < WeightFormat::COUNT {
        let f = WeightFormat::ALL[i];
        t = t.with(
            f,
            match_format!(f, B => block_tile::<B>, E => float_tile::<E>),
        );
        i += 1;
    }
    t
}

unsafe fn quantize_row(x: &[f32], offset: i32, out: &mut [ActBlock]) {
    quantize_row_scalar(x, offset, out);
}

/// The canonical block-format sequence. Per panel and block, the 16 rows'
/// unsigned codes and scales are read once for all batch rows; per output:
/// `isum = Σ ucode * a + corr` (formats with an offset; `corr` undoes it) or
/// `isum = Σ ucode * a` (formats with a minimum), `acc = fma(d * da, isum,
/// acc)`, then for a minimum `acc = fma(m, da * Σa, acc)` (`Σa = corr`).
///
/// # Safety
/// The driver's [`TileArgs`] contract (checked lengths); no target features.
unsafe fn block_tile<B: PackedBlock>(a: &mut TileArgs) {
    let w = a.w;
    let nb = w.blocks_per_row();
    let so = w.scales_offset();
    let ldo = a.np * NR;
    a.tile[..a.mr * ldo].fill(0.0);
    for pi in 0..a.np {
        let panel = w.panel(a.p0 + pi);
        for b in 0..nb {
            let blocks: [B; NR] = core::array::from_fn(|r| panel_block(panel, so, b, r));
            let ucodes: [[u8; QK]; NR] =
                core::array::from_fn(|r| core::array::from_fn(|j| blocks[r].ucode(j)));
            let [dw, mw]: [[f32; NR]; 2] =
                core::array::from_fn(|s| core::array::from_fn(|r| blocks[r].scales()[s].to_f32()));
            for i in 0..a.mr {
                let act: &ActBlock = &a.acts[i * nb + b];
                let acc = &mut a.tile[i * ldo + pi * NR..i * ldo + (pi + 1) * NR];
                for r in 0..NR {
                    let raw: i32 = (0..QK)
                        .map(|j| ucodes[r][j] as i32 * act.qs[j] as i32)
                        .sum();
                    if B::SCALES == 1 {
                        let isum = raw + act.corr;
                        acc[r] = (dw[r] * act.d).mul_add(isum as f32, acc[r]);
                    } else {
                        acc[r] = (dw[r] * act.d).mul_add(raw as f32, acc[r]);
                        acc[r] = mw[r].mul_add(act.d * act.corr as f32, acc[r]);
                    }
                }
            }
        }
    }
}

/// The canonical float sequence: `acc = fma(w_k, x_k, acc)` for `k` in
/// order, `w_k` widened exactly.
///
/// # Safety
/// The driver's [`TileArgs`] contract (checked lengths); no target features.
unsafe fn float_tile<E: FloatElem>(a: &mut TileArgs) {
    let w = a.w;
    let k = w.k();
    let s = core::mem::size_of::<E>();
    for (i, out_row) in a.tile.chunks_exact_mut(a.np * NR).take(a.mr).enumerate() {
        let x = &a.x[i * k..(i + 1) * k];
        for (pi, out) in out_row.chunks_exact_mut(NR).enumerate() {
            let panel = w.panel(a.p0 + pi);
            let mut acc = [0.0f32; NR];
            for (kk, &xv) in x.iter().enumerate() {
                let step = &panel[kk * NR * s..(kk + 1) * NR * s];
                for (acc, v) in acc.iter_mut().zip(step.chunks_exact(s)) {
                    let wv = bytemuck::pod_read_unaligned::<E>(v).le_to_f32();
                    *acc = wv.mul_add(xv, *acc);
                }
            }
            out.copy_from_slice(&acc);
        }
    }
}
