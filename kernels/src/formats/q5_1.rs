//! GGUF Q5_1: blocks of 32 5-bit codes, an f16 scale and an f16 minimum
//! (24 bytes); value `d * q + m`.
//!
//! Packed as Q5_0 (five groups of 5-bit codes, [`super::q5_packed_group`]) with
//! two scales (`d`, `m`); codes are unsigned, no offset.

use super::{
    bytewise_eq, c_f32_to_i8, f16_from_f32, f16_to_f32, high_bit, inverse, min_max,
    min_max_vectorized, nibble, pack_code5, q5_from_groups, q5_packing, set_code5, FormatInfo,
    PackedBlock, WeightFormat, QK,
};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// GGUF `block_q5_1`: scale `d`, minimum `m` (f16), the fifth bits `qh` and
/// 32 low nibbles; value = `d * (nibble | bit << 4) + m`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_1 {
    /// Block scale.
    pub d: f16,
    /// Block minimum.
    pub m: f16,
    /// Bit `j` of this little-endian u32 is bit 4 of element `j`'s code.
    pub qh: [u8; 4],
    /// Low nibbles: element `j` (0..16) low nibble of `qs[j]`, `j + 16` high.
    pub qs: [u8; QK / 2],
}

bytewise_eq!(BlockQ5_1);
const _: () = assert!(core::mem::size_of::<BlockQ5_1>() == 24);

impl PackedBlock for BlockQ5_1 {
    const FORMAT: WeightFormat = WeightFormat::Q5_1;
    const INFO: FormatInfo = FormatInfo {
        name: "Q5_1",
        aliases: &[],
        ggml_type: 7,
        block_size: QK,
        block_bytes: 24,
        bits_per_value: 5,
        act_offset: Some(-1),
    };
    const GROUPS: usize = 5;
    const SCALES: usize = 2;
    const OFFSET: i32 = 0;

    #[inline(always)]
    fn scales(&self) -> [f16; 2] {
        [self.d, self.m]
    }
    q5_packing!();
    #[inline(always)]
    fn from_packed([d, m]: [f16; 2], group: impl Fn(usize) -> [u8; 4]) -> Self {
        let (qs, qh) = q5_from_groups(group);
        BlockQ5_1 {
            d,
            m,
            qh: qh.to_le_bytes(),
            qs,
        }
    }
    #[inline(always)]
    fn ucode(&self, j: usize) -> u8 {
        nibble(&self.qs, j) | high_bit(&self.qh, j)
    }
    fn padding() -> Self {
        Self::zeroed()
    }
    /// `quantize_row_q5_1_ref` for one block.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let (min, max) = min_max(x);
        let d = (max - min) / 31.0;
        let id = inverse(d);
        // (uint8_t)((x - min) * id + 0.5f): the low byte of C's conversion.
        let code = |v: f32| c_f32_to_i8((v - min) * id + 0.5) as u8;
        let (mut qs, mut qh) = ([0u8; 16], 0u32);
        for (j, &v) in x.iter().enumerate() {
            set_code5(&mut qs, &mut qh, j, code(v));
        }
        BlockQ5_1 {
            d: f16::from_f32(d),
            m: f16::from_f32(min),
            qh: qh.to_le_bytes(),
            qs,
        }
    }
    #[inline(always)]
    fn quantize_vectorized(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let Some((min, max)) = min_max_vectorized(x) else {
            return Self::quantize(x);
        };
        let d = (max - min) / 31.0;
        let id = inverse(d);
        // Unclamped, as in the reference: `pack_code5` keeps the low five
        // bits, which the reference's uint8_t of the i8 has too.
        let mut codes = [0i32; QK];
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = c_f32_to_i8((v - min) * id + 0.5) as i32;
        }
        let (qs, qh) = pack_code5(&codes);
        BlockQ5_1 {
            d: f16_from_f32(d),
            m: f16_from_f32(min),
            qh: qh.to_le_bytes(),
            qs,
        }
    }
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = out.try_into().expect("a block of 32 values");
        let (d, m) = (f16_to_f32(self.d), f16_to_f32(self.m));
        let qh = u32::from_le_bytes(self.qh);
        // Elements j and j + 16 share byte j: two halves, so that it vectorizes.
        let (lo, hi) = out.split_at_mut(QK / 2);
        for (j, ((l, h), &q)) in lo.iter_mut().zip(hi).zip(&self.qs).enumerate() {
            let (bl, bh) = (((qh >> j) & 1) << 4, ((qh >> (j + 16)) & 1) << 4);
            *l = ((q & 0x0F) as u32 | bl) as f32 * d + m;
            *h = ((q >> 4) as u32 | bh) as f32 * d + m;
        }
    }
}

super::row_functions!(
    BlockQ5_1,
    "q5_1",
    quantize_row_q5_1,
    quantize_block_q5_1,
    dequantize_row_q5_1
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_span_min_to_max() {
        let x: [f32; QK] = core::array::from_fn(|j| j as f32 - 10.0);
        let b = quantize_block_q5_1(&x);
        assert_eq!((b.d.to_f32(), b.m.to_f32()), (1.0, -10.0));
        for j in 0..QK {
            assert_eq!(b.ucode(j) as usize, j);
        }
        let mut out = [0.0; QK];
        b.dequantize(&mut out);
        assert_eq!(out, x);
        assert_eq!(BlockQ5_1::from_packed(b.scales(), |c| b.packed_group(c)), b);
    }

    #[test]
    fn all_equal_block_has_zero_scale() {
        let b = quantize_block_q5_1(&[-1.25; QK]);
        assert_eq!(b.d.to_bits(), 0);
        assert_eq!(b.m.to_f32(), -1.25);
        assert_eq!((b.qs, b.qh), ([0; 16], [0; 4]));
    }
}
