//! [`QuantType`]: the weight storage formats a layer can use.
//!
//! It is the kernels crate's [`WeightFormat`](blockq_kernels::WeightFormat),
//! whose table ([`FormatInfo`](blockq_kernels::FormatInfo) per format) the
//! layer, the loaders and the tests read: ggml names, GGML type ids, block
//! sizes, axonml-quant's spellings (`"Q8"`, `"INT4"`, `"HALF"`, ...).
//! `"q4_1".parse::<QuantType>()` accepts every spelling case-insensitively;
//! its error converts into [`crate::Error::UnknownQuantType`].

/// Weight storage format of a [`crate::QuantizedLinear`].
pub use blockq_kernels::WeightFormat as QuantType;

impl From<blockq_kernels::UnknownFormat> for crate::Error {
    fn from(e: blockq_kernels::UnknownFormat) -> Self {
        crate::Error::UnknownQuantType(e.0)
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
            ("q4_1", QuantType::Q4_1),
            ("Q5_0", QuantType::Q5_0),
            ("q5_1", QuantType::Q5_1),
            ("Q4_K", QuantType::Q4_K),
            ("q4_k", QuantType::Q4_K),
            ("Q5_K", QuantType::Q5_K),
            ("q6_k", QuantType::Q6_K),
            ("F16", QuantType::F16),
            ("half", QuantType::F16),
            ("bf16", QuantType::BF16),
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
        let e = crate::Error::from("q3_k".parse::<QuantType>().unwrap_err()).to_string();
        assert!(
            e.contains("q3_k")
                && e.contains("Q4_0")
                && e.contains("Q6_K")
                && e.contains("HALF")
                && e.contains("BF16"),
            "{e}"
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(QuantType::Q8_0.row_bytes(64), 68);
        assert_eq!(QuantType::Q4_0.row_bytes(33), 36);
        assert_eq!(QuantType::Q4_1.row_bytes(64), 40);
        assert_eq!(QuantType::Q5_0.row_bytes(64), 44);
        assert_eq!(QuantType::Q5_1.row_bytes(32), 24);
        assert_eq!(QuantType::Q4_K.row_bytes(512), 288);
        assert_eq!(QuantType::Q5_K.row_bytes(300), 352);
        assert_eq!(QuantType::Q6_K.row_bytes(256), 210);
        assert_eq!(QuantType::Q6_K.bits_per_value(), 6);
        assert_eq!(QuantType::Q4_K.compression_ratio(), 1024.0 / 144.0);
        assert_eq!(QuantType::F16.row_bytes(3), 6);
        assert_eq!(QuantType::BF16.row_bytes(3), 6);
        assert_eq!(QuantType::Q4_0.bits_per_value(), 4);
        assert_eq!(QuantType::Q5_1.bits_per_value(), 5);
        assert_eq!(QuantType::F32.block_size(), 1);
        assert_eq!(QuantType::Q4_1.compression_ratio(), 6.4);
        assert!(QuantType::Q8_0.is_block_quantized() && !QuantType::F16.is_block_quantized());
        assert!(QuantType::Q5_1.is_block_quantized() && !QuantType::BF16.is_block_quantized());
    }
}
