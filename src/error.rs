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
        /// Block index in the row (column for F16).
        block: usize,
    },
    /// A stored (GGUF) block scale or f16 weight is NaN or infinite.
    NonFiniteScale {
        /// Format of the blocks.
        quant_type: QuantType,
        /// Row of the block.
        row: usize,
        /// Block index in the row.
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
    /// A safetensors file is malformed (as reported by the `safetensors` crate).
    Safetensors(String),
    /// Opening or mapping a file failed.
    Io(String),
    /// No tensor of this name in the file.
    TensorNotFound {
        /// The name asked for.
        name: String,
    },
    /// A tensor's element type cannot be loaded into a layer.
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
            Error::NonFinite { what, index, value } => {
                write!(f, "{what}[{index}] is {value}; only finite values can be quantized")
            }
            Error::OutOfRange { quant_type, row, block } => write!(
                f,
                "row {row}, block {block}: values too large for {quant_type} (the f16 scale overflows)"
            ),
            Error::NonFiniteScale { quant_type, row, block } => write!(
                f,
                "row {row}, block {block}: stored {quant_type} scale/value is NaN or infinite"
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
            Error::Safetensors(reason) => write!(f, "invalid safetensors file: {reason}"),
            Error::Io(reason) => write!(f, "I/O error: {reason}"),
            Error::TensorNotFound { name } => write!(f, "no tensor named {name:?} in the file"),
            Error::UnsupportedTensorType { name, type_name } => write!(
                f,
                "tensor {name:?} has type {type_name}, which cannot be loaded into a layer"
            ),
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
