//! safetensors loading: files written with the `safetensors` crate's
//! serializer, loaded and compared bit for bit with layers quantized directly
//! from the same (exactly widened) values; malformed files give errors.
#![cfg(feature = "safetensors")]

mod common;

use blockq::safetensors::SafetensorsFile;
use blockq::{BlockQ8_0, Error, QuantType, QuantizedLinear, QK};
use bytemuck::Zeroable;
use common::{assert_same_bits, values};
use half::{bf16, f16};
use quickcheck::{QuickCheck, TestResult};
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use std::path::PathBuf;

/// Values stored in one dtype, with the f32 values they widen to (computed
/// from the bit patterns, independently of the loader).
struct Stored {
    bytes: Vec<u8>,
    widened: Vec<f32>,
}

fn stored(dtype: Dtype, v: &[f32]) -> Stored {
    let (bytes, widened): (Vec<u8>, Vec<f32>) = match dtype {
        Dtype::F32 => (v.iter().flat_map(|x| x.to_le_bytes()).collect(), v.to_vec()),
        Dtype::F16 => {
            let h: Vec<f16> = v.iter().map(|&x| f16::from_f32(x)).collect();
            (
                h.iter().flat_map(|x| x.to_le_bytes()).collect(),
                h.iter().map(|x| x.to_f32()).collect(),
            )
        }
        Dtype::BF16 => {
            let h: Vec<bf16> = v.iter().map(|&x| bf16::from_f32(x)).collect();
            (
                h.iter().flat_map(|x| x.to_le_bytes()).collect(),
                // bf16 is the top half of an f32.
                h.iter()
                    .map(|x| f32::from_bits((x.to_bits() as u32) << 16))
                    .collect(),
            )
        }
        _ => unreachable!(),
    };
    Stored { bytes, widened }
}

/// A safetensors file holding `tensors` (name, dtype, shape, bytes).
fn file_bytes(tensors: &[(&str, Dtype, Vec<usize>, &[u8])]) -> Vec<u8> {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                name.to_string(),
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize(views, None).unwrap()
}

/// A unique temporary path, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        TempFile(std::env::temp_dir().join(format!(
            "blockq-st-test-{}-{tag}.safetensors",
            std::process::id()
        )))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const SHAPES: &[(usize, usize)] = &[(32, 1), (64, 17), (100, 3), (256, 33)];
const DTYPES: [Dtype; 3] = [Dtype::F32, Dtype::F16, Dtype::BF16];

#[test]
fn weights_are_quantized_like_direct_layers() {
    for (si, &(k, n)) in SHAPES.iter().enumerate() {
        for dtype in DTYPES {
            let w = stored(dtype, &values(si as u64, n * k, 2.0));
            let b = stored(dtype, &values(si as u64 + 50, n, 0.5));
            let bytes = file_bytes(&[
                ("layer.weight", dtype, vec![n, k], &w.bytes),
                ("layer.bias", dtype, vec![n], &b.bytes),
            ]);
            let tmp = TempFile::new(&format!("{k}x{n}-{dtype}"));
            std::fs::write(&tmp.0, &bytes).unwrap();
            let mapped = SafetensorsFile::open(&tmp.0).unwrap();
            let parsed = SafetensorsFile::parse(&bytes).unwrap();
            assert_eq!(mapped.bytes(), &bytes[..]);
            assert_eq!(
                parsed.tensor("layer.weight").unwrap().shape,
                vec![n, k],
                "{dtype}"
            );
            assert_eq!(
                parsed.tensor("layer.bias").unwrap().dtype,
                dtype.to_string()
            );
            assert_eq!(parsed.tensors().len(), 2);
            assert_same_bits(
                &parsed.tensor_f32("layer.weight").unwrap(),
                &w.widened,
                "widening",
            );

            let x = values(si as u64 + 99, 3 * k, 3.0);
            for qt in QuantType::ALL {
                let what = format!("{k}x{n} {dtype} -> {qt}");
                let direct =
                    QuantizedLinear::try_from_linear_params(&w.widened, Some(&b.widened), k, n, qt)
                        .unwrap();
                let layer = parsed
                    .linear("layer.weight", Some("layer.bias"), qt)
                    .unwrap();
                assert_eq!(layer.quant_type, qt, "{what}");
                assert_eq!((layer.in_features, layer.out_features), (k, n));
                assert_eq!(layer.to_gguf_bytes(), direct.to_gguf_bytes(), "{what}");
                assert_same_bits(
                    &layer.dequantize_weights(),
                    &direct.dequantize_weights(),
                    &what,
                );
                assert_same_bits(layer.bias().unwrap(), &b.widened, &what);
                assert_same_bits(&layer.forward_f32(&x, 3), &direct.forward_f32(&x, 3), &what);
                let m = mapped.linear("layer.weight", None, qt).unwrap();
                assert_eq!(m.to_gguf_bytes(), direct.to_gguf_bytes(), "{what} (mmap)");
                assert!(m.bias().is_none());
            }
        }
    }
}

#[test]
fn q8_0_blocks_are_llama_cpp_reference_blocks() {
    // BF16 weights quantized at load equal llama.cpp's reference quantizer run
    // on the widened rows.
    let (k, n) = (96, 5);
    let w = stored(Dtype::BF16, &values(3, n * k, 1.0));
    let bytes = file_bytes(&[("w", Dtype::BF16, vec![n, k], &w.bytes)]);
    let layer = SafetensorsFile::parse(&bytes)
        .unwrap()
        .linear("w", None, QuantType::Q8_0)
        .unwrap();
    let mut blocks = vec![BlockQ8_0::zeroed(); n * k / QK];
    blockq::quantize_row_q8_0(&w.widened, &mut blocks);
    assert_eq!(
        layer.to_gguf_bytes(),
        bytemuck::cast_slice::<_, u8>(&blocks)
    );
}

#[test]
fn widening_is_exact() {
    // Every finite f16 and a sweep of bf16 bit patterns survive the round trip
    // through the loader's f32 values.
    let h: Vec<f16> = (0..=u16::MAX)
        .map(f16::from_bits)
        .filter(|x| x.is_finite())
        .collect();
    let hb: Vec<u8> = h.iter().flat_map(|x| x.to_le_bytes()).collect();
    let bf: Vec<bf16> = (0..=u16::MAX)
        .step_by(7)
        .map(bf16::from_bits)
        .filter(|x| x.is_finite())
        .collect();
    let bb: Vec<u8> = bf.iter().flat_map(|x| x.to_le_bytes()).collect();
    let bytes = file_bytes(&[
        ("h", Dtype::F16, vec![h.len()], &hb),
        ("b", Dtype::BF16, vec![bf.len()], &bb),
    ]);
    let file = SafetensorsFile::parse(&bytes).unwrap();
    let hv = file.tensor_f32("h").unwrap();
    assert!(h
        .iter()
        .zip(&hv)
        .all(|(a, &b)| f16::from_f32(b).to_bits() == a.to_bits()));
    let bv = file.tensor_f32("b").unwrap();
    assert!(bf
        .iter()
        .zip(&bv)
        .all(|(a, &b)| b.to_bits() == (a.to_bits() as u32) << 16));
    assert_eq!((hv.len(), bv.len()), (h.len(), bf.len()));
}

#[test]
fn errors_name_the_problem() {
    let (k, n) = (32, 2);
    let w = stored(Dtype::F32, &values(1, n * k, 1.0));
    let i64s = vec![0u8; n * k * 8];
    let mut nan = w.widened.clone();
    nan[5] = f32::NAN;
    let nan = stored(Dtype::F32, &nan);
    let big = stored(Dtype::F32, &[1e6; 64]);
    let bytes = file_bytes(&[
        ("w", Dtype::F32, vec![n, k], &w.bytes),
        ("w.i64", Dtype::I64, vec![n, k], &i64s),
        ("w.1d", Dtype::F32, vec![n * k], &w.bytes),
        ("w.3d", Dtype::F32, vec![1, n, k], &w.bytes),
        ("w.nan", Dtype::F32, vec![n, k], &nan.bytes),
        ("w.big", Dtype::F32, vec![n, k], &big.bytes),
        ("b.2d", Dtype::F32, vec![1, n], &w.bytes[..8]),
        ("b.3", Dtype::F32, vec![3], &w.bytes[..12]),
        ("b.i64", Dtype::I64, vec![n], &i64s[..16]),
    ]);
    let file = SafetensorsFile::parse(&bytes).unwrap();
    let q = QuantType::Q8_0;

    let e = file.linear("w.i64", None, q).unwrap_err();
    assert_eq!(
        e,
        Error::UnsupportedTensorType {
            name: "w.i64".into(),
            type_name: "I64".into()
        }
    );
    assert!(e.to_string().contains("I64"), "{e}");
    assert!(matches!(
        file.linear("w", Some("b.i64"), q).unwrap_err(),
        Error::UnsupportedTensorType { .. }
    ));
    for (name, shape) in [("w.1d", vec![64]), ("w.3d", vec![1, 2, 32])] {
        assert_eq!(
            file.linear(name, None, q).unwrap_err(),
            Error::TensorShape {
                name: name.into(),
                shape,
                expected: "[out_features, in_features]".into()
            }
        );
    }
    for b in ["b.2d", "b.3"] {
        let e = file.linear("w", Some(b), q).unwrap_err();
        assert!(
            matches!(&e, Error::TensorShape { name, .. } if name == b),
            "{e}"
        );
        assert!(e.to_string().contains("[2] (out_features)"), "{e}");
    }
    for (w, b) in [("missing", None), ("w", Some("missing"))] {
        assert_eq!(
            file.linear(w, b, q).unwrap_err(),
            Error::TensorNotFound {
                name: "missing".into()
            }
        );
    }
    assert!(matches!(
        file.linear("w.nan", None, q).unwrap_err(),
        Error::NonFinite {
            what: "weight",
            index: 5,
            ..
        }
    ));
    assert!(matches!(
        file.linear("w.big", None, QuantType::F16).unwrap_err(),
        Error::OutOfRange {
            quant_type: QuantType::F16,
            ..
        }
    ));
    // F32 keeps values that F16 cannot hold.
    assert!(file.linear("w.big", None, QuantType::F32).is_ok());

    let e = SafetensorsFile::parse(&bytes[..bytes.len() - 1]).unwrap_err();
    assert!(matches!(e, Error::Safetensors(_)), "{e}");
    let tmp = TempFile::new("missing");
    assert!(matches!(
        SafetensorsFile::open(&tmp.0).unwrap_err(),
        Error::Io(_)
    ));
}

fn small_file() -> Vec<u8> {
    let w = stored(Dtype::BF16, &values(8, 2 * 32, 1.0));
    let b = stored(Dtype::F16, &values(9, 2, 1.0));
    file_bytes(&[
        ("w", Dtype::BF16, vec![2, 32], &w.bytes),
        ("b", Dtype::F16, vec![2], &b.bytes),
    ])
}

/// Whatever parses must be usable without panics.
fn exercise(bytes: &[u8]) -> bool {
    match SafetensorsFile::parse(bytes) {
        Err(e) => !e.to_string().is_empty(),
        Ok(file) => {
            for t in file.tensors() {
                let _ = file.tensor_data(&t.name).unwrap();
                let _ = file.tensor_f32(&t.name);
                for qt in QuantType::ALL {
                    let _ = file.linear(&t.name, Some("b"), qt);
                }
            }
            true
        }
    }
}

#[test]
fn every_truncation_is_an_error() {
    let full = small_file();
    assert!(exercise(&full) && SafetensorsFile::parse(&full).is_ok());
    for len in 0..full.len() {
        let prefix = full[..len].to_vec();
        assert!(
            matches!(
                SafetensorsFile::parse(&prefix).unwrap_err(),
                Error::Safetensors(_)
            ),
            "{len}"
        );
    }
}

#[test]
fn quickcheck_corrupted_files_never_panic() {
    fn prop(flips: Vec<(u16, u8)>, cut: u8) -> TestResult {
        let mut bytes = small_file();
        for &(at, bits) in &flips {
            let i = at as usize % bytes.len();
            bytes[i] ^= bits;
        }
        bytes.truncate(bytes.len() - cut as usize % 4);
        TestResult::from_bool(exercise(&bytes))
    }
    QuickCheck::new()
        .tests(2000)
        .quickcheck(prop as fn(Vec<(u16, u8)>, u8) -> TestResult);
}
