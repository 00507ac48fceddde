//! The tile contract: what the driver hands a kernel and what a kernel table
//! holds.
//!
//! A tile kernel computes raw accumulators (before bias) for `np` panels of
//! 16 output rows x `mr` batch rows ([`TileArgs`]); a table ([`Kernels`]) has
//! one activation quantizer and one tile kernel per format ([`Tiles`]).

use crate::act::ActBlock;
use crate::formats::WeightFormat;
use crate::pack::PackedMatrix;
#[allow(unused_imports)]
use crate::{Kernels, NR};

/// Arguments of one tile kernel call: panels `p0..p0+np` x `mr` batch rows.
///
/// The driver guarantees, before any call: `p0 + np <= w.panels()`,
/// `acts.len() >= mr * nb` (block formats) or `x.len() >= mr * k` (float
/// formats), `tile.len() >= mr * np * NR`, and `xp` as its field says.
/// Kernels write raw accumulators (before bias) to
/// `tile[i * np * NR + pi * NR + r]`.
pub(crate) struct TileArgs<'a> {
    pub w: &'a PackedMatrix,
    pub p0: usize,
    pub np: usize,
    pub acts: &'a [ActBlock],
    pub x: &'a [f32],
    /// The tile's `mr` rows of `x` packed chunk-major, when the table asks for
    /// it (`pack_x`, float formats, batches of more than one row), else
    /// empty: the values of row `r` for k-steps `c * F16_KC..` start at
    /// `xp[(c * mr + r) * F16_KC]`, and
    /// `xp.len() >= ceil(k / F16_KC) * mr * F16_KC`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub xp: &'a [f32],
    pub mr: usize,
    pub tile: &'a mut [f32],
}

/// A tile kernel.
pub(crate) type TileFn = unsafe fn(&mut TileArgs);
/// An activation-row quantizer (`x`, weight-code offset, blocks).
pub(crate) type QuantizeFn = unsafe fn(&[f32], i32, &mut [ActBlock]);

/// A table's tile kernel per format (index `format as usize`); `None`: the
/// ISA has no kernel of its own for that format and the scalar one runs.
#[derive(Clone, Copy)]
pub(crate) struct Tiles([Option<TileFn>; WeightFormat::COUNT]);

impl Tiles {
    /// No kernel for any format.
    pub(crate) const NONE: Tiles = Tiles([None; WeightFormat::COUNT]);

    /// This table with `tile` as `format`'s kernel.
    pub(crate) const fn with(mut self, format: WeightFormat, tile: TileFn) -> Tiles {
        self.0[format as usize] = Some(tile);
        self
    }

    /// `format`'s kernel, if the table has one.
    pub(crate) fn get(&self, format: WeightFormat) -> Option<TileFn> {
        self.0[format as usize]
    }
}

/// Upper bound of [`Kernels`]' panels per batched call.
pub(crate) const MAX_GEMM_PANELS: usize = 8;

/// k-steps per chunk of the batched float kernels (the chunks of packed x;
/// F16 weights are widened to f32 a chunk at a time).
pub(crate) const F16_KC: usize = 128;

/// 16 f32 values on one cache line: the unit of the kernels' buffers, so that
/// their 64-byte vector loads and stores never straddle two lines.
#[repr(C, align(64))]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct F32Line(pub(crate) [f32; 16]);

/// Batch rows per tile call (kernels split them into register tiles). Large, so
/// that a panel's weights are read from memory once for up to 128 rows.
pub(crate) const MAX_TILE_ROWS: usize = 128;
