//! safetensors files: F32 / F16 / BF16 weights, quantized when loaded.
//!
//! [`SafetensorsFile`] reads a safetensors header (with the `safetensors`
//! crate, which validates names, shapes and offsets) and builds a
//! [`QuantizedLinear`] from a weight tensor of shape `[out_features,
//! in_features]` and an optional bias `[out_features]`. F16 and BF16 values are
//! widened to f32 exactly, then quantized to the requested [`QuantType`] by
//! [`QuantizedLinear::try_from_linear_params`] (llama.cpp's reference
//! quantizers); a tensor asked for in its own dtype (BF16 as BF16, F16 as
//! F16, F32 as F32) is packed from the file's bytes as they are.
//!
//! ```no_run
//! use blockq::safetensors::SafetensorsFile;
//! use blockq::QuantType;
//!
//! let file = SafetensorsFile::open("model.safetensors")?; // memory-mapped
//! let layer = file.linear("layers.0.mlp.up_proj.weight", None, QuantType::Q8_0)?;
//! # Ok::<(), blockq::Error>(())
//! ```
//!
//! Available with the `safetensors` cargo feature (on by default).

use crate::gguf::{map_path, widen};
use crate::{Error, QuantType, QuantizedLinear};
pub use blockq_kernels::mmap::Mmap;
use safetensors_crate::tensor::Metadata;
use safetensors_crate::{Dtype, SafeTensors};
use std::fmt;
use std::path::Path;

// The module shares the crate's name; refer to the crate unambiguously.
use ::safetensors as safetensors_crate;

/// One tensor of a safetensors file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// Element type as named in the file (`"F32"`, `"BF16"`, `"I64"`, ...).
    pub dtype: String,
    /// Shape, outermost first (a weight is `[out_features, in_features]`).
    pub shape: Vec<usize>,
}

/// A parsed safetensors file over its bytes `B`: a memory map
/// ([`SafetensorsFile::open`]), a borrowed slice ([`SafetensorsFile::parse`])
/// or any owned buffer ([`SafetensorsFile::from_bytes`]).
pub struct SafetensorsFile<B = Mmap> {
    data: B,
    /// Bytes of the JSON header (after the 8-byte length).
    header_len: usize,
    metadata: Metadata,
}

impl<B> fmt::Debug for SafetensorsFile<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SafetensorsFile")
            .field("header_len", &self.header_len)
            .field("tensors", &self.metadata.offset_keys().len())
            .finish()
    }
}

impl<'a> SafetensorsFile<&'a [u8]> {
    /// Parses safetensors bytes held in memory (no copy of the tensor data).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::from_bytes(bytes)
    }
}

impl SafetensorsFile<Mmap> {
    /// Opens and memory-maps a safetensors file, then parses its header.
    ///
    /// The file must not be modified while the returned value is alive (see
    /// [`blockq_kernels::mmap::map_file`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_bytes(map_path(path.as_ref())?)
    }
}

impl<B: AsRef<[u8]>> SafetensorsFile<B> {
    /// Parses the safetensors file in `data`, which the result keeps.
    pub fn from_bytes(data: B) -> Result<Self, Error> {
        let (header_len, metadata) = SafeTensors::read_metadata(data.as_ref())
            .map_err(|e| Error::Safetensors(e.to_string()))?;
        Ok(SafetensorsFile {
            data,
            header_len,
            metadata,
        })
    }

    /// All tensors, in data order.
    pub fn tensors(&self) -> Vec<TensorInfo> {
        self.metadata
            .offset_keys()
            .into_iter()
            .filter_map(|name| self.tensor(&name))
            .collect()
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<TensorInfo> {
        self.metadata.info(name).map(|i| TensorInfo {
            name: name.to_string(),
            dtype: i.dtype.to_string(),
            shape: i.shape.clone(),
        })
    }

    fn view(&self, name: &str) -> Result<(Dtype, &[usize], &[u8]), Error> {
        let info = self
            .metadata
            .info(name)
            .ok_or_else(|| Error::TensorNotFound {
                name: name.to_string(),
            })?;
        let (s, e) = info.data_offsets;
        // The header was validated against the buffer length; `get` keeps this
        // panic-free regardless.
        let base = 8 + self.header_len;
        let bytes = base
            .checked_add(s)
            .zip(base.checked_add(e))
            .and_then(|(s, e)| self.data.as_ref().get(s..e))
            .ok_or_else(|| Error::Safetensors(format!("tensor {name:?}: data out of range")))?;
        Ok((info.dtype, &info.shape, bytes))
    }

    /// The raw bytes of tensor `name` (little-endian, row-major).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], Error> {
        Ok(self.view(name)?.2)
    }

    /// The values of an F32, F16 or BF16 tensor as f32 (widened exactly), in
    /// storage order.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>, Error> {
        let (dtype, _, b) = self.view(name)?;
        Ok(match dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => widen(QuantType::F16, b),
            Dtype::BF16 => widen(QuantType::BF16, b),
            other => {
                return Err(Error::UnsupportedTensorType {
                    name: name.to_string(),
                    type_name: other.to_string(),
                })
            }
        })
    }

    /// A layer from weight tensor `weight` (F32, F16 or BF16, shape
    /// `[out_features, in_features]`) and an optional bias (same dtypes, shape
    /// `[out_features]`), quantized to `quant_type`.
    ///
    /// Errors: unknown names, other dtypes ([`Error::UnsupportedTensorType`]),
    /// other ranks or sizes ([`Error::TensorShape`]), and what
    /// [`QuantizedLinear::try_from_linear_params`] rejects (NaN/Inf values,
    /// values too large for the format).
    pub fn linear(
        &self,
        weight: &str,
        bias: Option<&str>,
        quant_type: QuantType,
    ) -> Result<QuantizedLinear, Error> {
        let (dtype, shape, bytes) = self.view(weight)?;
        let &[n, k] = shape else {
            return Err(shape_error(
                weight,
                shape,
                "[out_features, in_features]".into(),
            ));
        };
        let b = match bias {
            None => None,
            Some(name) => {
                let (_, shape, _) = self.view(name)?;
                if shape != [n] {
                    return Err(shape_error(name, shape, format!("[{n}] (out_features)")));
                }
                Some(self.tensor_f32(name)?)
            }
        };
        if dtype.to_string().parse::<QuantType>() == Ok(quant_type) {
            // Stored in the requested format (F32, F16, BF16): packed from the
            // file's bytes as they are, never widened to an f32 copy.
            return QuantizedLinear::from_gguf_bytes(bytes, b.as_deref(), k, n, quant_type);
        }
        let w = self.tensor_f32(weight)?;
        QuantizedLinear::try_from_linear_params(&w, b.as_deref(), k, n, quant_type)
    }

    /// The bytes the file was parsed from.
    pub fn bytes(&self) -> &[u8] {
        self.data.as_ref()
    }
}

fn shape_error(name: &str, shape: &[usize], expected: String) -> Error {
    Error::TensorShape {
        name: name.to_string(),
        shape: shape.iter().map(|&d| d as u64).collect(),
        expected,
    }
}
