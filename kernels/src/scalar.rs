//! Portable reference kernels. Their results define the canonical bits.
//!
//! These read the packed panel layout directly (see [`crate::pack`]) and
//! perform, per output, exactly the operations listed in the crate docs,
//! written once over [`PackedBlock`] and [`FloatElem`]: every format has a
//! scalar kernel, and an ISA without its own kernel for a format runs this
//! one ([`crate::Kernels`] falls back to it).

use crate::act::{quantize_row_scalar, ActBlock};
use crate::formats::{FloatElem, PackedBlock, SubScale, WeightFormat, QK};
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
/// unsigned codes and sub-block scales are read once for all batch rows; per
/// output and 32-value (sub-)block, by its [`SubScale`]: `Offset`: `isum =
/// Σ ucode * a + corr` (`corr` undoes the offset), `acc = fma(d * da, isum,
/// acc)`; `Min`: `acc = fma(d * da, Σ ucode * a, acc)`, then `acc = fma(m,
/// dsum, acc)` (`dsum = da * Σa`, from the activation block); `Halves`:
/// `isum = s0 * Σ_lo (ucode - 32) * a + s1 * Σ_hi (ucode - 32) * a` over
/// the two 16-value halves, `acc = fma(d * da, isum, acc)`. Sub-blocks past
/// `ceil(k / 32)` (row padding of the last super-block) are not visited.
///
/// # Safety
/// The driver's [`TileArgs`] contract (checked lengths); no target features.
unsafe fn block_tile<B: PackedBlock>(a: &mut TileArgs) {
    let w = a.w;
    let nb = w.blocks_per_row();
    let subs = B::VALUES / QK;
    let so = w.scales_offset();
    let ldo = a.np * NR;
    a.tile[..a.mr * ldo].fill(0.0);
    for pi in 0..a.np {
        let panel = w.panel(a.p0 + pi);
        for fb in 0..w.format_blocks_per_row() {
            let blocks: [B; NR] = core::array::from_fn(|r| panel_block(panel, so, fb, r));
            for s in 0..subs {
                let b = fb * subs + s;
                if b >= nb {
                    break;
                }
                let ucodes: [[u8; QK]; NR] =
                    core::array::from_fn(|r| core::array::from_fn(|j| blocks[r].ucode(QK * s + j)));
                let scales: [SubScale; NR] = core::array::from_fn(|r| blocks[r].sub_scale(s));
                for i in 0..a.mr {
                    let act: &ActBlock = &a.acts[i * nb + b];
                    let acc = &mut a.tile[i * ldo + pi * NR..i * ldo + (pi + 1) * NR];
                    for r in 0..NR {
                        let dot = |js: core::ops::Range<usize>, offset: i32| -> i32 {
                            js.map(|j| (ucodes[r][j] as i32 - offset) * act.qs[j] as i32)
                                .sum()
                        };
                        match scales[r] {
                            SubScale::Offset { d } => {
                                let isum = dot(0..QK, 0) + act.corr;
                                acc[r] = (d * act.d).mul_add(isum as f32, acc[r]);
                            }
                            SubScale::Min { d, m } => {
                                acc[r] = (d * act.d).mul_add(dot(0..QK, 0) as f32, acc[r]);
                                acc[r] = m.mul_add(act.dsum, acc[r]);
                            }
                            SubScale::Halves { d, s: [s0, s1] } => {
                                let isum = s0 * dot(0..16, 32) + s1 * dot(16..QK, 32);
                                acc[r] = (d * act.d).mul_add(isum as f32, acc[r]);
                            }
                        }
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
