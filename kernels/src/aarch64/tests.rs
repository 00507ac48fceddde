//! Tile kernels called directly with every `np` / `mr` (not only the ones the
//! driver picks), and the quantizer on arbitrary bit patterns, against scalar.

use super::super::{first_difference, scalar, Isa, Kernels, TileArgs};
use crate::act::{quantize_row_scalar, ActBlock};
use crate::formats::{FloatElem, PackedBlock, QK};
use crate::match_format;
use crate::pack::{PackedMatrix, WeightFormat, NR};
use bytemuck::Zeroable;
use half::f16;
use quickcheck::QuickCheck;

const LEVELS: [Isa; 3] = [Isa::Neon, Isa::NeonDotprod, Isa::NeonI8mm];

fn tables() -> Vec<&'static Kernels> {
    let t: Vec<_> = LEVELS
        .iter()
        .filter_map(|&i| Kernels::for_isa(i).ok())
        .collect();
    // NEON is the aarch64 baseline: at least one table always runs.
    assert!(!t.is_empty());
    t
}

/// xorshift64*, deterministic.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn f32(&mut self, scale: f32) -> f32 {
        ((self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
}

/// Matrices of every format with random codes over the full range (Q8_0 -128
/// included, every `qh` bit pattern), some zero scales and minimums of both
/// signs.
fn matrices(n: usize, k: usize, rng: &mut Rng) -> Vec<PackedMatrix> {
    let scale = |rng: &mut Rng| {
        if rng.next().is_multiple_of(9) {
            f16::ZERO
        } else {
            f16::from_f32(rng.f32(2.0))
        }
    };
    let wf: Vec<f32> = (0..n * k).map(|_| rng.f32(3.0)).collect();
    WeightFormat::ALL
        .iter()
        .map(|&f| {
            match_format!(
                f,
                B => {
                    let nb = k.div_ceil(B::VALUES);
                    let blocks: Vec<B> = (0..n * nb)
                        .map(|_| {
                            let scales = [scale(rng), scale(rng)];
                            let groups: Vec<[u8; 4]> = (0..B::GROUPS + B::SCALE_GROUPS)
                                .map(|_| (rng.next() as u32).to_le_bytes())
                                .collect();
                            B::from_packed(scales, |c| groups[c])
                        })
                        .collect();
                    PackedMatrix::pack_blocks::<B, ()>(n, k, |r, o| {
                        o.copy_from_slice(&blocks[r * nb..(r + 1) * nb]);
                        Ok(())
                    })
                    .unwrap()
                },
                E => {
                    let w: Vec<E> = wf.iter().map(|&v| E::from_f32_le(v)).collect();
                    PackedMatrix::from_floats(&w, n, k)
                },
            )
        })
        .collect()
}

/// The kernel `t` runs for `w` (its own, or the scalar one it falls back to).
fn tile_fn(t: &Kernels, w: &PackedMatrix) -> crate::tile::TileFn {
    t.tile(w.format()).0
}

fn run_tile(
    t: &Kernels,
    w: &PackedMatrix,
    acts: &[ActBlock],
    x: &[f32],
    p0: usize,
    np: usize,
    mr: usize,
) -> Vec<f32> {
    let block = w.format().is_block_quantized();
    // Garbage first, so a lane the kernel fails to write shows up.
    let mut tile = vec![f32::from_bits(0x7F80_1234); mr * np * NR];
    let mut args = TileArgs {
        w,
        p0,
        np,
        acts: if block { acts } else { &[] },
        x: if block { &[] } else { x },
        mr,
        tile: &mut tile,
        xp: &[],
    };
    // SAFETY: `t` came from `Kernels::for_isa` (CPU checked); p0 + np <= panels,
    // acts / x hold mr rows, the tile mr * np * NR values; these tables do not pack x.
    unsafe { tile_fn(t, w)(&mut args) };
    tile
}

#[test]
fn every_format_has_a_kernel_at_every_level() {
    for t in tables() {
        for f in WeightFormat::ALL {
            assert!(t.has_kernel(f), "{:?} {f:?}", t.isa());
        }
    }
}

#[test]
fn tiles_match_scalar_for_any_np_and_mr() {
    let tables = tables();
    let mut rng = Rng(0x5EED);
    let (n, max_mr) = (77, 9); // 5 panels, the last one partial
    for k in [1usize, 40, 96, 300] {
        let nb = k.div_ceil(QK);
        let mut x: Vec<f32> = (0..max_mr * k).map(|_| rng.f32(4.0)).collect();
        x[k / 2] = f32::NAN; // one NaN block in row 0
        for w in matrices(n, k, &mut rng) {
            // The correction in the activation blocks depends on the format.
            let offset = w.format().info().act_offset.unwrap_or(0);
            let mut acts = vec![ActBlock::zeroed(); max_mr * nb];
            for (row, a) in x.chunks_exact(k).zip(acts.chunks_exact_mut(nb)) {
                quantize_row_scalar(row, offset, a);
            }
            for np in 1..=w.panels() {
                for p0 in 0..=w.panels() - np {
                    for mr in 1..=max_mr {
                        let want = run_tile(&scalar::KERNELS, &w, &acts, &x, p0, np, mr);
                        for t in &tables {
                            let got = run_tile(t, &w, &acts, &x, p0, np, mr);
                            assert_eq!(
                                first_difference(&got, &want),
                                None,
                                "{:?} {:?} k={k} p0={p0} np={np} mr={mr}",
                                t.isa(),
                                w.format()
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn quickcheck_quantizer_matches_scalar_on_any_bits() {
    fn prop(bits: Vec<u32>, floats: Vec<f32>, exp: u8) -> bool {
        // Raw bit patterns (NaN, Inf, subnormal, huge) and ordinary values at a
        // random magnitude (so that most blocks are neither tiny nor special).
        let mag = 2f32.powi(exp as i32 % 200 - 100);
        let x: Vec<f32> = bits
            .iter()
            .map(|&b| f32::from_bits(b))
            .chain(floats.iter().map(|&f| f * mag))
            .collect();
        let nb = x.len().div_ceil(QK);
        let mut want = vec![ActBlock::zeroed(); nb];
        [-1, 8, 16, 128].iter().all(|&offset| {
            quantize_row_scalar(&x, offset, &mut want);
            tables().iter().all(|t| {
                let mut got = vec![ActBlock::zeroed(); nb];
                // SAFETY: `t` came from `Kernels::for_isa`; `got` holds ceil(len / 32) blocks.
                unsafe { (t.quantize_row)(&x, offset, &mut got) };
                bytemuck::cast_slice::<_, u8>(&got) == bytemuck::cast_slice::<_, u8>(&want)
            })
        })
    }
    QuickCheck::new()
        .tests(300)
        .quickcheck(prop as fn(Vec<u32>, Vec<f32>, u8) -> bool);
}
