//! A minimal GGUF writer (little-endian, versions 2 and 3) and the test files
//! built with it, shared by the GGUF tests.
#![allow(dead_code)]

use crate::common::values;
use blockq::gguf::{GgmlType, GgufFile, MetadataValue};
use blockq::{BlockQ4_0, BlockQ8_0, QuantType, QuantizedLinear, QK};
use bytemuck::Zeroable;
use half::f16;

#[derive(Clone, Debug)]
pub enum Val {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    /// Item type tag and items (all of that type).
    Arr(u32, Vec<Val>),
}

impl Val {
    pub fn tag(&self) -> u32 {
        match self {
            Val::U8(_) => 0,
            Val::I8(_) => 1,
            Val::U16(_) => 2,
            Val::I16(_) => 3,
            Val::U32(_) => 4,
            Val::I32(_) => 5,
            Val::F32(_) => 6,
            Val::Bool(_) => 7,
            Val::Str(_) => 8,
            Val::Arr(..) => 9,
            Val::U64(_) => 10,
            Val::I64(_) => 11,
            Val::F64(_) => 12,
        }
    }

    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Val::U8(v) => out.push(*v),
            Val::I8(v) => out.extend(v.to_le_bytes()),
            Val::U16(v) => out.extend(v.to_le_bytes()),
            Val::I16(v) => out.extend(v.to_le_bytes()),
            Val::U32(v) => out.extend(v.to_le_bytes()),
            Val::I32(v) => out.extend(v.to_le_bytes()),
            Val::F32(v) => out.extend(v.to_le_bytes()),
            Val::Bool(v) => out.push(*v as u8),
            Val::Str(s) => put_str(out, s),
            Val::U64(v) => out.extend(v.to_le_bytes()),
            Val::I64(v) => out.extend(v.to_le_bytes()),
            Val::F64(v) => out.extend(v.to_le_bytes()),
            Val::Arr(tag, items) => {
                out.extend(tag.to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for it in items {
                    assert_eq!(it.tag(), *tag, "array items must have the array's type");
                    it.write(out);
                }
            }
        }
    }

    /// What the parser should report for this value.
    pub fn expected(&self) -> MetadataValue {
        match self {
            Val::U8(v) => MetadataValue::U8(*v),
            Val::I8(v) => MetadataValue::I8(*v),
            Val::U16(v) => MetadataValue::U16(*v),
            Val::I16(v) => MetadataValue::I16(*v),
            Val::U32(v) => MetadataValue::U32(*v),
            Val::I32(v) => MetadataValue::I32(*v),
            Val::F32(v) => MetadataValue::F32(*v),
            Val::Bool(v) => MetadataValue::Bool(*v),
            Val::Str(s) => MetadataValue::String(s.clone()),
            Val::U64(v) => MetadataValue::U64(*v),
            Val::I64(v) => MetadataValue::I64(*v),
            Val::F64(v) => MetadataValue::F64(*v),
            Val::Arr(..) => unreachable!("arrays are compared by type and length"),
        }
    }
}

pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

pub struct Tensor {
    pub name: String,
    pub type_id: u32,
    pub ne: Vec<u64>,
    pub data: Vec<u8>,
}

/// Where the writer put things, for tests that corrupt specific fields.
#[derive(Debug, Default)]
pub struct Written {
    pub bytes: Vec<u8>,
    /// File offset of the tensor count field (the KV count follows).
    pub tensor_count_at: usize,
    /// Per tensor: file offsets of its n_dims, type and offset fields.
    pub n_dims_at: Vec<usize>,
    pub type_at: Vec<usize>,
    pub offset_at: Vec<usize>,
    /// Per tensor: data offset relative to the data section.
    pub rel_offsets: Vec<u64>,
    pub data_offset: usize,
}

pub struct Writer {
    pub version: u32,
    /// Written as `general.alignment` (u32) when set.
    pub alignment: Option<u32>,
    pub kvs: Vec<(String, Val)>,
    pub tensors: Vec<Tensor>,
}

impl Writer {
    pub fn new(version: u32) -> Writer {
        Writer {
            version,
            alignment: None,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    pub fn kv(mut self, key: &str, v: Val) -> Self {
        self.kvs.push((key.to_string(), v));
        self
    }

    pub fn tensor(mut self, name: &str, type_id: u32, ne: &[u64], data: Vec<u8>) -> Self {
        self.tensors.push(Tensor {
            name: name.into(),
            type_id,
            ne: ne.to_vec(),
            data,
        });
        self
    }

    pub fn align(&self) -> usize {
        self.alignment.unwrap_or(32) as usize
    }

    /// The file. Tensor data is padded to the alignment between tensors but
    /// not after the last one, so the file ends with its last data byte.
    pub fn build(&self) -> Written {
        let mut w = Written::default();
        let out = &mut w.bytes;
        out.extend(b"GGUF");
        out.extend(self.version.to_le_bytes());
        w.tensor_count_at = out.len();
        out.extend((self.tensors.len() as u64).to_le_bytes());
        let n_kv = self.kvs.len() + self.alignment.is_some() as usize;
        out.extend((n_kv as u64).to_le_bytes());
        let mut kvs = self.kvs.clone();
        if let Some(a) = self.alignment {
            kvs.insert(kvs.len() / 2, ("general.alignment".into(), Val::U32(a)));
        }
        for (k, v) in &kvs {
            put_str(out, k);
            out.extend(v.tag().to_le_bytes());
            v.write(out);
        }
        let align = self.align();
        let mut rel = 0usize;
        for t in &self.tensors {
            put_str(out, &t.name);
            w.n_dims_at.push(out.len());
            out.extend((t.ne.len() as u32).to_le_bytes());
            for d in &t.ne {
                out.extend(d.to_le_bytes());
            }
            w.type_at.push(out.len());
            out.extend(t.type_id.to_le_bytes());
            w.offset_at.push(out.len());
            out.extend((rel as u64).to_le_bytes());
            w.rel_offsets.push(rel as u64);
            rel = (rel + t.data.len()).next_multiple_of(align);
        }
        out.resize(out.len().next_multiple_of(align), 0);
        w.data_offset = out.len();
        for (i, t) in self.tensors.iter().enumerate() {
            assert_eq!(out.len() - w.data_offset, w.rel_offsets[i] as usize);
            out.extend(&t.data);
            if i + 1 < self.tensors.len() {
                out.resize(out.len().next_multiple_of(align), 0);
            }
        }
        w
    }
}

pub fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn set_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn q8_0_blocks(seed: u64, k: usize, n: usize) -> Vec<BlockQ8_0> {
    let w = values(seed, n * k, 1.5);
    let mut blocks = vec![BlockQ8_0::zeroed(); n * k / QK];
    blockq::quantize_row_q8_0(&w, &mut blocks);
    blocks
}

pub fn q4_0_blocks(seed: u64, k: usize, n: usize) -> Vec<BlockQ4_0> {
    let w = values(seed, n * k, 1.5);
    let mut blocks = vec![BlockQ4_0::zeroed(); n * k / QK];
    blockq::quantize_row_q4_0(&w, &mut blocks);
    blocks
}

pub fn f16_bytes(v: &[f16]) -> Vec<u8> {
    v.iter().flat_map(|h| h.to_le_bytes()).collect()
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The layers a test file holds, built directly from their parts.
pub struct Model {
    pub k: usize,
    pub n: usize,
    pub q8: Vec<BlockQ8_0>,
    pub q4: Vec<BlockQ4_0>,
    pub h: Vec<f16>,
    pub f: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Model {
    pub fn new(seed: u64, k: usize, n: usize) -> Model {
        Model {
            k,
            n,
            q8: q8_0_blocks(seed, k, n),
            q4: q4_0_blocks(seed + 1, k, n),
            h: values(seed + 2, n * k, 2.0)
                .into_iter()
                .map(f16::from_f32)
                .collect(),
            f: values(seed + 3, n * k, 2.0),
            bias: values(seed + 4, n, 0.5),
        }
    }

    pub fn writer(&self, version: u32) -> Writer {
        let (k, n) = (self.k as u64, self.n as u64);
        Writer::new(version)
            .kv("general.architecture", Val::Str("blockq-test".into()))
            .kv("test.u8", Val::U8(200))
            .kv("test.i8", Val::I8(-7))
            .kv("test.u16", Val::U16(65535))
            .kv("test.i16", Val::I16(-300))
            .kv("test.u32", Val::U32(4_000_000_000))
            .kv("test.i32", Val::I32(-5))
            .kv("test.f32", Val::F32(0.25))
            .kv("test.bool", Val::Bool(true))
            .kv(
                "test.tokens",
                Val::Arr(8, vec![Val::Str("<s>".into()), Val::Str("hé".into())]),
            )
            .kv(
                "test.scores",
                Val::Arr(6, vec![Val::F32(1.0), Val::F32(-2.5), Val::F32(0.0)]),
            )
            .kv(
                "test.nested",
                Val::Arr(
                    9,
                    vec![
                        Val::Arr(8, vec![Val::Str("a".into())]),
                        Val::Arr(8, vec![]),
                        Val::Arr(8, vec![Val::Str("bc".into()), Val::Str("".into())]),
                    ],
                ),
            )
            .kv("test.u64", Val::U64(u64::MAX))
            .kv("test.i64", Val::I64(i64::MIN))
            .kv("test.f64", Val::F64(-1.0e300))
            .tensor(
                "w.q8_0",
                8,
                &[k, n],
                bytemuck::cast_slice(&self.q8).to_vec(),
            )
            .tensor(
                "w.q4_0",
                2,
                &[k, n],
                bytemuck::cast_slice(&self.q4).to_vec(),
            )
            .tensor("w.f16", 1, &[k, n], f16_bytes(&self.h))
            .tensor("w.f32", 0, &[k, n], f32_bytes(&self.f))
            .tensor("bias", 0, &[n], f32_bytes(&self.bias))
            .tensor(
                "bias.f16",
                1,
                &[n],
                f16_bytes(
                    &self
                        .bias
                        .iter()
                        .map(|&b| f16::from_f32(b))
                        .collect::<Vec<_>>(),
                ),
            )
    }

    /// (tensor name, format, the layer built directly from the parts).
    pub fn direct_layers(&self) -> Vec<(&'static str, QuantType, QuantizedLinear)> {
        let (k, n, b) = (self.k, self.n, Some(&self.bias[..]));
        vec![
            (
                "w.q8_0",
                QuantType::Q8_0,
                QuantizedLinear::from_q8_0_blocks(&self.q8, b, k, n).unwrap(),
            ),
            (
                "w.q4_0",
                QuantType::Q4_0,
                QuantizedLinear::from_q4_0_blocks(&self.q4, b, k, n).unwrap(),
            ),
            (
                "w.f16",
                QuantType::F16,
                QuantizedLinear::from_f16(&self.h, b, k, n).unwrap(),
            ),
            (
                "w.f32",
                QuantType::F32,
                QuantizedLinear::try_from_linear_params(&self.f, b, k, n, QuantType::F32).unwrap(),
            ),
        ]
    }

    /// What llama.cpp's dequantization gives for tensor `name`.
    pub fn dequantized(&self, name: &str) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n * self.k];
        match name {
            "w.q8_0" => blockq::dequantize_row_q8_0(&self.q8, &mut out),
            "w.q4_0" => blockq::dequantize_row_q4_0(&self.q4, &mut out),
            "w.f16" => out = self.h.iter().map(|h| h.to_f32()).collect(),
            "w.f32" => out = self.f.clone(),
            _ => unreachable!(),
        }
        out
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle present")
}

/// A small valid file with every kind of header field.
pub fn small_file() -> Written {
    let model = Model::new(13, 32, 2);
    let mut w = model.writer(3);
    w.alignment = Some(16);
    w.build()
}

/// A random valid file: random shapes, types, metadata, version, alignment.
/// Values written over counts and lengths by the hostile-file tests.
pub const HUGE_VALUES: [u64; 4] = [u64::MAX, u64::MAX / 2, 1 << 62, 1 << 40];

/// `(what, byte offset)` of every u64 count, length, dimension or offset
/// field of [`small_file`]'s header.
pub fn count_fields(written: &Written) -> Vec<(&'static str, usize)> {
    let base = &written.bytes;
    let mut fields = vec![
        ("tensor count", written.tensor_count_at),
        ("metadata count", written.tensor_count_at + 8),
        ("first key length", 24),
    ];
    for (needle, what) in [
        (&b"test.tokens"[..], "string array length"),
        (b"test.scores", "f32 array length"),
        (b"test.nested", "nested array length"),
    ] {
        // key, value type (9), item type, then the length.
        fields.push((what, find(base, needle) + needle.len() + 8));
    }
    let nested = find(base, b"test.nested") + b"test.nested".len() + 16;
    fields.push(("inner array length", nested + 4));
    fields.push(("inner string length", nested + 12));
    fields.push(("tensor dimension", written.n_dims_at[0] + 4));
    fields.push(("tensor offset", written.offset_at[1]));
    fields
}

pub fn random_file(seed: u64) -> (Writer, Vec<(String, usize, usize, QuantType)>) {
    let r = values(seed, 16, 1.0);
    let pick = |i: usize, n: usize| ((r[i] + 1.0) * 0.5 * n as f32) as usize % n;
    let mut w = Writer::new(2 + pick(0, 2) as u32);
    w.alignment = [None, Some(1), Some(8), Some(64)][pick(1, 4)];
    w = w
        .kv("a.str", Val::Str("x".repeat(pick(2, 5))))
        .kv(
            "a.arr",
            Val::Arr(
                8,
                (0..pick(3, 4)).map(|i| Val::Str("s".repeat(i))).collect(),
            ),
        )
        .kv("a.u32", Val::U32(seed as u32));
    let mut layers = Vec::new();
    for t in 0..1 + pick(4, 3) {
        let qt = QuantType::ALL[pick(5 + t, QuantType::ALL.len())];
        // Whole blocks (super-blocks of 256 for the k-quants).
        let k = qt.block_size().max(QK) * (1 + pick(8 + t, 3));
        let n = 1 + pick(11 + t, 5);
        let name = format!("t{t}");
        // Every format, quantized by its reference quantizer (k is whole blocks).
        let mut data = vec![0u8; qt.row_bytes(k) * n];
        qt.quantize_to_bytes(&values(seed + t as u64, n * k, 1.0), &mut data);
        w = w.tensor(&name, GgmlType::from(qt).id(), &[k as u64, n as u64], data);
        layers.push((name, k, n, qt));
    }
    (w, layers)
}

/// Whatever a parse accepts must be safe to use: every listed tensor's data is
/// inside the input and loading it gives a layer or an error.
pub fn exercise(bytes: &[u8]) -> bool {
    match GgufFile::parse(bytes) {
        Err(e) => !e.to_string().is_empty(),
        Ok(file) => file.tensors().iter().all(|t| {
            let data = file.tensor_data(&t.name).unwrap();
            let start = data.as_ptr() as usize - bytes.as_ptr() as usize;
            let inside = data.len() as u64 == t.size && start + data.len() <= bytes.len();
            let _ = file.linear(&t.name, None);
            inside
        }),
    }
}
