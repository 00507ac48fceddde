//! GGUF Q4_1: blocks of 32 4-bit codes, an f16 scale and an f16 minimum
//! (20 bytes); value `d * q + m`.
//!
//! Packed: 4 lane groups holding the GGUF bytes `qs[4c..4c+4]` as they are
//! (codes are unsigned, no offset), two scales (`d`, `m`).

use super::{
    bytewise_eq, c_f32_to_i8, f16_from_f32, f16_to_f32, inverse, min_max, min_max_vectorized,
    nibble, nibble_group, nibbles_from_groups, pack_nibbles, FormatInfo, PackedBlock, WeightFormat,
    QK,
};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// GGUF `block_q4_1`: scale `d`, minimum `m` (f16) and 32 4-bit codes;
/// value = `d * nibble + m`. Nibble order as [`super::BlockQ4_0`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ4_1 {
    /// Block scale.
    pub d: f16,
    /// Block minimum.
    pub m: f16,
    /// Packed nibbles: element `j` (0..16) low nibble of `qs[j]`, `j + 16` high.
    pub qs: [u8; QK / 2],
}

bytewise_eq!(BlockQ4_1);
const _: () = assert!(core::mem::size_of::<BlockQ4_1>() == 20);

impl PackedBlock for BlockQ4_1 {
    const FORMAT: WeightFormat = WeightFormat::Q4_1;
    const INFO: FormatInfo = FormatInfo {
        name: "Q4_1",
        aliases: &[],
        ggml_type: 3,
        block_size: QK,
        block_bytes: 20,
        bits_per_value: 4,
        act_offset: Some(-1),
    };
    const GROUPS: usize = 4;
    const SCALES: usize = 2;
    const OFFSET: i32 = 0;

    #[inline(always)]
    fn scales(&self) -> [f16; 2] {
        [self.d, self.m]
    }
    #[inline(always)]
    fn packed_group(&self, c: usize) -> [u8; 4] {
        nibble_group(&self.qs, c)
    }
    #[inline(always)]
    fn from_packed([d, m]: [f16; 2], group: impl Fn(usize) -> [u8; 4]) -> Self {
        BlockQ4_1 {
            d,
            m,
            qs: nibbles_from_groups(&group),
        }
    }
    #[inline(always)]
    fn ucode(&self, j: usize) -> u8 {
        nibble(&self.qs, j)
    }
    fn padding() -> Self {
        Self::zeroed()
    }
    /// `quantize_row_q4_1_ref` for one block.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let (min, max) = min_max(x);
        let d = (max - min) / 15.0;
        let id = inverse(d);
        // MIN(15, (int8_t)((x - min) * id + 0.5f)), stored as uint8_t.
        let code = |v: f32| (c_f32_to_i8((v - min) * id + 0.5) as i32).min(15) as u8;
        BlockQ4_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qs: core::array::from_fn(|j| code(x[j]) | (code(x[j + 16]) << 4)),
        }
    }
    #[inline(always)]
    fn quantize_vectorized(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let Some((min, max)) = min_max_vectorized(x) else {
            return Self::quantize(x);
        };
        let d = (max - min) / 15.0;
        let id = inverse(d);
        let mut codes = [0i32; QK];
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = (c_f32_to_i8((v - min) * id + 0.5) as i32).min(15);
        }
        BlockQ4_1 {
            d: f16_from_f32(d),
            m: f16_from_f32(min),
            qs: pack_nibbles(&codes),
        }
    }
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = out.try_into().expect("a block of 32 values");
        let (d, m) = (f16_to_f32(self.d), f16_to_f32(self.m));
        let (lo, hi) = out.split_at_mut(QK / 2);
        for ((l, h), &q) in lo.iter_mut().zip(hi).zip(&self.qs) {
            *l = (q & 0x0F) as f32 * d + m;
            *h = (q >> 4) as f32 * d + m;
        }
    }
}

super::row_functions!(
    BlockQ4_1,
    "q4_1",
    quantize_row_q4_1,
    quantize_block_q4_1,
    dequantize_row_q4_1
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_span_min_to_max() {
        let x: [f32; QK] = core::array::from_fn(|j| j as f32 * 0.5 - 3.0);
        let b = quantize_block_q4_1(&x);
        assert_eq!(b.m.to_f32(), -3.0);
        assert_eq!(b.d, f16::from_f32(15.5 / 15.0));
        assert_eq!(b.ucode(0), 0);
        assert_eq!(b.ucode(31), 15);
        let mut out = [0.0; QK];
        b.dequantize(&mut out);
        for (o, v) in out.iter().zip(&x) {
            assert!((o - v).abs() <= 0.55, "{o} {v}");
        }
    }

    #[test]
    fn all_equal_block_has_zero_scale() {
        // max == min: d = 0, id = 0, every code (0 + 0.5) -> 0; value = m.
        let b = quantize_block_q4_1(&[2.5; QK]);
        assert_eq!(b.d.to_bits(), 0);
        assert_eq!(b.m.to_f32(), 2.5);
        assert_eq!(b.qs, [0; 16]);
    }

    #[test]
    fn overflowing_inverse_scale_gives_code_zero() {
        let x: [f32; QK] = core::array::from_fn(|j| if j == 1 { 3e-39 } else { 0.0 });
        let b = quantize_block_q4_1(&x);
        assert_eq!(b.qs, [0; 16]);
    }

    #[test]
    fn byte_layout_matches_gguf() {
        let b = BlockQ4_1 {
            d: f16::from_bits(0x3C00),
            m: f16::from_bits(0xBC00),
            qs: [0x5A; 16],
        };
        let bytes = bytemuck::bytes_of(&b);
        assert_eq!(&bytes[..5], &[0x00, 0x3C, 0x00, 0xBC, 0x5A]);
        assert_eq!((b.ucode(0), b.ucode(16)), (0xA, 0x5));
    }
}
