//! F16 weights: IEEE half precision, widened exactly to f32 by the kernels.
//!
//! Packed: `k` x 16 f16 per panel (one k-step: the 16 rows' values).

use super::{FloatElem, FormatInfo, WeightFormat};
use half::f16;

impl FloatElem for f16 {
    const FORMAT: WeightFormat = WeightFormat::F16;
    const INFO: FormatInfo = FormatInfo {
        name: "F16",
        aliases: &["FLOAT16", "HALF", "FP16"],
        ggml_type: 1,
        block_size: 1,
        block_bytes: 2,
        bits_per_value: 16,
        act_offset: None,
    };
    #[inline]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline]
    fn le_to_f32(self) -> f32 {
        f16::from_bits(u16::from_le(self.to_bits())).to_f32()
    }
    /// Round to nearest even (`GGML_FP32_TO_FP16`); overflow gives ±inf.
    #[inline]
    fn from_f32_le(v: f32) -> Self {
        f16::from_bits(f16::from_f32(v).to_bits().to_le())
    }
    /// half's slice conversion (F16C when the CPU has it; same bits).
    fn from_f32_slice_le(x: &[f32], out: &mut [Self]) {
        use half::slice::HalfFloatSliceExt;
        out.convert_from_f32_slice(x);
        if cfg!(target_endian = "big") {
            for v in out.iter_mut() {
                *v = f16::from_bits(v.to_bits().to_le());
            }
        }
    }
    #[inline]
    fn is_non_finite(self) -> bool {
        self.to_bits() & 0x7C00 == 0x7C00
    }
    /// half's slice conversion (F16C when the CPU has it; same bits).
    #[inline(always)]
    fn to_f32_slice(x: &[Self], out: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        x.convert_to_f32_slice(out);
    }
}
