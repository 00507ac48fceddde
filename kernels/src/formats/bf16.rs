//! BF16 weights: the upper 16 bits of an f32, widened exactly by the kernels
//! (`bits << 16`).
//!
//! Packed: `k` x 16 bf16 per panel, as F16. Conversion from f32 is ggml's
//! `ggml_compute_fp32_to_bf16`: round to nearest even on the bit pattern,
//! NaN made quiet (`| 0x40`) without rounding; subnormals are kept.

use super::{FloatElem, FormatInfo, WeightFormat};
use half::bf16;

/// ggml's f32 -> bf16 rounding (bit pattern).
#[inline]
pub fn f32_to_bf16_bits(v: f32) -> u16 {
    let u = v.to_bits();
    if u & 0x7FFF_FFFF > 0x7F80_0000 {
        // NaN: truncate and force quiet.
        ((u >> 16) | 64) as u16
    } else {
        (u.wrapping_add(0x7FFF + ((u >> 16) & 1)) >> 16) as u16
    }
}

impl FloatElem for bf16 {
    const FORMAT: WeightFormat = WeightFormat::BF16;
    const INFO: FormatInfo = FormatInfo {
        name: "BF16",
        aliases: &["BFLOAT16"],
        ggml_type: 30,
        block_size: 1,
        block_bytes: 2,
        bits_per_value: 16,
        act_offset: None,
    };
    #[inline]
    fn to_f32(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    #[inline]
    fn le_to_f32(self) -> f32 {
        f32::from_bits((u16::from_le(self.to_bits()) as u32) << 16)
    }
    #[inline]
    fn from_f32_le(v: f32) -> Self {
        bf16::from_bits(f32_to_bf16_bits(v).to_le())
    }
    #[inline]
    fn is_non_finite(self) -> bool {
        self.to_bits() & 0x7F80 == 0x7F80
    }
}

/// ggml's f32 -> bf16 conversion of a row (`x.len() == out.len()`).
pub fn quantize_row_bf16(x: &[f32], out: &mut [bf16]) {
    assert_eq!(x.len(), out.len(), "quantize_row_bf16: length mismatch");
    if cfg!(target_endian = "little") {
        // Little-endian bytes are the native ones.
        return crate::load::floats_from_f32(x, out);
    }
    for (o, &v) in out.iter_mut().zip(x) {
        *o = bf16::from_bits(f32_to_bf16_bits(v));
    }
}

/// bf16 -> f32 (exact) of a row (`x.len() == out.len()`).
pub fn dequantize_row_bf16(x: &[bf16], out: &mut [f32]) {
    assert_eq!(x.len(), out.len(), "dequantize_row_bf16: length mismatch");
    crate::load::floats_to_f32(x, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_to_nearest_even_and_quiets_nan() {
        // Halfway between 1.0 (0x3F80) and the next bf16: ties to even (down).
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3F80_8000)), 0x3F80);
        // Halfway above an odd mantissa: up.
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3F81_8000)), 0x3F82);
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x3F80_8001)), 0x3F81);
        // Signalling NaN becomes quiet; the largest finite values round to inf.
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x7F80_0001)), 0x7FC0);
        assert_eq!(f32_to_bf16_bits(f32::MAX), 0x7F80);
        // Subnormals are rounded like any other value.
        assert_eq!(f32_to_bf16_bits(f32::from_bits(0x0000_8001)), 0x0001);
        assert_eq!(
            bf16::from_bits(0x4049).to_f32(),
            f32::from_bits(0x4049_0000)
        );
    }
}
