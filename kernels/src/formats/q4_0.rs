//! GGUF Q4_0: blocks of 32 4-bit codes and an f16 scale (18 bytes).
//!
//! Packed: 4 lane groups holding the GGUF bytes `qs[4c..4c+4]` as they are
//! (low nibble: element `4c+i`, high: `16+4c+i`), unsigned codes `q + 8`.

use super::{
    bytewise_eq, c_f32_to_i8, f16_from_f32, f16_to_f32, inverse, nibble, nibble_group,
    nibbles_from_groups, pack_nibbles, signed_max, signed_max_vectorized, FormatInfo, PackedBlock,
    WeightFormat, QK,
};
use bytemuck::{Pod, Zeroable};
use half::f16;

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

bytewise_eq!(BlockQ4_0);
const _: () = assert!(core::mem::size_of::<BlockQ4_0>() == 18);

impl BlockQ4_0 {
    /// The signed code (-8..=7) of element `j`.
    #[inline]
    pub fn code(&self, j: usize) -> i8 {
        nibble(&self.qs, j) as i8 - 8
    }
}

impl PackedBlock for BlockQ4_0 {
    const FORMAT: WeightFormat = WeightFormat::Q4_0;
    const INFO: FormatInfo = FormatInfo {
        name: "Q4_0",
        aliases: &["Q4", "INT4"],
        ggml_type: 2,
        block_size: QK,
        block_bytes: 18,
        bits_per_value: 4,
        act_offset: Some(8),
    };
    const GROUPS: usize = 4;
    const SCALES: usize = 1;
    const OFFSET: i32 = 8;

    #[inline(always)]
    fn scales(&self) -> [f16; 2] {
        [self.d, f16::ZERO]
    }
    #[inline(always)]
    fn packed_group(&self, c: usize) -> [u8; 4] {
        nibble_group(&self.qs, c)
    }
    #[inline(always)]
    fn from_packed([d, _]: [f16; 2], group: impl Fn(usize) -> [u8; 4]) -> Self {
        BlockQ4_0 {
            d,
            qs: nibbles_from_groups(&group),
        }
    }
    #[inline(always)]
    fn ucode(&self, j: usize) -> u8 {
        nibble(&self.qs, j)
    }
    fn padding() -> Self {
        BlockQ4_0 {
            d: f16::ZERO,
            qs: [0x88; 16],
        }
    }
    /// `quantize_row_q4_0_ref` for one block.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let d = signed_max(x) / -8.0;
        let id = inverse(d);
        // MIN(15, (int8_t)(x * id + 8.5f)), stored as uint8_t.
        let code = |v: f32| (c_f32_to_i8(v * id + 8.5) as i32).min(15) as u8;
        BlockQ4_0 {
            d: f16::from_f32(d),
            qs: core::array::from_fn(|j| code(x[j]) | (code(x[j + 16]) << 4)),
        }
    }
    #[inline(always)]
    fn quantize_vectorized(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let d = signed_max_vectorized(x) / -8.0;
        let id = inverse(d);
        let mut codes = [0i32; QK];
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = (c_f32_to_i8(v * id + 8.5) as i32).min(15);
        }
        BlockQ4_0 {
            d: f16_from_f32(d),
            qs: pack_nibbles(&codes),
        }
    }
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = out.try_into().expect("a block of 32 values");
        let d = f16_to_f32(self.d);
        let (lo, hi) = out.split_at_mut(QK / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&self.qs) {
            *l = ((q & 0x0F) as i32 - 8) as f32 * d;
            *h = ((q >> 4) as i32 - 8) as f32 * d;
        }
    }
}

super::row_functions!(
    BlockQ4_0,
    "q4_0",
    quantize_row_q4_0,
    quantize_block_q4_0,
    dequantize_row_q4_0
);

#[cfg(test)]
mod tests {
    use super::*;

    fn block(f: impl Fn(usize) -> f32) -> [f32; QK] {
        core::array::from_fn(f)
    }

    #[test]
    fn negative_max_sets_sign_of_scale() {
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
    fn positive_max_clamps_opposite_extreme_to_15() {
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
    fn first_of_equal_magnitudes_wins() {
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
    fn zero_block_codes_are_eight() {
        // d = 0.0 / -8 = -0.0: llama.cpp stores a negative-zero scale.
        let b = quantize_block_q4_0(&[0.0; QK]);
        assert_eq!(b.d.to_bits(), 0x8000);
        assert_eq!(b.qs, [0x88; 16]);
    }

    #[test]
    fn overflowing_inverse_scale_gives_code_zero() {
        // 1 / d overflows: x * id + 8.5 is inf or NaN, (int8_t) gives 0.
        let x = block(|j| if j == 9 { -2e-39 } else { 0.0 });
        let b = quantize_block_q4_0(&x);
        assert_eq!(b.qs, [0; 16]);
    }

    #[test]
    fn huge_values_overflow_the_f16_scale() {
        let x = block(|j| if j == 0 { 1e7 } else { 1.0 });
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
    }

    #[test]
    fn dequantize_matches_definition() {
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
