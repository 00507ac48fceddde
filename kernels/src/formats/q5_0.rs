//! GGUF Q5_0: blocks of 32 5-bit codes and an f16 scale (22 bytes); value
//! `d * (q - 16)`.
//!
//! Packed: 5 lane groups of whole 5-bit codes ([`super::q5_packed_group`]:
//! groups 0-3 byte `i` element `4c + i`'s code and the top three bits of
//! element `16 + 4c + i`'s, group 4 the low two bits of the latter);
//! unsigned codes `q` in 0..=31, offset 16.

use super::{
    bytewise_eq, c_f32_to_i8, f16_from_f32, f16_to_f32, high_bit, inverse, nibble, pack_code5,
    q5_from_groups, q5_packing, set_code5, signed_max, signed_max_vectorized, FormatInfo,
    PackedBlock, WeightFormat, QK,
};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// GGUF `block_q5_0`: `d` (f16 scale), the fifth bits `qh` and 32 low
/// nibbles; value = `d * ((nibble | bit << 4) - 16)`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ5_0 {
    /// Block scale.
    pub d: f16,
    /// Bit `j` of this little-endian u32 is bit 4 of element `j`'s code.
    pub qh: [u8; 4],
    /// Low nibbles: element `j` (0..16) low nibble of `qs[j]`, `j + 16` high.
    pub qs: [u8; QK / 2],
}

bytewise_eq!(BlockQ5_0);
const _: () = assert!(core::mem::size_of::<BlockQ5_0>() == 22);

impl PackedBlock for BlockQ5_0 {
    const FORMAT: WeightFormat = WeightFormat::Q5_0;
    const INFO: FormatInfo = FormatInfo {
        name: "Q5_0",
        aliases: &["Q5", "INT5"],
        ggml_type: 6,
        block_size: QK,
        block_bytes: 22,
        bits_per_value: 5,
        act_offset: Some(16),
    };
    const GROUPS: usize = 5;
    const SCALES: usize = 1;
    const OFFSET: i32 = 16;

    #[inline(always)]
    fn scales(&self) -> [f16; 2] {
        [self.d, f16::ZERO]
    }
    q5_packing!();
    #[inline(always)]
    fn from_packed([d, _]: [f16; 2], group: impl Fn(usize) -> [u8; 4]) -> Self {
        let (qs, qh) = q5_from_groups(group);
        BlockQ5_0 {
            d,
            qh: qh.to_le_bytes(),
            qs,
        }
    }
    #[inline(always)]
    fn ucode(&self, j: usize) -> u8 {
        nibble(&self.qs, j) | high_bit(&self.qh, j)
    }
    fn padding() -> Self {
        // Code 16 (value 0) everywhere.
        BlockQ5_0 {
            d: f16::ZERO,
            qh: [0xFF; 4],
            qs: [0; 16],
        }
    }
    /// `quantize_row_q5_0_ref` for one block.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let d = signed_max(x) / -16.0;
        let id = inverse(d);
        // MIN(31, (int8_t)(x * id + 16.5f)), stored as uint8_t.
        let code = |v: f32| (c_f32_to_i8(v * id + 16.5) as i32).min(31) as u8;
        let (mut qs, mut qh) = ([0u8; 16], 0u32);
        for (j, &v) in x.iter().enumerate() {
            set_code5(&mut qs, &mut qh, j, code(v));
        }
        BlockQ5_0 {
            d: f16::from_f32(d),
            qh: qh.to_le_bytes(),
            qs,
        }
    }
    #[inline(always)]
    fn quantize_vectorized(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let d = signed_max_vectorized(x) / -16.0;
        let id = inverse(d);
        let mut codes = [0i32; QK];
        for (c, &v) in codes.iter_mut().zip(x) {
            *c = (c_f32_to_i8(v * id + 16.5) as i32).min(31);
        }
        let (qs, qh) = pack_code5(&codes);
        BlockQ5_0 {
            d: f16_from_f32(d),
            qh: qh.to_le_bytes(),
            qs,
        }
    }
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = out.try_into().expect("a block of 32 values");
        let d = f16_to_f32(self.d);
        let qh = u32::from_le_bytes(self.qh);
        // Elements j and j + 16 share byte j: two halves, so that it vectorizes.
        let (lo, hi) = out.split_at_mut(QK / 2);
        for (j, ((l, h), &q)) in lo.iter_mut().zip(hi).zip(&self.qs).enumerate() {
            let (bl, bh) = (((qh >> j) & 1) << 4, ((qh >> (j + 16)) & 1) << 4);
            *l = (((q & 0x0F) as u32 | bl) as i32 - 16) as f32 * d;
            *h = (((q >> 4) as u32 | bh) as i32 - 16) as f32 * d;
        }
    }
}

super::row_functions!(
    BlockQ5_0,
    "q5_0",
    quantize_row_q5_0,
    quantize_block_q5_0,
    dequantize_row_q5_0
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_max_maps_to_code_zero() {
        let mut x = [0.0f32; QK];
        x[20] = -16.0;
        x[2] = 15.0;
        x[30] = 1.0;
        let b = quantize_block_q5_0(&x);
        assert_eq!(b.d.to_f32(), 1.0);
        assert_eq!(b.ucode(20), 0);
        assert_eq!(b.ucode(2), 31);
        assert_eq!(b.ucode(30), 17);
        assert_eq!(b.ucode(0), 16);
        let mut out = [0.0; QK];
        b.dequantize(&mut out);
        assert_eq!((out[20], out[2], out[30], out[0]), (-16.0, 15.0, 1.0, 0.0));
    }

    #[test]
    fn high_bits_sit_in_qh_by_element_and_in_the_packed_codes() {
        let mut x = [0.0f32; QK];
        x[0] = -16.0; // d = 1: element 0 code 0, others code 16 (bit 4 set)
        let b = quantize_block_q5_0(&x);
        assert_eq!(u32::from_le_bytes(b.qh), !1u32);
        assert_eq!(b.qs, [0; 16]);
        // Packed: low codes 16 (0x10; element 0: 0) under bits 2..5 of the
        // high codes 16 (0b100 << 5); their low two bits, group 4, are 0.
        assert_eq!(b.packed_group(0), [0x80, 0x90, 0x90, 0x90]);
        assert_eq!(b.packed_group(3), [0x90; 4]);
        assert_eq!(b.packed_group(4), [0; 4]);
        assert_eq!(BlockQ5_0::from_packed(b.scales(), |c| b.packed_group(c)), b);
    }

    #[test]
    fn overflowing_inverse_scale_gives_code_zero() {
        let x: [f32; QK] = core::array::from_fn(|j| if j == 17 { 1e-39 } else { 0.0 });
        let b = quantize_block_q5_0(&x);
        assert_eq!((b.qs, b.qh), ([0; 16], [0; 4]));
    }
}
