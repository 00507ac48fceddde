//! The error type of every fallible blockq call.

use crate::{Isa, QuantType};
use core::fmt;

/// What went wrong. Seed-compatible (panicking) signatures panic with this
/// error's message.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// A buffer has the wrong length for the shape given.
    LengthMismatch {
        /// Which buffer.
        what: &'static str,
        /// Length the shape requires.
        expected: usize,
        /// Length passed.
        actual: usize,
    },
    /// A dimension is zero.
    ZeroSize {
        /// Which dimension.
        what: &'static str,
    },
    /// A product of dimensions does not fit in `usize`.
    SizeOverflow {
        /// Which product.
        what: &'static str,
    },
    /// A weight or bias value is NaN or infinite.
    NonFinite {
        /// Which buffer.
        what: &'static str,
        /// Index of the first bad value.
        index: usize,
        /// The value.
        value: f32,
    },
    /// A value is too large for the format: its block scale (or the f16 value)
    /// would overflow f16.
    OutOfRange {
        /// Target format.
        quant_type: QuantType,
        /// Output row (weight row) of the value.
        row: usize,
        /// Block index in the row (column for float formats).
        block: usize,
    },
    /// A stored (GGUF) block scale or f16 weight is NaN or infinite.
    NonFiniteScale {
        /// Format of the blocks.
        quant_type: QuantType,
        /// Row of the block (or value).
        row: usize,
        /// Block index in the row (column for float formats).
        block: usize,
    },
    /// A quantization-type name that blockq does not know.
    UnknownQuantType(String),
    /// An ISA name that blockq does not know (e.g. in `BLOCKQ_ISA`).
    UnknownIsa(String),
    /// The ISA asked for cannot run here.
    IsaUnavailable {
        /// The ISA asked for.
        isa: Isa,
        /// Why (missing CPU features or other architecture).
        reason: String,
    },
    /// A GGUF file is malformed, truncated or inconsistent.
    Gguf {
        /// Byte offset in the file where the problem was found.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A GGUF file cannot be written as planned ([`crate::gguf::GgufWriter`]):
    /// a duplicate or invalid key or name, a shape its type cannot hold, tensor
    /// bytes of the wrong size or missing.
    GgufWrite(String),
    /// A safetensors file is malformed (as reported by the `safetensors` crate).
    Safetensors(String),
    /// Opening or mapping a file failed.
    Io(String),
    /// No tensor of this name in the file.
    TensorNotFound {
        /// The name asked for.
        name: String,
    },
    /// A tensor's element type is not one the call accepts (a layer weight, a
    /// bias, values read as f32).
    UnsupportedTensorType {
        /// Tensor name.
        name: String,
        /// Its type, e.g. `Q4_K (type 12)` for GGUF or `I64` for safetensors.
        type_name: String,
    },
    /// A tensor's shape does not fit its role (weight or bias).
    TensorShape {
        /// Tensor name.
        name: String,
        /// Its shape as stored in the file (GGUF: `ne`, innermost first;
        /// safetensors: outermost first).
        shape: Vec<u64>,
        /// What was expected.
        expected: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::LengthMismatch { what, expected, actual } => {
                write!(f, "{what}: expected length {expected}, got {actual}")
            }
            Error::ZeroSize { what } => write!(f, "{what} must be greater than zero"),
            Error::SizeOverflow { what } => write!(f, "{what} overflows usize"),
            Error::NonFinite { what, index, value } => write!(
                f,
                "{what}[{index}] is {value}: only finite weights and biases are accepted"
            ),
            // For F16 / F32 `block` is the column of the value.
            Error::OutOfRange { quant_type, row, block } if !quant_type.is_block_quantized() => {
                write!(
                    f,
                    "value at row {row}, column {block} is too large for {quant_type} (it rounds to infinity)"
                )
            }
            Error::OutOfRange { quant_type, row, block } => write!(
                f,
                "row {row}, block {block}: values too large for {quant_type} (the f16 scale overflows)"
            ),
            Error::NonFiniteScale { quant_type, row, block } if !quant_type.is_block_quantized() => {
                write!(
                    f,
                    "value at row {row}, column {block}: stored {quant_type} value is NaN or infinite"
                )
            }
            Error::NonFiniteScale { quant_type, row, block } => write!(
                f,
                "row {row}, block {block}: stored {quant_type} scale is NaN or infinite"
            ),
            Error::UnknownQuantType(s) => {
                let names: Vec<&str> = QuantType::spellings().collect();
                write!(f, "unknown quantization type {s:?}; accepted: {}", names.join(", "))
            }
            Error::UnknownIsa(s) => {
                let names: Vec<&str> = Isa::ALL.iter().map(|i| i.name()).collect();
                write!(f, "unknown ISA {s:?}; accepted: {}", names.join(", "))
            }
            Error::IsaUnavailable { isa, reason } => write!(f, "ISA {isa} unavailable: {reason}"),
            Error::Gguf { offset, reason } => {
                write!(f, "invalid GGUF file at byte {offset}: {reason}")
            }
            Error::GgufWrite(reason) => write!(f, "cannot write the GGUF file: {reason}"),
            Error::Safetensors(reason) => write!(f, "invalid safetensors file: {reason}"),
            Error::Io(reason) => write!(f, "I/O error: {reason}"),
            Error::TensorNotFound { name } => write!(f, "no tensor named {name:?} in the file"),
            Error::UnsupportedTensorType { name, type_name } => {
                let formats: Vec<&str> = QuantType::ALL.iter().map(|q| q.name()).collect();
                write!(
                    f,
                    "tensor {name:?} has type {type_name}; layer weights can be {}, values \
                     read as f32 (biases, safetensors weights, tensor_f32) F32, F16 or BF16",
                    formats.join(", ")
                )
            }
            Error::TensorShape {
                name,
                shape,
                expected,
            } => write!(f, "tensor {name:?} has shape {shape:?}; expected {expected}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<blockq_kernels::IsaError> for Error {
    fn from(e: blockq_kernels::IsaError) -> Self {
        let isa = match e {
            blockq_kernels::IsaError::NotSupported(i)
            | blockq_kernels::IsaError::NotCompiled(i) => i,
        };
        Error::IsaUnavailable {
            isa,
            reason: e.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_name_columns_for_element_formats_and_blocks_for_block_formats() {
        let (row, block) = (3, 7);
        for quant_type in QuantType::ALL {
            for e in [
                Error::OutOfRange {
                    quant_type,
                    row,
                    block,
                },
                Error::NonFiniteScale {
                    quant_type,
                    row,
                    block,
                },
            ] {
                let s = e.to_string();
                let want = if quant_type.is_block_quantized() {
                    "row 3, block 7:"
                } else {
                    "value at row 3, column 7"
                };
                assert!(s.starts_with(want), "{s}");
            }
        }
    }
}
