//! Writing GGUF files (version 3, little-endian), the counterpart of
//! [`GgufFile`](super::GgufFile).
//!
//! A file is planned first (metadata and the tensor table, so the header and
//! every tensor's offset are known), then streamed: the header, then each
//! tensor's bytes in table order. Nothing holds more than one tensor at a
//! time, so quantizing a model larger than memory works.
//!
//! ```
//! use blockq::gguf::{GgmlType, GgufFile, GgufWriter, MetadataValue};
//!
//! fn main() -> Result<(), blockq::Error> {
//!     let mut w = GgufWriter::new();
//!     w.add_metadata("general.name", MetadataValue::String("tiny".into()))?;
//!     w.add_tensor("w", GgmlType::F32, &[2, 3])?; // ne: innermost first
//!     let data: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
//!     let bytes = w.to_bytes(&[&data])?;
//!     let file = GgufFile::parse(&bytes)?;
//!     assert_eq!(file.tensor_data("w")?, &data[..]);
//!     Ok(())
//! }
//! ```

use super::{GgmlType, GgufFile, MetadataValue, TensorInfo, ValueType};
use super::{ALIGNMENT_KEY, DEFAULT_ALIGNMENT, MAGIC, MAX_DIMS};
use crate::Error;
use std::collections::HashSet;
use std::io::Write;

/// Plans a GGUF file: metadata pairs and a tensor table. Write it with
/// [`GgufWriter::write`] (streaming) or [`GgufWriter::to_bytes`].
#[derive(Clone, Debug)]
pub struct GgufWriter {
    alignment: u32,
    /// Key and encoded value: type tag (u32) then the value's bytes.
    metadata: Vec<(String, Vec<u8>)>,
    keys: HashSet<String>,
    tensors: Vec<TensorInfo>,
    names: HashSet<String>,
    /// Bytes of the data section so far (the end of the last tensor).
    data_end: u64,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self::new()
    }
}

fn invalid(reason: impl Into<String>) -> Error {
    Error::GgufWrite(reason.into())
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl GgufWriter {
    /// An empty plan (no metadata, no tensors, tensor data aligned to
    /// [`DEFAULT_ALIGNMENT`]).
    pub fn new() -> Self {
        GgufWriter {
            alignment: DEFAULT_ALIGNMENT,
            metadata: Vec::new(),
            keys: HashSet::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
            data_end: 0,
        }
    }

    /// Alignment of tensor data: [`DEFAULT_ALIGNMENT`], or the value of a
    /// `general.alignment` pair added before the tensors.
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// The tensor table as planned (offsets relative to the data section).
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    fn add_encoded(&mut self, key: &str, encoded: Vec<u8>) -> Result<(), Error> {
        if key.is_empty() {
            return Err(invalid("empty metadata key"));
        }
        if self.keys.contains(key) {
            return Err(invalid(format!("duplicate metadata key {key:?}")));
        }
        if key == ALIGNMENT_KEY {
            let a = match encoded[..] {
                [4, 0, 0, 0, a0, a1, a2, a3] => u32::from_le_bytes([a0, a1, a2, a3]),
                _ => return Err(invalid(format!("{ALIGNMENT_KEY} must be a u32"))),
            };
            if !a.is_power_of_two() {
                return Err(invalid(format!(
                    "{ALIGNMENT_KEY} = {a} is not a power of two"
                )));
            }
            if !self.tensors.is_empty() {
                return Err(invalid(format!(
                    "{ALIGNMENT_KEY} must come before the tensors"
                )));
            }
            self.alignment = a;
        }
        self.keys.insert(key.to_string());
        self.metadata.push((key.to_string(), encoded));
        Ok(())
    }

    /// Adds a metadata pair. Arrays cannot be written from a
    /// [`MetadataValue`] (it does not hold their items): copy them from a
    /// file with [`GgufWriter::copy_metadata`].
    pub fn add_metadata(&mut self, key: &str, value: MetadataValue) -> Result<(), Error> {
        use MetadataValue as V;
        let (ty, bytes): (ValueType, Vec<u8>) = match value {
            V::U8(v) => (ValueType::U8, vec![v]),
            V::I8(v) => (ValueType::I8, v.to_le_bytes().to_vec()),
            V::U16(v) => (ValueType::U16, v.to_le_bytes().to_vec()),
            V::I16(v) => (ValueType::I16, v.to_le_bytes().to_vec()),
            V::U32(v) => (ValueType::U32, v.to_le_bytes().to_vec()),
            V::I32(v) => (ValueType::I32, v.to_le_bytes().to_vec()),
            V::F32(v) => (ValueType::F32, v.to_le_bytes().to_vec()),
            V::Bool(v) => (ValueType::Bool, vec![v as u8]),
            V::String(s) => {
                let mut b = Vec::with_capacity(8 + s.len());
                put_str(&mut b, &s);
                (ValueType::String, b)
            }
            V::U64(v) => (ValueType::U64, v.to_le_bytes().to_vec()),
            V::I64(v) => (ValueType::I64, v.to_le_bytes().to_vec()),
            V::F64(v) => (ValueType::F64, v.to_le_bytes().to_vec()),
            V::Array { .. } => {
                return Err(invalid(format!(
                    "metadata {key:?}: arrays are copied from a file (copy_metadata), not written from a MetadataValue"
                )))
            }
        };
        let mut encoded = (ty as u32).to_le_bytes().to_vec();
        encoded.extend(bytes);
        self.add_encoded(key, encoded)
    }

    /// Copies the metadata pairs of `file` for which `keep(key)` is true,
    /// arrays included, byte for byte and in the file's order.
    pub fn copy_metadata<B: AsRef<[u8]>>(
        &mut self,
        file: &GgufFile<B>,
        mut keep: impl FnMut(&str) -> bool,
    ) -> Result<(), Error> {
        for (entry, raw) in file.metadata().iter().zip(file.raw_values()) {
            if keep(&entry.key) {
                self.add_encoded(&entry.key, raw.to_vec())?;
            }
        }
        Ok(())
    }

    /// Adds a tensor of `ggml_type` and dimensions `ne` (innermost first, at
    /// most [`MAX_DIMS`]) to the table; its bytes are given when writing.
    pub fn add_tensor(
        &mut self,
        name: &str,
        ggml_type: GgmlType,
        ne: &[u64],
    ) -> Result<&TensorInfo, Error> {
        if self.names.contains(name) {
            return Err(invalid(format!("duplicate tensor name {name:?}")));
        }
        if ne.len() > MAX_DIMS {
            return Err(invalid(format!(
                "tensor {name:?} has {} dimensions (at most {MAX_DIMS})",
                ne.len()
            )));
        }
        let n = ne
            .iter()
            .try_fold(1u64, |n, &d| {
                n.checked_mul(d).filter(|&n| n <= i64::MAX as u64)
            })
            .ok_or_else(|| invalid(format!("tensor {name:?}: element count overflows")))?;
        let row = ne.first().copied().unwrap_or(1);
        if row % ggml_type.block_size() != 0 {
            return Err(invalid(format!(
                "tensor {name:?} of type {ggml_type} has rows of {row} values, not a multiple of its block size {}",
                ggml_type.block_size()
            )));
        }
        let size = (n / ggml_type.block_size())
            .checked_mul(ggml_type.type_size())
            .ok_or_else(|| invalid(format!("tensor {name:?}: byte size overflows")))?;
        let offset = self
            .data_end
            .checked_next_multiple_of(self.alignment as u64)
            .ok_or_else(|| invalid("data section overflows"))?;
        self.data_end = offset
            .checked_add(size)
            .ok_or_else(|| invalid("data section overflows"))?;
        self.names.insert(name.to_string());
        self.tensors.push(TensorInfo {
            name: name.to_string(),
            ggml_type,
            ne: ne.to_vec(),
            offset,
            size,
        });
        Ok(self.tensors.last().expect("just pushed"))
    }

    /// The header: magic, version 3, counts, metadata, tensor table and the
    /// padding up to the data section.
    fn header(&self) -> Vec<u8> {
        let mut h = Vec::new();
        h.extend(MAGIC);
        h.extend(3u32.to_le_bytes());
        h.extend((self.tensors.len() as u64).to_le_bytes());
        h.extend((self.metadata.len() as u64).to_le_bytes());
        for (key, value) in &self.metadata {
            put_str(&mut h, key);
            h.extend(value);
        }
        for t in &self.tensors {
            put_str(&mut h, &t.name);
            h.extend((t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                h.extend(d.to_le_bytes());
            }
            h.extend(t.ggml_type.id().to_le_bytes());
            h.extend(t.offset.to_le_bytes());
        }
        let padded = h.len().next_multiple_of(self.alignment as usize);
        h.resize(padded, 0);
        h
    }

    /// Writes the header to `out` and returns the writer of the tensors'
    /// bytes, which takes them in table order.
    pub fn write<W: Write>(&self, mut out: W) -> Result<TensorDataWriter<'_, W>, Error> {
        let header = self.header();
        out.write_all(&header).map_err(io)?;
        Ok(TensorDataWriter {
            plan: self,
            out,
            next: 0,
            at: 0,
        })
    }

    /// The whole file in memory, with `data[i]` the bytes of tensor `i`.
    pub fn to_bytes(&self, data: &[&[u8]]) -> Result<Vec<u8>, Error> {
        let mut w = self.write(Vec::new())?;
        for d in data {
            w.tensor(d)?;
        }
        w.finish()
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Io(e.to_string())
}

/// Streams the tensors' bytes of a planned file, in table order, padding
/// between them; [`TensorDataWriter::finish`] checks that every tensor came.
#[derive(Debug)]
pub struct TensorDataWriter<'a, W: Write> {
    plan: &'a GgufWriter,
    out: W,
    next: usize,
    /// Bytes of the data section written so far.
    at: u64,
}

impl<W: Write> TensorDataWriter<'_, W> {
    /// The next tensor to write (`None` once all are written).
    pub fn next_tensor(&self) -> Option<&TensorInfo> {
        self.plan.tensors.get(self.next)
    }

    /// Writes the bytes of the next tensor, which must be its planned size.
    pub fn tensor(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let t = self
            .plan
            .tensors
            .get(self.next)
            .ok_or_else(|| invalid("more tensors written than planned"))?;
        if bytes.len() as u64 != t.size {
            return Err(invalid(format!(
                "tensor {:?} ({} {:?}) is {} bytes, got {}",
                t.name,
                t.ggml_type,
                t.ne,
                t.size,
                bytes.len()
            )));
        }
        let pad = (t.offset - self.at) as usize;
        self.out
            .write_all(&[0u8; 256][..pad.min(256)])
            .map_err(io)?;
        if pad > 256 {
            self.out.write_all(&vec![0u8; pad - 256]).map_err(io)?;
        }
        self.out.write_all(bytes).map_err(io)?;
        self.at = t.offset + t.size;
        self.next += 1;
        Ok(())
    }

    /// Flushes and returns the output; an error if a planned tensor is missing.
    pub fn finish(mut self) -> Result<W, Error> {
        if let Some(t) = self.plan.tensors.get(self.next) {
            return Err(invalid(format!(
                "tensor {:?} and {} after it were not written",
                t.name,
                self.plan.tensors.len() - self.next - 1
            )));
        }
        self.out.flush().map_err(io)?;
        Ok(self.out)
    }
}
