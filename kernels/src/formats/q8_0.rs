//! GGUF Q8_0: blocks of 32 int8 codes and an f16 scale (34 bytes).
//!
//! Packed: 8 lane groups of 4 codes stored as `q + 128` (`q ^ 0x80`), one
//! scale; the kernels undo the offset 128 exactly with the activation sums.

use super::{
    bytewise_eq, c_f32_to_i8, f16_from_f32, f16_to_f32, inverse, max_abs_bits, FormatInfo,
    PackedBlock, WeightFormat, QK,
};
use bytemuck::{Pod, Zeroable};
use half::f16;

/// GGUF `block_q8_0`: `d` (f16 scale) and 32 signed codes; value = `d * q`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub struct BlockQ8_0 {
    /// Block scale.
    pub d: f16,
    /// Signed codes, element `j` at `qs[j]`.
    pub qs: [i8; QK],
}

bytewise_eq!(BlockQ8_0);
const _: () = assert!(core::mem::size_of::<BlockQ8_0>() == 34);

impl PackedBlock for BlockQ8_0 {
    const FORMAT: WeightFormat = WeightFormat::Q8_0;
    const INFO: FormatInfo = FormatInfo {
        name: "Q8_0",
        aliases: &["Q8", "INT8"],
        ggml_type: 8,
        block_size: QK,
        block_bytes: 34,
        bits_per_value: 8,
        act_offset: Some(128),
    };
    const GROUPS: usize = 8;
    const SCALES: usize = 1;
    const OFFSET: i32 = 128;

    #[inline(always)]
    fn scales(&self) -> [f16; 2] {
        [self.d, f16::ZERO]
    }
    /// Codes `4c..4c+4` as `q + 128`.
    #[inline(always)]
    fn packed_group(&self, c: usize) -> [u8; 4] {
        let q: &[u8; QK] = bytemuck::cast_ref(&self.qs);
        let g = u32::from_ne_bytes(q[4 * c..4 * c + 4].try_into().unwrap());
        (g ^ 0x8080_8080).to_ne_bytes()
    }
    #[inline(always)]
    fn from_packed([d, _]: [f16; 2], group: impl Fn(usize) -> [u8; 4]) -> Self {
        BlockQ8_0 {
            d,
            qs: core::array::from_fn(|j| (group(j / 4)[j % 4] ^ 0x80) as i8),
        }
    }
    #[inline(always)]
    fn ucode(&self, j: usize) -> u8 {
        self.qs[j] as u8 ^ 0x80
    }
    fn padding() -> Self {
        Self::zeroed()
    }
    /// `quantize_row_q8_0_ref` for one block.
    fn quantize(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let mut amax = 0.0f32;
        for &v in x {
            let av = v.abs();
            // C's MAX(amax, av) = amax > av ? amax : av
            amax = if amax > av { amax } else { av };
        }
        let d = amax / 127.0;
        let id = inverse(d);
        // roundf (half away from zero), then C's conversion to int8_t.
        let qs = core::array::from_fn(|j| c_f32_to_i8((x[j] * id).round()));
        BlockQ8_0 {
            d: f16::from_f32(d),
            qs,
        }
    }
    /// Without NaN, llama.cpp's `MAX` chain is the largest `|v|`, an
    /// integer max of the bit patterns.
    #[inline(always)]
    fn quantize_vectorized(x: &[f32]) -> Self {
        let x: &[f32; QK] = x.try_into().expect("a block of 32 values");
        let m = max_abs_bits(x);
        if m > 0x7F80_0000 {
            return Self::quantize(x);
        }
        let d = f32::from_bits(m) / 127.0;
        let id = inverse(d);
        let mut qs = [0i8; QK];
        for (q, &v) in qs.iter_mut().zip(x) {
            *q = c_f32_to_i8((v * id).round());
        }
        BlockQ8_0 {
            d: f16_from_f32(d),
            qs,
        }
    }
    #[inline(always)]
    fn dequantize(&self, out: &mut [f32]) {
        let out: &mut [f32; QK] = out.try_into().expect("a block of 32 values");
        let d = f16_to_f32(self.d);
        for (y, &q) in out.iter_mut().zip(&self.qs) {
            *y = q as f32 * d;
        }
    }
}

super::row_functions!(
    BlockQ8_0,
    "q8_0",
    quantize_row_q8_0,
    quantize_block_q8_0,
    dequantize_row_q8_0
);

#[cfg(test)]
mod tests {
    use super::*;

    fn block(f: impl Fn(usize) -> f32) -> [f32; QK] {
        core::array::from_fn(f)
    }

    #[test]
    fn zero_block_is_all_zero() {
        let b = quantize_block_q8_0(&[0.0; QK]);
        assert_eq!(b.d.to_bits(), 0);
        assert_eq!(b.qs, [0; QK]);
    }

    #[test]
    fn ties_round_away_from_zero() {
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
    fn fixed_vector() {
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
    fn overflowing_inverse_scale_gives_code_zero() {
        // amax = 1e-39: d = amax / 127 is subnormal, 1 / d overflows to inf,
        // x * id is inf (or NaN for x = 0): llama.cpp's x86-64 build writes 0.
        let x = block(|j| match j {
            3 => 1e-39,
            4 => -5e-40,
            _ => 0.0,
        });
        let b = quantize_block_q8_0(&x);
        assert_eq!(b.d.to_bits(), 0);
        assert_eq!(b.qs, [0; QK]);
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
    }

    #[test]
    fn byte_layout_matches_gguf() {
        let q8 = BlockQ8_0 {
            d: f16::from_bits(0x1234),
            qs: [-1; QK],
        };
        assert_eq!(&bytemuck::bytes_of(&q8)[..3], &[0x34, 0x12, 0xFF]);
        assert_eq!(q8.ucode(0), 127);
    }
}
