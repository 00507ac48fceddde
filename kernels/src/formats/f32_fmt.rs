//! F32 weights (unquantized).
//!
//! Packed: `k` x 16 f32 per panel (one k-step: the 16 rows' values).

use super::{FloatElem, FormatInfo, WeightFormat};

impl FloatElem for f32 {
    const FORMAT: WeightFormat = WeightFormat::F32;
    const INFO: FormatInfo = FormatInfo {
        name: "F32",
        aliases: &["FLOAT32", "FLOAT", "FP32"],
        ggml_type: 0,
        block_size: 1,
        block_bytes: 4,
        bits_per_value: 32,
        act_offset: None,
    };
    #[inline]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline]
    fn le_to_f32(self) -> f32 {
        f32::from_bits(u32::from_le(self.to_bits()))
    }
    #[inline]
    fn from_f32_le(v: f32) -> Self {
        f32::from_bits(v.to_bits().to_le())
    }
    #[inline]
    fn is_non_finite(self) -> bool {
        !self.is_finite()
    }
}
