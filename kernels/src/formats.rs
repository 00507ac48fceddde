//! GGUF block formats and llama.cpp's reference quantizers.
//!
//! The structs are `#[repr(C)]` and [`bytemuck::Pod`], so a slice of blocks is
//! byte-for-byte what a GGUF file (or llama.cpp's `ggml_tensor::data`) holds.
//! The quantizers reproduce `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`
//! exactly, including the f16 rounding of the scale (round to nearest even).

use bytemuck::{Pod, Zeroable};
use half::f16;

/// Number of values in one Q8_0 / Q4_0 block.
pub const QK: usize = 32;

/// GGUF `block_q8_0`: `d` (f16 scale) and 32 signed codes; value = `d * q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Block scale.
    pub d: f16,
    /// Signed codes, element `j` at `qs[j]`.
    pub qs: [i8; QK],
}

/// GGUF `block_q4_0`: `d` (f16 scale) and 32 4-bit codes; value = `d * (nibble - 8)`.
///
/// Element `j` (0..16) is the low nibble of `qs[j]`, element `j + 16` its high nibble.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_0 {
    /// Block scale.
    pub d: f16,
    /// Packed nibbles (stored value = code + 8).
    pub qs: [u8; QK / 2],
}

// Equality is byte equality (so -0.0 and NaN scales compare as stored).
impl PartialEq for BlockQ8_0 {
    fn eq(&self, other: &Self) -> bool {
        bytemuck::bytes_of(self) == bytemuck::bytes_of(other)
    }
}
impl Eq for BlockQ8_0 {}
impl PartialEq for BlockQ4_0 {
    fn eq(&self, other: &Self) -> bool {
        bytemuck::bytes_of(self) == bytemuck::bytes_of(other)
    }
}
impl Eq for BlockQ4_0 {}

const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);

impl BlockQ4_0 {
    /// The signed code (-8..=7) of element `j`.
    #[inline]
    pub fn code(&self, j: usize) -> i8 {
        let byte = self.qs[j % 16];
        let nib = if j < 16 { byte & 0x0F } else { byte >> 4 };
        nib as i8 - 8
    }
}

/// `quantize_row_q8_0_ref`: `x.len()` must equal `out.len() * 32`.
///
/// Panics on a length mismatch. Non-finite input gives the bytes llama.cpp gives
/// (layers reject such weights before calling this).
pub fn quantize_row_q8_0(x: &[f32], out: &mut [BlockQ8_0]) {
    assert_eq!(
        x.len(),
        out.len() * QK,
        "quantize_row_q8_0: length mismatch"
    );
    for (xb, blk) in x.chunks_exact(QK).zip(out.iter_mut()) {
        *blk = quantize_block_q8_0(xb.try_into().unwrap());
    }
}

/// One Q8_0 block, as llama.cpp's reference quantizer makes it.
pub fn quantize_block_q8_0(x: &[f32; QK]) -> BlockQ8_0 {
    let mut amax = 0.0f32;
    for &v in x {
        let av = v.abs();
        // C's MAX(amax, av) = amax > av ? amax : av
        amax = if amax > av { amax } else { av };
    }
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0i8; QK];
    for (q, &v) in qs.iter_mut().zip(x) {
        // roundf: half away from zero; the float-to-int8 cast of C (values in range).
        *q = (v * id).round() as i8;
    }
    BlockQ8_0 {
        d: f16::from_f32(d),
        qs,
    }
}

/// `quantize_row_q4_0_ref`: `x.len()` must equal `out.len() * 32`.
pub fn quantize_row_q4_0(x: &[f32], out: &mut [BlockQ4_0]) {
    assert_eq!(
        x.len(),
        out.len() * QK,
        "quantize_row_q4_0: length mismatch"
    );
    for (xb, blk) in x.chunks_exact(QK).zip(out.iter_mut()) {
        *blk = quantize_block_q4_0(xb.try_into().unwrap());
    }
}

/// One Q4_0 block, as llama.cpp's reference quantizer makes it.
pub fn quantize_block_q4_0(x: &[f32; QK]) -> BlockQ4_0 {
    let mut amax = 0.0f32;
    let mut max = 0.0f32;
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    let d = max / -8.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut qs = [0u8; QK / 2];
    for (j, q) in qs.iter_mut().enumerate() {
        // (int8_t)(x + 8.5f) truncates toward zero; MIN(15, ..) caps the top.
        let lo = ((x[j] * id + 8.5) as i8).min(15) as u8;
        let hi = ((x[j + 16] * id + 8.5) as i8).min(15) as u8;
        *q = lo | (hi << 4);
    }
    BlockQ4_0 {
        d: f16::from_f32(d),
        qs,
    }
}

/// `dequantize_row_q8_0`: `out.len()` must equal `blocks.len() * 32`.
pub fn dequantize_row_q8_0(blocks: &[BlockQ8_0], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK,
        "dequantize_row_q8_0: length mismatch"
    );
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = blk.d.to_f32();
        for (y, &q) in o.iter_mut().zip(&blk.qs) {
            *y = q as f32 * d;
        }
    }
}

/// `dequantize_row_q4_0`: `out.len()` must equal `blocks.len() * 32`.
pub fn dequantize_row_q4_0(blocks: &[BlockQ4_0], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK,
        "dequantize_row_q4_0: length mismatch"
    );
    for (blk, o) in blocks.iter().zip(out.chunks_exact_mut(QK)) {
        let d = blk.d.to_f32();
        for (j, y) in o.iter_mut().enumerate() {
            *y = blk.code(j) as f32 * d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(f: impl Fn(usize) -> f32) -> [f32; QK] {
        core::array::from_fn(f)
    }

    #[test]
    fn q8_zero_block_is_all_zero() {
        let b = quantize_block_q8_0(&[0.0; QK]);
        assert_eq!(b.d.to_bits(), 0);
        assert_eq!(b.qs, [0; QK]);
    }

    #[test]
    fn q8_ties_round_away_from_zero() {
        // amax = 127 -> d = 1, id = 1: codes are round(x) with ties away from zero.
        let mut x = [0.0f32; QK];
        x[0] = 127.0;
        x[1] = 0.5;
        x[2] = -0.5;
        x[3] = 1.5;
        x[4] = -2.5;
        x[5] = -127.0;
        let b = quantize_block_q8_0(&x);
        assert_eq!(b.d, f16::from_f32(1.0));
        assert_eq!(&b.qs[..6], &[127, 1, -1, 2, -3, -127]);
    }

    #[test]
    fn q8_fixed_vector() {
        // d = 2.54 / 127 = 0.02 (f32), id = 1 / d; expected bytes computed by hand
        // from the C reference arithmetic.
        let x = block(|j| (j as f32 - 15.5) * 0.16387097);
        let b = quantize_block_q8_0(&x);
        let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        assert_eq!(b.d, f16::from_f32(d));
        assert_eq!(b.qs[0], -127);
        assert_eq!(b.qs[31], 127);
        assert_eq!(b.qs[15], (x[15] * (1.0 / d)).round() as i8);
        assert_eq!(b.qs[15], -4);
    }

    #[test]
    fn q4_negative_max_sets_sign_of_scale() {
        // Largest magnitude is negative: d = max / -8 > 0 and that element maps to 0.
        let mut x = [0.0f32; QK];
        x[3] = -8.0;
        x[20] = 4.0;
        x[21] = 7.0;
        let b = quantize_block_q4_0(&x);
        assert_eq!(b.d.to_f32(), 1.0);
        assert_eq!(b.code(3), -8);
        assert_eq!(b.code(20), 4);
        assert_eq!(b.code(21), 7);
        assert_eq!(b.code(0), 0);
    }

    #[test]
    fn q4_positive_max_clamps_opposite_extreme_to_15() {
        // max = +8 -> d = -1; x = -8 maps to 8 + 8.5 = 16.5 -> 16 -> MIN(15) = 15.
        let mut x = [0.0f32; QK];
        x[0] = 8.0;
        x[17] = -8.0;
        x[5] = -7.9;
        let b = quantize_block_q4_0(&x);
        assert_eq!(b.d.to_f32(), -1.0);
        assert_eq!(b.qs[0] & 0x0F, 0); // 8 * -1 + 8.5 = 0.5 -> 0
        assert_eq!(b.qs[1] >> 4, 15);
        assert_eq!(b.qs[5] & 0x0F, 15); // 7.9 + 8.5 = 16.4 -> 16 -> 15
    }

    #[test]
    fn q4_first_of_equal_magnitudes_wins() {
        let mut x = [0.0f32; QK];
        x[1] = -3.0;
        x[2] = 3.0;
        let b = quantize_block_q4_0(&x);
        assert_eq!(b.d.to_f32(), 3.0 / 8.0);
        let mut y = [0.0f32; QK];
        y[1] = 3.0;
        y[2] = -3.0;
        assert_eq!(quantize_block_q4_0(&y).d.to_f32(), -3.0 / 8.0);
    }

    #[test]
    fn q4_zero_block_codes_are_eight() {
        // d = 0.0 / -8 = -0.0: llama.cpp stores a negative-zero scale.
        let b = quantize_block_q4_0(&[0.0; QK]);
        assert_eq!(b.d.to_bits(), 0x8000);
        assert_eq!(b.qs, [0x88; 16]);
    }

    #[test]
    fn subnormal_scale_rounds_to_f16_zero_but_codes_stay() {
        // amax tiny: d is a normal f32 but below f16's smallest subnormal.
        let x = block(|j| if j == 7 { 1e-10 } else { 0.0 });
        let b = quantize_block_q8_0(&x);
        assert_eq!(b.d.to_bits(), 0);
        assert_eq!(b.qs[7], 127);
        let mut out = [1.0f32; QK];
        dequantize_row_q8_0(&[b], &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn f16_subnormal_scale_is_kept() {
        // d = 127e-7 / 127 = 1e-7 lies in f16's subnormal range (min 5.96e-8).
        let x = block(|j| if j == 0 { 127e-7 } else { 0.0 });
        let b = quantize_block_q8_0(&x);
        assert!(!b.d.is_normal() && b.d.to_bits() != 0);
        assert_eq!(b.d, f16::from_f32(127e-7 / 127.0));
    }

    #[test]
    fn huge_values_overflow_the_f16_scale() {
        let x = block(|j| if j == 0 { 1e7 } else { 1.0 });
        assert!(quantize_block_q8_0(&x).d.is_infinite());
        assert!(quantize_block_q4_0(&x).d.is_infinite());
    }

    #[test]
    fn byte_layout_matches_gguf() {
        let mut b = BlockQ4_0 {
            d: f16::from_bits(0x3C00),
            qs: [0; 16],
        };
        b.qs[0] = 0xA3;
        let bytes = bytemuck::bytes_of(&b);
        assert_eq!(bytes.len(), 18);
        assert_eq!(&bytes[..3], &[0x00, 0x3C, 0xA3]);
        assert_eq!(b.code(0), 3 - 8);
        assert_eq!(b.code(16), 10 - 8);
        let q8 = BlockQ8_0 {
            d: f16::from_bits(0x1234),
            qs: [-1; QK],
        };
        assert_eq!(&bytemuck::bytes_of(&q8)[..3], &[0x34, 0x12, 0xFF]);
    }

    #[test]
    fn dequantize_q4_matches_definition() {
        let x = block(|j| ((j * 7919) % 23) as f32 - 11.0);
        let b = quantize_block_q4_0(&x);
        let mut out = [0.0f32; QK];
        dequantize_row_q4_0(&[b], &mut out);
        let d = b.d.to_f32();
        for j in 0..QK {
            assert_eq!(out[j], b.code(j) as f32 * d);
            // half a step, or a whole step where +8 is clamped to code 7
            assert!((out[j] - x[j]).abs() <= d.abs() + 1e-6);
        }
    }
}
