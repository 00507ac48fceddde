//! Activation quantization: the canonical int8 form of one input row.
//!
//! See the crate docs ("canonical arithmetic") for the definition every ISA
//! reproduces. This module holds the block type and the scalar reference.

use crate::formats::QK;
use bytemuck::{Pod, Zeroable};

/// One quantized 32-value block of an activation row.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, PartialEq, Pod, Zeroable)]
pub struct ActBlock {
    /// Codes in -127..=127.
    pub qs: [i8; QK],
    /// Scale: `amax / 127`, 0 for a (near-)zero block, NaN if the block holds NaN or ±Inf.
    pub d: f32,
    /// `-offset * Σ qs`, where `offset` is the unsigned offset of the weight
    /// codes this row will meet (128 for Q8_0, 8 for Q4_0, 16 for Q5_0): the
    /// integer that, added to the dot product with unsigned codes, gives the
    /// exact signed one. Formats with a minimum (Q4_1, Q5_1) use offset -1,
    /// so that `corr = Σ qs`, the sum their `m` term needs.
    pub corr: i32,
    /// `Σ qs[0..16]` and `Σ qs[16..32]` (|sum| <= 16 * 127): Q6_K's scales
    /// are per 16 values, so its offset is undone per half (`-32 *
    /// half_sums[h]`).
    pub half_sums: [i16; 2],
    /// `d * (Σ qs as f32)`, one f32 multiply (NaN with `d`): the activation
    /// factor of the `m` term of formats with a minimum, computed once per
    /// block here rather than per weight row in the kernels.
    pub dsum: f32,
}

const _: () = assert!(core::mem::size_of::<ActBlock>() == 48);

/// Blocks whose `amax` is below this (2^-120) quantize to zero, so that
/// `127 / amax` never overflows.
pub const TINY_AMAX_BITS: u32 = (127 - 120) << 23;

/// Bit pattern of the scale given to a block holding NaN or ±Inf.
pub const NAN_SCALE_BITS: u32 = 0x7FC0_0000;

/// Scale, reciprocal and "non-finite" flag for a block with `amax_bits` = the
/// largest `bits(x) & 0x7FFF_FFFF` in the block. Shared by every ISA so that the
/// per-block scalar part of quantization is literally the same code.
#[inline(always)]
pub fn block_scales(amax_bits: u32) -> (f32, f32) {
    if amax_bits >= 0x7F80_0000 {
        (f32::from_bits(NAN_SCALE_BITS), 0.0)
    } else if amax_bits < TINY_AMAX_BITS {
        (0.0, 0.0)
    } else {
        let amax = f32::from_bits(amax_bits);
        (amax / 127.0, 127.0 / amax)
    }
}

/// Scalar reference: quantizes `x` (any length) into `ceil(len / 32)` blocks;
/// the tail of the last block is padded with zeros. `offset` is the weight-code
/// offset folded into [`ActBlock::corr`].
pub fn quantize_row_scalar(x: &[f32], offset: i32, out: &mut [ActBlock]) {
    assert_eq!(out.len(), x.len().div_ceil(QK), "activation block count");
    for (b, blk) in out.iter_mut().enumerate() {
        let start = b * QK;
        let end = (start + QK).min(x.len());
        let mut v = [0.0f32; QK];
        v[..end - start].copy_from_slice(&x[start..end]);
        *blk = quantize_block_scalar(&v, offset);
    }
}

/// Scalar reference for one block.
pub fn quantize_block_scalar(v: &[f32; QK], offset: i32) -> ActBlock {
    let amax_bits = v.iter().map(|x| x.to_bits() & 0x7FFF_FFFF).max().unwrap();
    let (d, id) = block_scales(amax_bits);
    let mut qs = [0i8; QK];
    let mut half_sums = [0i32; 2];
    if id != 0.0 {
        for (j, (q, &x)) in qs.iter_mut().zip(v).enumerate() {
            *q = (x * id).round_ties_even() as i8;
            half_sums[j / 16] += *q as i32;
        }
    }
    let mut blk = ActBlock {
        qs,
        ..ActBlock::zeroed()
    };
    blk.set_scales(d, offset, half_sums);
    blk
}

impl ActBlock {
    /// Sets everything but the codes: scale `d`, and from the codes' half
    /// sums `half_sums` (for weight codes with unsigned offset `offset`)
    /// `corr`, `half_sums` and `dsum`, the same way on every ISA.
    #[inline(always)]
    pub fn set_scales(&mut self, d: f32, offset: i32, half_sums: [i32; 2]) {
        let sum = half_sums[0] + half_sums[1];
        self.d = d;
        self.corr = -offset * sum;
        self.half_sums = half_sums.map(|s| s as i16);
        self.dsum = d * sum as f32;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_round_to_even() {
        let mut v = [0.0f32; QK];
        v[0] = 127.0;
        v[1] = 0.5;
        v[2] = 1.5;
        v[3] = -2.5;
        v[4] = -0.5;
        let b = quantize_block_scalar(&v, 8);
        assert_eq!(b.d, 1.0);
        assert_eq!(&b.qs[..5], &[127, 0, 2, -2, 0]);
        assert_eq!(b.corr, -8 * (127 + 2 - 2));
        assert_eq!(b.half_sums, [127 + 2 - 2, 0]);
        assert_eq!(b.dsum, 127.0);
    }

    #[test]
    fn non_finite_blocks_give_nan_scale_and_zero_codes() {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut v = [1.0f32; QK];
            v[9] = bad;
            let b = quantize_block_scalar(&v, 128);
            assert_eq!(b.d.to_bits(), NAN_SCALE_BITS);
            assert_eq!(b.qs, [0; QK]);
            assert_eq!((b.corr, b.half_sums), (0, [0, 0]));
            assert!(b.dsum.is_nan(), "the m term stays NaN with d");
        }
    }

    #[test]
    fn tiny_blocks_are_zero() {
        let mut v = [0.0f32; QK];
        v[0] = f32::from_bits(TINY_AMAX_BITS - 1);
        let b = quantize_block_scalar(&v, 8);
        assert_eq!((b.d, b.qs, b.corr, b.half_sums), (0.0, [0; QK], 0, [0, 0]));
        v[0] = f32::from_bits(TINY_AMAX_BITS);
        let b = quantize_block_scalar(&v, 8);
        assert_eq!(b.qs[0], 127);
        assert!(b.d > 0.0);
    }

    #[test]
    fn codes_stay_in_range_and_tail_is_padded() {
        let x: Vec<f32> = (0..45).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
        let mut out = vec![ActBlock::zeroed(); 2];
        quantize_row_scalar(&x, 128, &mut out);
        assert!(out.iter().all(|b| b.qs.iter().all(|&q| q != -128)));
        assert_eq!(&out[1].qs[13..], &[0; 19]);
        for b in &out {
            let half = |h: usize| {
                b.qs[16 * h..16 * h + 16]
                    .iter()
                    .map(|&q| q as i32)
                    .sum::<i32>()
            };
            assert_eq!(b.half_sums.map(i32::from), [half(0), half(1)]);
            assert_eq!(b.dsum, b.d * (half(0) + half(1)) as f32);
            assert_eq!(b.corr, -128 * (half(0) + half(1)));
        }
    }
}
