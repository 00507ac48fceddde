//! GGUF files (llama.cpp's model format): tensor listing and layer loading.
//!
//! [`GgufFile`] parses a GGUF header (versions 2 and 3, little-endian), keeps
//! its metadata and tensor table, and builds a [`QuantizedLinear`] from a named
//! weight tensor of any [`QuantType`] (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, F16,
//! BF16, F32) **without re-quantizing**: the
//! layer holds the file's blocks, so [`QuantizedLinear::dequantize_weights`]
//! returns exactly what llama.cpp dequantizes.
//!
//! ```no_run
//! use blockq::gguf::GgufFile;
//!
//! let file = GgufFile::open("model.gguf")?; // memory-mapped
//! for t in file.tensors() {
//!     println!("{} {} ne={:?}", t.name, t.ggml_type, t.ne);
//! }
//! let layer = file.linear("blk.0.attn_q.weight", None)?;
//! # Ok::<(), blockq::Error>(())
//! ```
//!
//! # Layout (what is parsed)
//! `"GGUF"`, `version: u32`, `tensor_count: u64`, `kv_count: u64`; `kv_count`
//! metadata pairs (`key: string`, `type: u32`, value); `tensor_count` tensor
//! infos (`name: string`, `n_dims: u32`, `ne: [u64; n_dims]`, `type: u32`,
//! `offset: u64`); padding to the alignment; the data section. Strings are a
//! `u64` length and UTF-8 bytes. `ne[0]` is the innermost (contiguous)
//! dimension: for a weight matrix it is the row length, `in_features`.
//!
//! # Robustness
//! Every count, length and offset is checked against the bytes that remain,
//! with checked arithmetic, before anything is read or allocated: a truncated
//! or hostile file gives [`Error::Gguf`] (with the byte offset of the problem),
//! never a panic, an out-of-bounds read or an allocation larger than the input
//! warrants. Tensor data must lie inside the file, at aligned offsets, without
//! overlapping other tensors.

use crate::{Error, QuantType, QuantizedLinear};
pub use blockq_kernels::mmap::Mmap;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::Path;

mod writer;
pub use writer::{GgufWriter, TensorDataWriter};

/// The four bytes every GGUF file starts with.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of tensor data when the file has no `general.alignment` key.
pub const DEFAULT_ALIGNMENT: u32 = 32;
/// Metadata key (of type u32) that sets the alignment of tensor data.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Most dimensions a GGUF tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of metadata arrays accepted (arrays of arrays of ...).
/// Bounds the parser's recursion; real files nest at most once.
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Smallest possible encoding of one metadata pair: key length (8), type (4),
/// a one-byte value. Bounds the pair count by the bytes left.
const MIN_KV_BYTES: u64 = 13;
/// Smallest possible tensor info: name length (8), n_dims (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 24;

/// `(id, name, values per block, bytes per block)` of every ggml type a GGUF
/// file may hold (ids 4, 5, 31-33 and 36-38 were removed from the format).
const GGML_TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

/// The element type of a GGUF tensor (a ggml type), one of the ids ggml
/// defines. Displayed as `"Q4_K (type 12)"`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GgmlType(u32);

impl GgmlType {
    /// IEEE single precision.
    pub const F32: GgmlType = GgmlType(0);
    /// IEEE half precision.
    pub const F16: GgmlType = GgmlType(1);
    /// 32-value blocks of 4-bit codes and an f16 scale.
    pub const Q4_0: GgmlType = GgmlType(2);
    /// 32-value blocks of 8-bit codes and an f16 scale.
    pub const Q8_0: GgmlType = GgmlType(8);
    /// bfloat16.
    pub const BF16: GgmlType = GgmlType(30);

    /// The type with this id, if ggml defines it.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        GGML_TYPES.iter().any(|t| t.0 == id).then_some(GgmlType(id))
    }

    fn entry(self) -> &'static (u32, &'static str, u64, u64) {
        // Only `from_id` and the constants make values, all from the table.
        GGML_TYPES
            .iter()
            .find(|t| t.0 == self.0)
            .expect("GgmlType values come from the table")
    }

    /// The numeric id stored in the file.
    pub fn id(self) -> u32 {
        self.0
    }

    /// ggml's name of the type (`"Q8_0"`, `"Q4_K"`, ...).
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// Values per block (1 for plain element types).
    pub fn block_size(self) -> u64 {
        self.entry().2
    }

    /// Bytes per block.
    pub fn type_size(self) -> u64 {
        self.entry().3
    }

    /// The blockq format with the same byte encoding, for the types a layer
    /// can be built from (every [`QuantType`]).
    pub fn quant_type(self) -> Option<QuantType> {
        QuantType::from_ggml_type(self.0)
    }
}

impl From<QuantType> for GgmlType {
    fn from(q: QuantType) -> GgmlType {
        GgmlType(q.ggml_type())
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (type {})", self.name(), self.0)
    }
}

impl fmt::Debug for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Type tag of a metadata value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `u8` (tag 0).
    U8 = 0,
    /// `i8` (tag 1).
    I8 = 1,
    /// `u16` (tag 2).
    U16 = 2,
    /// `i16` (tag 3).
    I16 = 3,
    /// `u32` (tag 4).
    U32 = 4,
    /// `i32` (tag 5).
    I32 = 5,
    /// `f32` (tag 6).
    F32 = 6,
    /// One byte, non-zero meaning true (tag 7).
    Bool = 7,
    /// Length-prefixed UTF-8 (tag 8).
    String = 8,
    /// Item type, length, items (tag 9).
    Array = 9,
    /// `u64` (tag 10).
    U64 = 10,
    /// `i64` (tag 11).
    I64 = 11,
    /// `f64` (tag 12).
    F64 = 12,
}

impl ValueType {
    /// The type with this tag.
    pub fn from_tag(tag: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match tag {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes of one value, for fixed-size types.
    pub fn fixed_size(self) -> Option<u64> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            String | Array => None,
        }
    }
}

/// A metadata value. Arrays are described, not read: their items can be
/// millions of tokens, which a layer loader does not need.
#[derive(Clone, Debug, PartialEq)]
pub enum MetadataValue {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// A string (invalid UTF-8 replaced by U+FFFD).
    String(String),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
    /// An array, validated and skipped.
    Array {
        /// Type of the items.
        item_type: ValueType,
        /// Number of items.
        len: u64,
        /// File offset of the first item.
        offset: u64,
    },
}

/// One metadata key-value pair.
#[derive(Clone, Debug, PartialEq)]
pub struct MetadataEntry {
    /// The key, e.g. `general.architecture`.
    pub key: String,
    /// The value.
    pub value: MetadataValue,
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Dimensions, innermost first (`ne[0]` is the row length).
    pub ne: Vec<u64>,
    /// Offset of the data from the start of the data section.
    pub offset: u64,
    /// Bytes of data.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements (product of `ne`; 1 for zero dimensions).
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time to fit in i64.
        self.ne.iter().product()
    }
}

/// A parsed GGUF file over its bytes `B`: a memory map ([`GgufFile::open`]),
/// a borrowed slice ([`GgufFile::parse`]) or any owned buffer
/// ([`GgufFile::from_bytes`]).
pub struct GgufFile<B = Mmap> {
    data: B,
    version: u32,
    alignment: u32,
    data_offset: u64,
    metadata: Vec<MetadataEntry>,
    /// Per metadata pair: where its encoded value (type tag and value) lies.
    raw_values: Vec<(usize, usize)>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
}

impl<B> fmt::Debug for GgufFile<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

impl<'a> GgufFile<&'a [u8]> {
    /// Parses GGUF bytes held in memory (no copy of the tensor data).
    pub fn parse(bytes: &'a [u8]) -> Result<Self, Error> {
        Self::from_bytes(bytes)
    }
}

impl GgufFile<Mmap> {
    /// Opens and memory-maps a GGUF file, then parses its header.
    ///
    /// The file must not be modified while the returned value is alive (see
    /// [`blockq_kernels::mmap::map_file`]).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::from_bytes(map_path(path.as_ref())?)
    }
}

impl<B: AsRef<[u8]>> GgufFile<B> {
    /// Parses the GGUF file in `data`, which the result keeps.
    pub fn from_bytes(data: B) -> Result<Self, Error> {
        let header = parse_header(data.as_ref())?;
        Ok(GgufFile {
            data,
            version: header.version,
            alignment: header.alignment,
            data_offset: header.data_offset,
            metadata: header.metadata,
            raw_values: header.raw_values,
            by_name: header
                .tensors
                .iter()
                .enumerate()
                .map(|(i, t)| (t.name.clone(), i))
                .collect(),
            tensors: header.tensors,
        })
    }

    /// The encoded values (type tag and value, arrays whole) of the
    /// metadata pairs, in [`Self::metadata`]'s order.
    pub(crate) fn raw_values(&self) -> impl Iterator<Item = &[u8]> {
        let bytes = self.data.as_ref();
        self.raw_values.iter().map(move |&(a, b)| &bytes[a..b])
    }

    /// Format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of tensor data (`general.alignment`, default 32).
    pub fn alignment(&self) -> u32 {
        self.alignment
    }

    /// File offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The metadata pairs, in file order.
    pub fn metadata(&self) -> &[MetadataEntry] {
        &self.metadata
    }

    /// The value of metadata key `key`.
    pub fn get(&self, key: &str) -> Option<&MetadataValue> {
        self.metadata
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.value)
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.tensors[i])
    }

    fn find(&self, name: &str) -> Result<&TensorInfo, Error> {
        self.tensor(name).ok_or_else(|| Error::TensorNotFound {
            name: name.to_string(),
        })
    }

    fn bytes_of(&self, t: &TensorInfo) -> &[u8] {
        // Parsing checked data_offset + offset + size <= file length.
        let start = (self.data_offset + t.offset) as usize;
        &self.data.as_ref()[start..start + t.size as usize]
    }

    /// The raw bytes of tensor `name`, as stored (little-endian).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], Error> {
        Ok(self.bytes_of(self.find(name)?))
    }

    /// The values of an F32, F16 or BF16 tensor as f32 (widened exactly), in
    /// storage order.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>, Error> {
        let t = self.find(name)?;
        let b = self.bytes_of(t);
        Ok(match t.ggml_type {
            GgmlType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            GgmlType::F16 => widen(QuantType::F16, b),
            GgmlType::BF16 => widen(QuantType::BF16, b),
            other => return Err(unsupported(name, other)),
        })
    }

    /// A layer from weight tensor `weight` (any [`QuantType`], shape
    /// `ne = [in_features, out_features]`) and an optional bias tensor (F32,
    /// F16 or BF16, `ne = [out_features]`). The weight bytes are used as they
    /// are: no re-quantization.
    ///
    /// Errors: unknown names, other tensor types ([`Error::UnsupportedTensorType`]
    /// names the type), shapes that do not fit ([`Error::TensorShape`]), and
    /// what [`QuantizedLinear::from_gguf_bytes`] rejects (e.g. NaN scales).
    pub fn linear(&self, weight: &str, bias: Option<&str>) -> Result<QuantizedLinear, Error> {
        let w = self.find(weight)?;
        let quant_type = w
            .ggml_type
            .quant_type()
            .ok_or_else(|| unsupported(weight, w.ggml_type))?;
        if w.ne.len() < 2 || w.ne[2..].iter().any(|&d| d != 1) {
            return Err(Error::TensorShape {
                name: weight.to_string(),
                shape: w.ne.clone(),
                expected: "a matrix, ne = [in_features, out_features]".into(),
            });
        }
        let dim = |d: u64| {
            usize::try_from(d).map_err(|_| Error::SizeOverflow {
                what: "tensor dimension",
            })
        };
        let (k, n) = (dim(w.ne[0])?, dim(w.ne[1])?);
        let bias = match bias {
            None => None,
            Some(b) => {
                let t = self.find(b)?;
                if t.ne.first() != Some(&w.ne[1]) || t.ne[1..].iter().any(|&d| d != 1) {
                    return Err(Error::TensorShape {
                        name: b.to_string(),
                        shape: t.ne.clone(),
                        expected: format!("a vector of out_features = {n} values"),
                    });
                }
                Some(self.tensor_f32(b)?)
            }
        };
        QuantizedLinear::from_gguf_bytes(self.bytes_of(w), bias.as_deref(), k, n, quant_type)
    }

    /// The bytes the file was parsed from.
    pub fn bytes(&self) -> &[u8] {
        self.data.as_ref()
    }
}

/// Opens and maps `path` read-only (see [`blockq_kernels::mmap::map_file`]).
pub(crate) fn map_path(path: &Path) -> Result<Mmap, Error> {
    let io = |e: std::io::Error| Error::Io(format!("{}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(io)?;
    blockq_kernels::mmap::map_file(&file).map_err(io)
}

fn unsupported(name: &str, t: GgmlType) -> Error {
    Error::UnsupportedTensorType {
        name: name.to_string(),
        type_name: t.to_string(),
    }
}

struct Header {
    version: u32,
    alignment: u32,
    data_offset: u64,
    metadata: Vec<MetadataEntry>,
    raw_values: Vec<(usize, usize)>,
    tensors: Vec<TensorInfo>,
}

/// A bounds-checked little-endian reader over the file bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err_at(pos: usize, reason: impl Into<String>) -> Error {
        Error::Gguf {
            offset: pos as u64,
            reason: reason.into(),
        }
    }

    fn err(&self, reason: impl Into<String>) -> Error {
        Self::err_at(self.pos, reason)
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "{what} needs {n} bytes but only {} remain (file truncated?)",
                self.remaining()
            )));
        }
        let s = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], Error> {
        let b = self.bytes(N as u64, what)?;
        Ok(b.try_into().expect("length checked"))
    }

    fn u32(&mut self, what: &str) -> Result<u32, Error> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &str) -> Result<u64, Error> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A `u64` length and that many bytes.
    fn string(&mut self, what: &str) -> Result<&'a [u8], Error> {
        let len = self.u64(what)?;
        self.bytes(len, what)
    }

    /// A count read from the file, refused if `count * min_bytes` items could
    /// not fit in the bytes that remain.
    fn count(&mut self, what: &str, min_bytes: u64) -> Result<u64, Error> {
        let at = self.pos;
        let n = self.u64(what)?;
        if n > self.remaining() / min_bytes {
            return Err(Self::err_at(
                at,
                format!(
                    "{what} {n} cannot fit in the {} bytes that remain ({min_bytes} bytes each at least)",
                    self.remaining()
                ),
            ));
        }
        Ok(n)
    }

    fn value_type(&mut self, what: &str) -> Result<ValueType, Error> {
        let at = self.pos;
        let tag = self.u32(what)?;
        ValueType::from_tag(tag)
            .ok_or_else(|| Self::err_at(at, format!("{what}: unknown value type {tag}")))
    }

    fn value(&mut self, ty: ValueType) -> Result<MetadataValue, Error> {
        use MetadataValue as V;
        const WHAT: &str = "metadata value";
        Ok(match ty {
            ValueType::U8 => V::U8(self.array::<1>(WHAT)?[0]),
            ValueType::I8 => V::I8(i8::from_le_bytes(self.array(WHAT)?)),
            ValueType::U16 => V::U16(u16::from_le_bytes(self.array(WHAT)?)),
            ValueType::I16 => V::I16(i16::from_le_bytes(self.array(WHAT)?)),
            ValueType::U32 => V::U32(u32::from_le_bytes(self.array(WHAT)?)),
            ValueType::I32 => V::I32(i32::from_le_bytes(self.array(WHAT)?)),
            ValueType::F32 => V::F32(f32::from_le_bytes(self.array(WHAT)?)),
            ValueType::Bool => V::Bool(self.array::<1>(WHAT)?[0] != 0),
            ValueType::String => V::String(String::from_utf8_lossy(self.string(WHAT)?).into()),
            ValueType::U64 => V::U64(u64::from_le_bytes(self.array(WHAT)?)),
            ValueType::I64 => V::I64(i64::from_le_bytes(self.array(WHAT)?)),
            ValueType::F64 => V::F64(f64::from_le_bytes(self.array(WHAT)?)),
            ValueType::Array => {
                let (item_type, len) = self.array_header()?;
                let offset = self.pos as u64;
                self.skip_items(item_type, len, 1)?;
                V::Array {
                    item_type,
                    len,
                    offset,
                }
            }
        })
    }

    /// Item type and length of an array; the length is refused if that many
    /// items of the smallest encoding of the type could not fit.
    fn array_header(&mut self) -> Result<(ValueType, u64), Error> {
        let item_type = self.value_type("array item type")?;
        let min = match item_type {
            ValueType::String => 8,
            ValueType::Array => 12,
            t => t.fixed_size().expect("fixed-size type"),
        };
        let len = self.count("array length", min)?;
        Ok((item_type, len))
    }

    /// Skips `len` items of `item_type`, checking every length inside.
    fn skip_items(&mut self, item_type: ValueType, len: u64, depth: usize) -> Result<(), Error> {
        match item_type {
            ValueType::String => {
                for _ in 0..len {
                    self.string("array string")?;
                }
            }
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "metadata arrays nested more than {MAX_ARRAY_DEPTH} deep"
                    )));
                }
                for _ in 0..len {
                    let (t, n) = self.array_header()?;
                    self.skip_items(t, n, depth + 1)?;
                }
            }
            t => {
                // array_header checked len * size <= remaining.
                let size = t.fixed_size().expect("fixed-size type");
                self.bytes(len * size, "array items")?;
            }
        }
        Ok(())
    }
}

/// Initial capacity for `n` parsed items: counts are already bounded by the
/// bytes left, but an entry in memory is larger than its smallest encoding, so
/// memory grows with the entries actually parsed rather than the count claimed.
fn prealloc(n: u64) -> usize {
    n.min(1024) as usize
}

fn utf8(raw: &[u8], at: usize, what: &str) -> Result<String, Error> {
    std::str::from_utf8(raw)
        .map(str::to_string)
        .map_err(|e| Reader::err_at(at, format!("{what} is not valid UTF-8 ({e})")))
}

fn parse_header(buf: &[u8]) -> Result<Header, Error> {
    let mut r = Reader { buf, pos: 0 };
    let magic = r.array::<4>("magic")?;
    if magic != MAGIC {
        return Err(Reader::err_at(
            0,
            format!("not a GGUF file (magic {magic:02x?}, expected \"GGUF\")"),
        ));
    }
    let version = r.u32("version")?;
    match version {
        2 | 3 => {}
        1 => {
            return Err(Reader::err_at(
                4,
                "GGUF version 1 (32-bit counts) is not supported; convert the file to version 3",
            ))
        }
        v if v & 0xFFFF == 0 => {
            return Err(Reader::err_at(
                4,
                format!("version {v:#x}: a big-endian GGUF file, which is not supported"),
            ))
        }
        v => {
            return Err(Reader::err_at(
                4,
                format!("unsupported GGUF version {v} (2 and 3 are supported)"),
            ))
        }
    }
    let n_tensors = r.count("tensor count", MIN_TENSOR_INFO_BYTES)?;
    let n_kv = r.count("metadata count", MIN_KV_BYTES)?;

    let mut metadata: Vec<MetadataEntry> = Vec::with_capacity(prealloc(n_kv));
    let mut raw_values: Vec<(usize, usize)> = Vec::with_capacity(prealloc(n_kv));
    let mut keys: HashSet<&[u8]> = HashSet::with_capacity(prealloc(n_kv));
    let mut alignment = DEFAULT_ALIGNMENT;
    for _ in 0..n_kv {
        let at = r.pos;
        let raw = r.string("metadata key")?;
        let key = utf8(raw, at, "metadata key")?;
        if key.is_empty() {
            return Err(Reader::err_at(at, "empty metadata key"));
        }
        if !keys.insert(raw) {
            return Err(Reader::err_at(
                at,
                format!("duplicate metadata key {key:?}"),
            ));
        }
        let value_at = r.pos;
        let ty = r.value_type("metadata value type")?;
        let value = r.value(ty)?;
        raw_values.push((value_at, r.pos));
        if key == ALIGNMENT_KEY {
            alignment = match value {
                MetadataValue::U32(a) if a.is_power_of_two() => a,
                MetadataValue::U32(a) => {
                    return Err(Reader::err_at(
                        at,
                        format!("{ALIGNMENT_KEY} = {a} is not a power of two"),
                    ))
                }
                _ => {
                    return Err(Reader::err_at(
                        at,
                        format!("{ALIGNMENT_KEY} must be of type u32, not {ty:?}"),
                    ))
                }
            };
        }
        metadata.push(MetadataEntry { key, value });
    }

    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(prealloc(n_tensors));
    let mut info_at: Vec<usize> = Vec::with_capacity(prealloc(n_tensors));
    let mut names: HashSet<&[u8]> = HashSet::with_capacity(prealloc(n_tensors));
    for _ in 0..n_tensors {
        let at = r.pos;
        let raw = r.string("tensor name")?;
        let name = utf8(raw, at, "tensor name")?;
        if !names.insert(raw) {
            return Err(Reader::err_at(
                at,
                format!("duplicate tensor name {name:?}"),
            ));
        }
        let n_dims = r.u32("tensor dimension count")?;
        if n_dims as usize > MAX_DIMS {
            return Err(r.err(format!(
                "tensor {name:?} has {n_dims} dimensions (at most {MAX_DIMS})"
            )));
        }
        let mut ne = Vec::with_capacity(n_dims as usize);
        let mut n_elements: u64 = 1;
        for _ in 0..n_dims {
            let d = r.u64("tensor dimension")?;
            n_elements = n_elements
                .checked_mul(d)
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| {
                    r.err(format!(
                        "tensor {name:?}: element count overflows (dimension {d})"
                    ))
                })?;
            ne.push(d);
        }
        let type_at = r.pos;
        let id = r.u32("tensor type")?;
        let ggml_type = GgmlType::from_id(id).ok_or_else(|| {
            Reader::err_at(
                type_at,
                format!("tensor {name:?} has unknown ggml type {id}"),
            )
        })?;
        let row = ne.first().copied().unwrap_or(1);
        if row % ggml_type.block_size() != 0 {
            return Err(Reader::err_at(
                type_at,
                format!(
                    "tensor {name:?} of type {ggml_type} has rows of {row} values, \
                     not a multiple of its block size {}",
                    ggml_type.block_size()
                ),
            ));
        }
        let size = (n_elements / ggml_type.block_size())
            .checked_mul(ggml_type.type_size())
            .ok_or_else(|| {
                Reader::err_at(type_at, format!("tensor {name:?}: byte size overflows"))
            })?;
        let offset_at = r.pos;
        let offset = r.u64("tensor data offset")?;
        if offset % alignment as u64 != 0 {
            return Err(Reader::err_at(
                offset_at,
                format!("tensor {name:?}: data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        tensors.push(TensorInfo {
            name,
            ggml_type,
            ne,
            offset,
            size,
        });
        info_at.push(at);
    }

    let header_end = r.pos as u64;
    let data_offset = header_end
        .checked_next_multiple_of(alignment as u64)
        .filter(|&d| tensors.is_empty() || d <= buf.len() as u64)
        .ok_or_else(|| {
            r.err(format!(
                "the data section (after padding to {alignment}) starts past the end of the file ({} bytes)",
                buf.len()
            ))
        })?;

    // Every tensor's bytes inside the file, and no two overlapping.
    let mut spans: Vec<(u64, u64, usize)> = Vec::with_capacity(tensors.len());
    for (i, t) in tensors.iter().enumerate() {
        let end = data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.size).map(|e| (s, e)))
            .filter(|&(_, e)| e <= buf.len() as u64);
        let Some((start, end)) = end else {
            return Err(Reader::err_at(
                info_at[i],
                format!(
                    "tensor {:?}: {} bytes at data offset {} lie outside the file ({} bytes, data section at {data_offset})",
                    t.name,
                    t.size,
                    t.offset,
                    buf.len()
                ),
            ));
        };
        if end > start {
            spans.push((start, end, i));
        }
    }
    spans.sort_unstable();
    for w in spans.windows(2) {
        let ((_, end_a, a), (start_b, _, b)) = (w[0], w[1]);
        if start_b < end_a {
            return Err(Reader::err_at(
                info_at[b],
                format!(
                    "tensor {:?} overlaps tensor {:?} in the data section",
                    tensors[b].name, tensors[a].name
                ),
            ));
        }
    }

    Ok(Header {
        version,
        alignment,
        data_offset,
        metadata,
        raw_values,
        tensors,
    })
}

/// The GGUF bytes of `values` (rows of `row_len` values, concatenated) in
/// `quant_type`: llama.cpp's reference quantizer for block formats (the same
/// bytes as its `quantize_row_*_ref`), ggml's round-to-nearest conversion
/// for F16 / BF16, the values themselves for F32.
///
/// Errors: `row_len` zero or not a multiple of the format's block size, or
/// `values` not a whole number of rows. Any values are accepted (NaN and
/// infinities give what llama.cpp's quantizer gives).
pub fn quantize_tensor(
    values: &[f32],
    row_len: usize,
    quant_type: QuantType,
) -> Result<Vec<u8>, Error> {
    if row_len == 0 {
        return Err(Error::ZeroSize { what: "row_len" });
    }
    if !row_len.is_multiple_of(quant_type.block_size()) {
        return Err(Error::TensorShape {
            name: "values".into(),
            shape: vec![row_len as u64],
            expected: format!(
                "rows a multiple of {}'s block size {}",
                quant_type,
                quant_type.block_size()
            ),
        });
    }
    if !values.len().is_multiple_of(row_len) {
        return Err(Error::LengthMismatch {
            what: "values (whole rows)",
            expected: values.len().next_multiple_of(row_len),
            actual: values.len(),
        });
    }
    Ok(blockq_kernels::match_format!(
        quant_type,
        B => {
            let mut blocks = vec![<B as bytemuck::Zeroable>::zeroed(); values.len() / quant_type.block_size()];
            blockq_kernels::load::quantize_blocks::<B>(values, &mut blocks);
            bytemuck::cast_slice::<B, u8>(&blocks).to_vec()
        },
        E => {
            let mut out = vec![<E as bytemuck::Zeroable>::zeroed(); values.len()];
            blockq_kernels::load::floats_from_f32::<E>(values, &mut out);
            bytemuck::cast_slice::<E, u8>(&out).to_vec()
        },
    ))
}

/// The little-endian values of a float-format tensor (F16, BF16; any
/// alignment) widened to f32 on the kernels' vectorized load path.
pub(crate) fn widen(format: QuantType, bytes: &[u8]) -> Vec<f32> {
    let mut out = vec![0.0f32; bytes.len() / format.bytes_per_block()];
    blockq_kernels::load::le_bytes_to_f32(format, bytes, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ggml_type_table_is_consistent() {
        for (i, t) in GGML_TYPES.iter().enumerate() {
            assert!(
                GGML_TYPES[i + 1..].iter().all(|u| u.0 != t.0 && u.1 != t.1),
                "duplicate {t:?}"
            );
            assert!(t.2 > 0 && t.3 > 0);
            let g = GgmlType::from_id(t.0).unwrap();
            assert_eq!((g.id(), g.name()), (t.0, t.1));
        }
        for id in [4, 5, 31, 32, 33, 36, 37, 38, 42, u32::MAX] {
            assert!(GgmlType::from_id(id).is_none(), "{id}");
        }
        assert_eq!(GgmlType::from_id(12).unwrap().to_string(), "Q4_K (type 12)");
        for q in QuantType::ALL {
            let g = GgmlType::from(q);
            assert_eq!(g.quant_type(), Some(q));
            assert_eq!(g.name(), q.name());
            assert_eq!(g.type_size() as usize, q.bytes_per_block());
            assert_eq!(g.block_size() as usize, q.block_size());
        }
    }

    #[test]
    fn value_tags_round_trip() {
        for tag in 0..13 {
            let t = ValueType::from_tag(tag).unwrap();
            assert_eq!(t as u32, tag);
        }
        assert!(ValueType::from_tag(13).is_none());
    }
}
