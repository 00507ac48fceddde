//! [`QuantType`]: the weight storage formats a layer can use.

use crate::Error;
use core::fmt;
use core::str::FromStr;

/// Weight storage format of a [`crate::QuantizedLinear`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantType {
    /// GGUF Q8_0: blocks of 32 int8 codes with an f16 scale (8.5 bits/value).
    Q8_0,
    /// GGUF Q4_0: blocks of 32 4-bit codes with an f16 scale (4.5 bits/value).
    Q4_0,
    /// IEEE half precision.
    F16,
    /// IEEE single precision (unquantized).
    F32,
}

/// Accepted spellings (case-insensitive), as in axonml-quant.
const SPELLINGS: &[(&str, QuantType)] = &[
    ("Q8_0", QuantType::Q8_0),
    ("Q8", QuantType::Q8_0),
    ("INT8", QuantType::Q8_0),
    ("Q4_0", QuantType::Q4_0),
    ("Q4", QuantType::Q4_0),
    ("INT4", QuantType::Q4_0),
    ("F16", QuantType::F16),
    ("FLOAT16", QuantType::F16),
    ("HALF", QuantType::F16),
    ("F32", QuantType::F32),
    ("FLOAT32", QuantType::F32),
    ("FLOAT", QuantType::F32),
];

impl QuantType {
    /// All formats.
    pub const ALL: [QuantType; 4] = [
        QuantType::Q8_0,
        QuantType::Q4_0,
        QuantType::F16,
        QuantType::F32,
    ];

    /// Values per block (32 for the block formats, 1 for floats).
    pub fn block_size(&self) -> usize {
        match self {
            QuantType::Q8_0 | QuantType::Q4_0 => 32,
            QuantType::F16 | QuantType::F32 => 1,
        }
    }

    /// Bytes per block, as stored in GGUF.
    pub fn bytes_per_block(&self) -> usize {
        match self {
            QuantType::Q8_0 => 34,
            QuantType::Q4_0 => 18,
            QuantType::F16 => 2,
            QuantType::F32 => 4,
        }
    }

    /// Nominal bits per value (scales not counted), as axonml-quant reports it.
    pub fn bits_per_value(&self) -> usize {
        match self {
            QuantType::Q8_0 => 8,
            QuantType::Q4_0 => 4,
            QuantType::F16 => 16,
            QuantType::F32 => 32,
        }
    }

    /// Whether values are stored in 32-value blocks with a shared scale.
    pub fn is_block_quantized(&self) -> bool {
        matches!(self, QuantType::Q8_0 | QuantType::Q4_0)
    }

    /// Bytes of one row of `in_features` values (blocks padded to 32 values).
    pub fn row_bytes(&self, in_features: usize) -> usize {
        in_features.div_ceil(self.block_size()) * self.bytes_per_block()
    }

    /// The canonical name ("Q8_0", "Q4_0", "F16", "F32").
    pub fn name(&self) -> &'static str {
        match self {
            QuantType::Q8_0 => "Q8_0",
            QuantType::Q4_0 => "Q4_0",
            QuantType::F16 => "F16",
            QuantType::F32 => "F32",
        }
    }

    /// The accepted spellings, for error messages.
    pub fn spellings() -> impl Iterator<Item = &'static str> {
        SPELLINGS.iter().map(|(s, _)| *s)
    }
}

impl fmt::Display for QuantType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for QuantType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let up = s.trim().to_ascii_uppercase();
        SPELLINGS
            .iter()
            .find(|(name, _)| *name == up)
            .map(|(_, t)| *t)
            .ok_or_else(|| Error::UnknownQuantType(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_axonml_spellings() {
        for (s, t) in [
            ("Q8_0", QuantType::Q8_0),
            ("q8", QuantType::Q8_0),
            ("int8", QuantType::Q8_0),
            ("Q4_0", QuantType::Q4_0),
            ("int4", QuantType::Q4_0),
            ("F16", QuantType::F16),
            ("half", QuantType::F16),
            ("float32", QuantType::F32),
            ("F32", QuantType::F32),
        ] {
            assert_eq!(s.parse::<QuantType>().unwrap(), t, "{s}");
        }
        for t in QuantType::ALL {
            assert_eq!(t.to_string().parse::<QuantType>().unwrap(), t);
        }
    }

    #[test]
    fn unknown_name_lists_accepted_ones() {
        let e = "q5_k".parse::<QuantType>().unwrap_err().to_string();
        assert!(
            e.contains("q5_k") && e.contains("Q4_0") && e.contains("HALF"),
            "{e}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(QuantType::Q8_0.row_bytes(64), 68);
        assert_eq!(QuantType::Q4_0.row_bytes(33), 36);
        assert_eq!(QuantType::F16.row_bytes(3), 6);
        assert_eq!(QuantType::Q4_0.bits_per_value(), 4);
        assert_eq!(QuantType::F32.block_size(), 1);
        assert!(QuantType::Q8_0.is_block_quantized() && !QuantType::F16.is_block_quantized());
    }
}
