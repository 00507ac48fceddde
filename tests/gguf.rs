//! GGUF loading: files written here by a minimal GGUF writer, loaded back and
//! compared bit for bit with layers built directly from the same blocks; and
//! truncated, corrupted and hostile files, which must give errors (never a
//! panic or an out-of-bounds read; tests/gguf_alloc.rs bounds the memory).

mod common;
mod gguf_writer;

use blockq::gguf::{GgmlType, GgufFile, MetadataValue, ValueType, MAX_ARRAY_DEPTH};
use blockq::{Error, QuantType, QuantizedLinear, QK_K};
use common::{assert_same_bits, values};
use gguf_writer::*;
use half::f16;
use quickcheck::{QuickCheck, TestResult};

/// Checks everything a parsed file of `model` must show, and that each layer
/// loaded from it equals the layer built directly from the parts.
fn check_file<B: AsRef<[u8]>>(file: &GgufFile<B>, model: &Model, w: &Writer, written: &Written) {
    assert_eq!(file.version(), w.version);
    assert_eq!(file.alignment() as usize, w.align());
    assert_eq!(file.data_offset() as usize, written.data_offset);
    assert_eq!(file.data_offset() % file.alignment() as u64, 0);

    // Metadata: every pair, in order, with its value.
    let mut expect = w.kvs.clone();
    if let Some(a) = w.alignment {
        expect.insert(expect.len() / 2, ("general.alignment".into(), Val::U32(a)));
    }
    assert_eq!(file.metadata().len(), expect.len());
    for (entry, (key, val)) in file.metadata().iter().zip(&expect) {
        assert_eq!(&entry.key, key);
        match (val, &entry.value) {
            (Val::Arr(tag, items), MetadataValue::Array { item_type, len, .. }) => {
                assert_eq!(*item_type, ValueType::from_tag(*tag).unwrap(), "{key}");
                assert_eq!(*len, items.len() as u64, "{key}");
            }
            (v, got) => assert_eq!(got, &v.expected(), "{key}"),
        }
        assert_eq!(file.get(key), Some(&entry.value));
    }
    assert_eq!(file.get("no.such.key"), None);

    // Tensor table.
    assert_eq!(file.tensors().len(), w.tensors.len());
    for (i, (t, want)) in file.tensors().iter().zip(&w.tensors).enumerate() {
        assert_eq!(t.name, want.name);
        assert_eq!(t.ggml_type.id(), want.type_id);
        assert_eq!(t.ne, want.ne);
        assert_eq!(t.offset, written.rel_offsets[i]);
        assert_eq!(t.size as usize, want.data.len());
        assert_eq!(file.tensor(&t.name), Some(t));
        assert_eq!(file.tensor_data(&t.name).unwrap(), &want.data[..]);
    }

    let x1 = values(77, model.k, 3.0);
    let x5 = values(78, 5 * model.k, 3.0);
    for (name, qt, direct) in model.direct_layers() {
        for bias in ["bias", "bias.f16"] {
            let layer = file.linear(name, Some(bias)).unwrap();
            let what = format!("{name} + {bias}, {}x{}", model.k, model.n);
            assert_eq!(layer.quant_type, qt, "{what}");
            assert_eq!(
                (layer.in_features, layer.out_features),
                (model.k, model.n),
                "{what}"
            );
            // The exact bytes of the file, not re-quantized.
            assert_eq!(
                layer.to_gguf_bytes(),
                file.tensor_data(name).unwrap(),
                "{what}"
            );
            assert_same_bits(&layer.dequantize_weights(), &model.dequantized(name), &what);
            let b: Vec<f32> = if bias == "bias" {
                model.bias.clone()
            } else {
                model
                    .bias
                    .iter()
                    .map(|&b| f16::from_f32(b).to_f32())
                    .collect()
            };
            assert_same_bits(layer.bias().unwrap(), &b, &what);
            if bias == "bias" {
                assert_same_bits(
                    &layer.forward_f32(&x1, 1),
                    &direct.forward_f32(&x1, 1),
                    &what,
                );
                assert_same_bits(
                    &layer.forward_f32(&x5, 5),
                    &direct.forward_f32(&x5, 5),
                    &what,
                );
            }
        }
        let nobias = file.linear(name, None).unwrap();
        assert!(nobias.bias().is_none());
        assert_eq!(nobias.to_gguf_bytes(), file.tensor_data(name).unwrap());
    }
}

const SHAPES: &[(usize, usize)] = &[(32, 1), (64, 17), (96, 3), (256, 40)];

#[test]
fn v3_files_load_bit_exactly() {
    for (i, &(k, n)) in SHAPES.iter().enumerate() {
        let model = Model::new(10 * i as u64, k, n);
        let w = model.writer(3);
        let written = w.build();
        let file = GgufFile::parse(&written.bytes).unwrap();
        check_file(&file, &model, &w, &written);
        // An owned buffer works the same.
        let owned = GgufFile::from_bytes(written.bytes.clone()).unwrap();
        check_file(&owned, &model, &w, &written);
    }
}

#[test]
fn v2_files_load_like_v3() {
    let model = Model::new(5, 64, 9);
    let w = model.writer(2);
    let written = w.build();
    let file = GgufFile::parse(&written.bytes).unwrap();
    assert_eq!(file.version(), 2);
    check_file(&file, &model, &w, &written);
    // The same file as v3 differs only in the version field.
    let v3 = model.writer(3).build();
    assert_eq!(written.bytes[..4], v3.bytes[..4]);
    assert_eq!(written.bytes[8..], v3.bytes[8..]);
}

#[test]
fn non_default_alignments_are_honoured() {
    let model = Model::new(6, 96, 5);
    for align in [1u32, 8, 64, 256, 4096] {
        let mut w = model.writer(3);
        w.alignment = Some(align);
        let written = w.build();
        let file = GgufFile::parse(&written.bytes).unwrap();
        assert_eq!(file.alignment(), align);
        check_file(&file, &model, &w, &written);
        for t in file.tensors() {
            assert_eq!(t.offset % align as u64, 0, "{align}");
        }
    }
}

#[test]
fn bad_alignments_are_errors() {
    let model = Model::new(6, 32, 2);
    let mut w = model.writer(3);
    w.alignment = Some(32);
    let written = w.build();
    // The key, its type tag, then the value.
    let pos = find(&written.bytes, b"general.alignment") + 17 + 4;
    for align in [0u32, 3, 48, 1000] {
        let mut b = written.bytes.clone();
        set_u32(&mut b, pos, align);
        let e = GgufFile::parse(&b).unwrap_err();
        assert!(
            matches!(e, Error::Gguf { .. }) && e.to_string().contains("power of two"),
            "{align}: {e}"
        );
    }
    // general.alignment of another type than u32.
    let w = Writer::new(3).kv("general.alignment", Val::U64(32));
    let e = GgufFile::parse(&w.build().bytes).unwrap_err();
    assert!(e.to_string().contains("must be of type u32"), "{e}");
}

#[test]
fn files_are_loaded_through_mmap() {
    let model = Model::new(7, 64, 20);
    let w = model.writer(3);
    let written = w.build();
    let path = std::env::temp_dir().join(format!(
        "blockq-gguf-test-{}-{}.gguf",
        std::process::id(),
        line!()
    ));
    std::fs::write(&path, &written.bytes).unwrap();
    let file = GgufFile::open(&path);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let file = file.unwrap();
        assert_eq!(file.bytes(), &written.bytes[..]);
        check_file(&file, &model, &w, &written);
    }));
    std::fs::remove_file(&path).unwrap();
    result.unwrap();

    let e = GgufFile::open(&path).unwrap_err();
    assert!(matches!(e, Error::Io(_)), "{e}");
    assert!(e.to_string().contains(&path.display().to_string()), "{e}");
}

#[test]
fn weights_with_trailing_unit_dimensions_load() {
    let model = Model::new(8, 64, 3);
    let bytes = bytemuck::cast_slice(&model.q8).to_vec();
    let written = Writer::new(3)
        .tensor("w3", 8, &[64, 3, 1], bytes.clone())
        .tensor("w4", 8, &[64, 3, 1, 1], bytes.clone())
        .tensor("b2", 0, &[3, 1], f32_bytes(&model.bias))
        .build();
    let file = GgufFile::parse(&written.bytes).unwrap();
    for name in ["w3", "w4"] {
        let l = file.linear(name, Some("b2")).unwrap();
        assert_eq!(l.to_gguf_bytes(), bytes);
        assert_eq!(l.bias().unwrap(), &model.bias[..]);
    }
}

#[test]
fn unsupported_tensor_types_are_named() {
    // Q3_K: 256-value blocks of 110 bytes; listed, but not loadable.
    let bf16_bits: Vec<u16> = (0..64u16).map(|i| 0x3F80 + i * 0x0101).collect();
    let written = Writer::new(3)
        .tensor("w.q3_k", 11, &[256, 2], vec![0u8; 2 * 110])
        .tensor("w.q4_k", 12, &[256, 2], vec![0u8; 2 * 144])
        .tensor(
            "w.bf16",
            30,
            &[32, 2],
            bf16_bits.iter().flat_map(|b| b.to_le_bytes()).collect(),
        )
        .tensor("w.ok", 0, &[32, 2], vec![0u8; 2 * 32 * 4])
        .tensor("b.i32", 26, &[2], vec![0u8; 8])
        .build();
    let file = GgufFile::parse(&written.bytes).unwrap();
    let t = file.tensor("w.q3_k").unwrap();
    assert_eq!(t.ggml_type.name(), "Q3_K");
    assert_eq!(t.size, 220);
    // Q4_K loads (its super-blocks as they are).
    let l = file.linear("w.q4_k", None).unwrap();
    assert_eq!((l.quant_type, l.in_features), (QuantType::Q4_K, 256));
    assert_eq!(l.to_gguf_bytes(), file.tensor_data("w.q4_k").unwrap());
    // BF16 weights load as they are (not widened).
    let l = file.linear("w.bf16", None).unwrap();
    assert_eq!(l.quant_type, QuantType::BF16);
    assert_eq!(l.to_gguf_bytes(), file.tensor_data("w.bf16").unwrap());
    let (name, type_name) = ("w.q3_k", "Q3_K (type 11)");
    let e = file.linear(name, None).unwrap_err();
    assert_eq!(
        e,
        Error::UnsupportedTensorType {
            name: name.into(),
            type_name: type_name.into()
        }
    );
    assert!(e.to_string().contains(type_name), "{e}");
    // A bias must be a float type.
    let e = file.linear("w.ok", Some("b.i32")).unwrap_err();
    assert!(e.to_string().contains("I32 (type 26)"), "{e}");
    // BF16 tensors can still be read as f32: bf16 is the top half of an f32.
    let widened: Vec<f32> = bf16_bits
        .iter()
        .map(|&b| f32::from_bits((b as u32) << 16))
        .collect();
    assert_same_bits(&file.tensor_f32("w.bf16").unwrap(), &widened, "bf16");
    assert!(matches!(
        file.tensor_f32("w.q3_k").unwrap_err(),
        Error::UnsupportedTensorType { .. }
    ));

    // A type id ggml does not define is a parse error naming it.
    let mut bytes = written.bytes.clone();
    set_u32(&mut bytes, written.type_at[0], 99);
    let e = GgufFile::parse(&bytes).unwrap_err();
    assert!(e.to_string().contains("unknown ggml type 99"), "{e}");
    assert_eq!(
        e,
        Error::Gguf {
            offset: written.type_at[0] as u64,
            reason: "tensor \"w.q3_k\" has unknown ggml type 99".into()
        }
    );
}

#[test]
fn shape_and_name_errors() {
    let model = Model::new(9, 64, 4);
    let written = model
        .writer(3)
        .tensor("vec", 0, &[64], vec![0u8; 256])
        .tensor("mat4", 0, &[64, 2, 2], vec![0u8; 64 * 4 * 4])
        .tensor("bias.wrong", 0, &[5], vec![0u8; 20])
        .tensor("bias.2d", 0, &[4, 2], vec![0u8; 32])
        .build();
    let file = GgufFile::parse(&written.bytes).unwrap();
    for name in ["vec", "mat4"] {
        let e = file.linear(name, None).unwrap_err();
        assert!(
            matches!(&e, Error::TensorShape { name: n, .. } if n == name),
            "{e}"
        );
    }
    for b in ["bias.wrong", "bias.2d"] {
        let e = file.linear("w.q8_0", Some(b)).unwrap_err();
        assert!(
            matches!(&e, Error::TensorShape { name, .. } if name == b),
            "{e}"
        );
        assert!(e.to_string().contains("out_features = 4"), "{e}");
    }
    assert_eq!(
        file.linear("missing", None).unwrap_err(),
        Error::TensorNotFound {
            name: "missing".into()
        }
    );
    assert!(matches!(
        file.linear("w.q8_0", Some("missing")).unwrap_err(),
        Error::TensorNotFound { .. }
    ));
    assert!(matches!(
        file.tensor_data("missing").unwrap_err(),
        Error::TensorNotFound { .. }
    ));
}

#[test]
fn nan_scales_in_the_file_are_errors() {
    let mut model = Model::new(11, 64, 3);
    model.q8[3].d = f16::NAN;
    let written = model.writer(3).build();
    let file = GgufFile::parse(&written.bytes).unwrap();
    assert!(matches!(
        file.linear("w.q8_0", None).unwrap_err(),
        Error::NonFiniteScale {
            quant_type: QuantType::Q8_0,
            row: 1,
            block: 1
        }
    ));
}

#[test]
fn malformed_headers_are_errors() {
    let base = Model::new(12, 32, 2).writer(3).build();
    let parse_err = |b: &[u8]| GgufFile::parse(b).unwrap_err().to_string();

    let mut b = base.bytes.clone();
    b[0] = b'X';
    assert!(parse_err(&b).contains("not a GGUF file"));
    for (v, msg) in [
        (1u32, "version 1"),
        (4, "unsupported GGUF version 4"),
        (0, "big-endian"),
        (3 << 24, "big-endian"),
    ] {
        let mut b = base.bytes.clone();
        set_u32(&mut b, 4, v);
        let e = parse_err(&b);
        assert!(e.contains(msg), "{v}: {e}");
    }

    // Duplicate keys and tensor names.
    let w = Writer::new(3).kv("a", Val::U8(1)).kv("a", Val::U8(2));
    assert!(parse_err(&w.build().bytes).contains("duplicate metadata key \"a\""));
    let w = Writer::new(3)
        .tensor("t", 0, &[1], vec![0; 4])
        .tensor("t", 0, &[1], vec![0; 4]);
    assert!(parse_err(&w.build().bytes).contains("duplicate tensor name \"t\""));
    assert!(parse_err(&Writer::new(3).kv("", Val::U8(1)).build().bytes).contains("empty"));

    // Unknown value types, at top level and as array items.
    let mut b = Writer::new(3).kv("k", Val::U8(1)).build().bytes;
    let tag_at = 24 + 8 + 1;
    set_u32(&mut b, tag_at, 13);
    assert!(parse_err(&b).contains("unknown value type 13"));
    let mut b = Writer::new(3)
        .kv("k", Val::Arr(0, vec![Val::U8(1)]))
        .build()
        .bytes;
    set_u32(&mut b, tag_at + 4, 77);
    assert!(parse_err(&b).contains("unknown value type 77"));

    // Invalid UTF-8 in a key or a tensor name.
    let mut b = Writer::new(3).kv("ké", Val::U8(1)).build().bytes;
    b[24 + 8 + 1] = 0xFF;
    assert!(parse_err(&b).contains("not valid UTF-8"));
    let w = Writer::new(3).tensor("té", 0, &[1], vec![0; 4]);
    let mut b = w.build().bytes;
    b[24 + 8 + 1] = 0xC3;
    b[24 + 8 + 2] = 0x28;
    assert!(parse_err(&b).contains("tensor name is not valid UTF-8"));

    // Rows that are not whole blocks, too many dimensions, misaligned offsets.
    let w = Writer::new(3).tensor("q", 8, &[48, 1], vec![0; 51]);
    assert!(parse_err(&w.build().bytes).contains("not a multiple of its block size 32"));
    let w = Writer::new(3).tensor("five", 0, &[1, 1, 1, 1, 1], vec![0; 4]);
    assert!(parse_err(&w.build().bytes).contains("5 dimensions"));
    let w = Writer::new(3)
        .tensor("a", 0, &[1], vec![0; 4])
        .tensor("b", 0, &[1], vec![0; 4]);
    let written = w.build();
    let mut b = written.bytes.clone();
    set_u64(&mut b, written.offset_at[1], 4);
    assert!(parse_err(&b).contains("not a multiple of the alignment 32"));
}

#[test]
fn out_of_range_and_overlapping_tensor_data_are_errors() {
    let w = Writer::new(3)
        .tensor("a", 0, &[16], vec![1; 64])
        .tensor("b", 0, &[16], vec![2; 64])
        .tensor("c", 0, &[16], vec![3; 64]);
    let written = w.build();
    assert!(GgufFile::parse(&written.bytes).is_ok());

    let with_offset = |i: usize, off: u64| {
        let mut b = written.bytes.clone();
        set_u64(&mut b, written.offset_at[i], off);
        GgufFile::parse(&b).map(|_| ())
    };
    // b moved onto a, and a onto c.
    for (i, off, msg) in [
        (1, 0, "tensor \"b\" overlaps tensor \"a\""),
        (0, 128, "overlaps"),
        (1, 32, "overlaps"),
    ] {
        let e = with_offset(i, off).unwrap_err().to_string();
        assert!(e.contains(msg), "{e}");
    }
    // Past the end of the file, and offsets that overflow when added.
    for off in [160, 192, 1 << 40, 1 << 63, u64::MAX - 31] {
        let e = with_offset(2, off).unwrap_err();
        assert!(
            matches!(&e, Error::Gguf { reason, .. } if reason.contains("outside the file")),
            "{off}: {e}"
        );
    }
    // Dimensions whose byte size exceeds the file, or overflows.
    let mut b = written.bytes.clone();
    set_u64(&mut b, written.n_dims_at[0] + 4, 1 << 40);
    assert!(GgufFile::parse(&b)
        .unwrap_err()
        .to_string()
        .contains("outside the file"));
    let w = Writer::new(3).tensor("big", 0, &[1 << 32, 1 << 31], vec![]);
    let e = GgufFile::parse(&w.build().bytes).unwrap_err().to_string();
    assert!(e.contains("element count overflows"), "{e}");
    let w = Writer::new(3).tensor("big", 28, &[1 << 62], vec![]);
    let e = GgufFile::parse(&w.build().bytes).unwrap_err().to_string();
    assert!(e.contains("byte size overflows"), "{e}");
    // Zero-sized tensors occupy nothing, so may share an offset.
    let w = Writer::new(3)
        .tensor("e1", 0, &[0], vec![])
        .tensor("e2", 0, &[4, 0], vec![])
        .tensor("x", 0, &[1], vec![0; 4]);
    let bytes = w.build().bytes;
    let file = GgufFile::parse(&bytes).unwrap();
    assert_eq!(file.tensors()[1].size, 0);
    assert!(matches!(
        file.linear("e2", None).unwrap_err(),
        Error::ZeroSize { .. }
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let written = small_file();
    let full = &written.bytes;
    assert!(GgufFile::parse(full).is_ok());
    for len in 0..full.len() {
        // A fresh allocation of exactly `len` bytes, so any read past it would
        // be caught by the bounds checks of the slice (and by sanitizers).
        let prefix = full[..len].to_vec();
        match GgufFile::parse(&prefix).unwrap_err() {
            Error::Gguf { offset, .. } => assert!(offset as usize <= len, "{len}: {offset}"),
            e => panic!("{len}: {e}"),
        }
    }
}

#[test]
fn huge_counts_and_lengths_are_errors() {
    let written = small_file();
    for (what, at) in count_fields(&written) {
        for v in HUGE_VALUES
            .iter()
            .copied()
            .chain([written.bytes.len() as u64])
        {
            let mut b = written.bytes.clone();
            set_u64(&mut b, at, v);
            assert!(GgufFile::parse(&b).is_err(), "{what} = {v} was accepted");
        }
    }
}

#[test]
fn deep_array_nesting_is_bounded() {
    // [[[...[u8]...]]] nested `depth` times.
    let nest = |depth: usize| {
        let mut v = Val::Arr(0, vec![Val::U8(1)]);
        for _ in 1..depth {
            v = Val::Arr(9, vec![v]);
        }
        Writer::new(3).kv("deep", v).build().bytes
    };
    let bytes = nest(MAX_ARRAY_DEPTH);
    let ok = GgufFile::parse(&bytes).unwrap();
    assert!(matches!(
        ok.get("deep"),
        Some(MetadataValue::Array {
            item_type: ValueType::Array,
            len: 1,
            ..
        })
    ));
    let e = GgufFile::parse(&nest(MAX_ARRAY_DEPTH + 1)).unwrap_err();
    assert!(e.to_string().contains("nested more than"), "{e}");
    // A hostile nesting far deeper than the limit stops at the limit.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(0u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    put_str(&mut b, "deep");
    b.extend(9u32.to_le_bytes());
    for _ in 0..100_000 {
        b.extend(9u32.to_le_bytes());
        b.extend(1u64.to_le_bytes());
    }
    assert!(GgufFile::parse(&b).is_err());
}

#[test]
fn empty_and_metadata_only_files_parse() {
    // Without tensors, the padding after the header is optional.
    let b = Writer::new(3).build().bytes;
    for len in [24, b.len()] {
        let file = GgufFile::parse(&b[..len]).unwrap();
        assert!(file.tensors().is_empty() && file.metadata().is_empty());
    }
    let b = Writer::new(2)
        .kv("general.name", Val::Str("x".into()))
        .build()
        .bytes;
    let file = GgufFile::parse(&b).unwrap();
    assert_eq!(
        file.get("general.name"),
        Some(&MetadataValue::String("x".into()))
    );
}

#[test]
fn ggml_type_sizes_match_blockq_formats() {
    for q in QuantType::ALL {
        let g = GgmlType::from(q);
        assert_eq!(
            g.type_size() as usize * (QK_K / g.block_size() as usize),
            q.row_bytes(QK_K)
        );
    }
}

// ---------------------------------------------------------------------------
// Property tests.

#[test]
fn quickcheck_valid_files_round_trip() {
    fn prop(seed: u64) -> TestResult {
        let (w, layers) = random_file(seed);
        let written = w.build();
        let file = match GgufFile::parse(&written.bytes) {
            Ok(f) => f,
            Err(e) => return TestResult::error(e.to_string()),
        };
        for (name, k, n, qt) in layers {
            let t = &w.tensors.iter().find(|t| t.name == name).unwrap().data;
            let l = file.linear(&name, None).unwrap();
            if l.to_gguf_bytes() != *t
                || (l.in_features, l.out_features, l.quant_type) != (k, n, qt)
            {
                return TestResult::failed();
            }
        }
        TestResult::passed()
    }
    QuickCheck::new()
        .tests(200)
        .quickcheck(prop as fn(u64) -> TestResult);
}

#[test]
fn quickcheck_corrupted_files_never_panic() {
    fn prop(seed: u64, cut: u16, flips: Vec<(u16, u8)>) -> bool {
        let mut bytes = random_file(seed).0.build().bytes;
        for &(at, bits) in &flips {
            let i = at as usize % bytes.len();
            bytes[i] ^= bits;
        }
        let len = bytes.len();
        bytes.truncate(len - cut as usize % (len + 1));
        let bytes = bytes.clone(); // exact-size allocation
        exercise(&bytes)
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(u64, u16, Vec<(u16, u8)>) -> bool);
}

#[test]
fn quickcheck_overwritten_header_fields_never_panic() {
    // Large values written over any 8 header bytes (counts, lengths, offsets).
    fn prop(seed: u64, at: u16, v: u64, shift: u8) -> bool {
        let written = random_file(seed).0.build();
        let mut bytes = written.bytes;
        let at = at as usize % (written.data_offset.max(9) - 8);
        set_u64(&mut bytes, at, v >> (shift % 64));
        exercise(&bytes)
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(u64, u16, u64, u8) -> bool);
}

// ---------------------------------------------------------------------------
// A file written by gguf-py (llama.cpp's Python package), an independent
// implementation of the format and of the Q8_0 / Q4_0 quantizers; see
// tests/data/make_gguf_py_fixture.py.

#[test]
fn reads_files_written_by_gguf_py() {
    let bytes = include_bytes!("data/gguf_py.gguf");
    let file = GgufFile::parse(bytes).unwrap();
    assert_eq!((file.version(), file.alignment()), (3, 32));
    let s = |v: &str| Some(MetadataValue::String(v.into()));
    assert_eq!(
        file.get("general.architecture").cloned(),
        s("blockq-fixture")
    );
    assert_eq!(file.get("general.name").cloned(), s("gguf-py fixture"));
    assert_eq!(file.get("fixture.u32"), Some(&MetadataValue::U32(123456)));
    assert_eq!(file.get("fixture.i32"), Some(&MetadataValue::I32(-42)));
    assert_eq!(file.get("fixture.f32"), Some(&MetadataValue::F32(0.5)));
    assert_eq!(file.get("fixture.bool"), Some(&MetadataValue::Bool(true)));
    assert_eq!(file.get("fixture.u64"), Some(&MetadataValue::U64(1 << 40)));
    for (key, item, n) in [
        ("fixture.tokens", ValueType::String, 4),
        ("fixture.scores", ValueType::F32, 3),
        ("fixture.nested", ValueType::Array, 2),
    ] {
        assert!(
            matches!(file.get(key), Some(MetadataValue::Array { item_type, len, .. })
                if *item_type == item && *len == n),
            "{key}: {:?}",
            file.get(key)
        );
    }

    let (k, n) = (64, 5);
    let orig = file.tensor_f32("orig").unwrap();
    let bias = file.tensor_f32("bias").unwrap();
    assert_eq!((orig.len(), bias.len()), (n * k, n));
    // gguf-py quantizes the 32-value formats (the k-quants' oracle is
    // tests/data/kquant_vectors.bin, from llama.cpp's C reference).
    for qt in QuantType::ALL
        .into_iter()
        .filter(|q| q.block_size() != QK_K)
    {
        let weight = format!("{qt}.weight");
        let t = file.tensor(&weight).unwrap();
        assert_eq!(
            (t.ggml_type, &t.ne[..]),
            (GgmlType::from(qt), &[64u64, 5][..])
        );
        let layer = file.linear(&weight, Some("bias")).unwrap();
        assert_eq!(layer.to_gguf_bytes(), file.tensor_data(&weight).unwrap());
        // blockq dequantizes exactly as gguf-py does ...
        assert_same_bits(
            &layer.dequantize_weights(),
            &file.tensor_f32(&format!("{qt}.deq")).unwrap(),
            &weight,
        );
        // ... and quantizes the f32 weights to the same bytes.
        let ours = QuantizedLinear::from_linear_params(&orig, Some(&bias), k, n, qt);
        assert_eq!(ours.to_gguf_bytes(), layer.to_gguf_bytes(), "{weight}");
        let x = values(3, 2 * k, 1.0);
        assert_same_bits(&layer.forward_f32(&x, 2), &ours.forward_f32(&x, 2), &weight);
    }
    // A Q4_K tensor of zeros loads as zero weights.
    let q4k = file.linear("Q4_K.weight", None).unwrap();
    assert_eq!(
        q4k.to_gguf_bytes(),
        file.tensor_data("Q4_K.weight").unwrap()
    );
    assert!(q4k.dequantize_weights().iter().all(|&v| v == 0.0));
}
