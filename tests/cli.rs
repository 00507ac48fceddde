//! The `blockq` command (feature `cli`): each subcommand on the test data,
//! and bad files / bad arguments giving one clean line and the right exit code.

use std::path::PathBuf;
use std::process::{Command, Output};

fn blockq(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_blockq"))
        .args(args)
        .env_remove("BLOCKQ_ISA")
        .output()
        .expect("run blockq")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A file error: exit code 1 and one line naming the file, no Debug dump.
fn assert_clean_file_error(o: &Output, path: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("blockq: ") && err.contains(path), "{err}");
    assert!(!err.contains("{") && !err.contains("panicked"), "{err}");
}

fn data(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

fn tmp_file(name: &str, bytes: &[u8]) -> String {
    let p = std::env::temp_dir().join(format!("blockq-cli-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p.to_string_lossy().into_owned()
}

#[test]
fn info_lists_the_isas_and_the_chosen_one() {
    let o = blockq(&["info", "--no-measure"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let available: Vec<&str> = blockq::dispatch::available()
        .iter()
        .map(|i| i.name())
        .collect();
    let best = blockq::dispatch::default_isa().unwrap();
    assert!(
        out.contains(&format!("ISAs:     {}", available.join(", "))),
        "{out}"
    );
    assert!(out.contains(&format!("chosen:   {best} (")), "{out}");
    assert!(
        out.contains(&format!("build:    {}", blockq::build_info())),
        "{out}"
    );
    assert!(!out.contains("measured limits"), "{out}");
}

#[test]
fn info_measures_the_limits() {
    let o = blockq(&["info"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let bw: f64 = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("read bandwidth"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no read bandwidth in {out}"));
    assert!(bw > 0.1, "{bw} GB/s");
    // Every SIMD level this CPU has reports its int8 peak.
    for isa in blockq::dispatch::available() {
        if isa != blockq::dispatch::Isa::Scalar {
            let line = format!("{:<11} int8", isa.name());
            assert!(out.contains(&line), "no {line:?} in {out}");
        }
    }
    // Shown with --nocapture (CI): this machine's limits.
    println!("blockq info:\n{out}");
}

#[test]
fn bad_isa_is_a_usage_error() {
    let o = Command::new(env!("CARGO_BIN_EXE_blockq"))
        .args(["info", "--no-measure"])
        .env("BLOCKQ_ISA", "bogus")
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("blockq: ") && err.contains("bogus"),
        "{err}"
    );
}

#[test]
fn blank_isa_variable_is_no_choice() {
    // As for layers (`default_isa`): a blank BLOCKQ_ISA picks the fastest level.
    let o = Command::new(env!("CARGO_BIN_EXE_blockq"))
        .args(["info", "--no-measure"])
        .env("BLOCKQ_ISA", " ")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let best = blockq::dispatch::available().last().copied().unwrap();
    let out = stdout(&o);
    assert!(
        out.contains(&format!("chosen:   {best} (the fastest level")),
        "{out}"
    );
}

#[test]
fn bad_arguments_exit_2() {
    for args in [&["frobnicate"][..], &["inspect"], &["info", "--bogus"], &[]] {
        let o = blockq(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"));
    }
}

#[test]
fn inspect_gguf_lists_every_tensor_and_what_loads() {
    let path = data("gguf_py.gguf");
    let file = blockq::gguf::GgufFile::open(&path).unwrap();
    for load in [false, true] {
        let args: Vec<&str> = if load {
            vec!["inspect", &path, "--load"]
        } else {
            vec!["inspect", &path]
        };
        let o = blockq(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("general.architecture = \"blockq-fixture\""),
            "{out}"
        );
        let mut loadable = 0;
        for t in file.tensors() {
            let row = out
                .lines()
                .find(|l| l.split_whitespace().next() == Some(t.name.as_str()))
                .unwrap_or_else(|| panic!("no row for {} in {out}", t.name));
            assert!(row.contains(t.ggml_type.name()), "{row}");
            assert!(row.contains(&format!(" {} ", t.size)), "{row}");
            // What the row says agrees with loading the tensor as a layer.
            let loads = file.linear(&t.name, None).is_ok();
            assert_eq!(row.ends_with(" yes"), loads, "{row}");
            loadable += usize::from(loads);
        }
        let total = format!("{loadable} of {} tensors load", file.tensors().len());
        assert!(out.contains(&total), "{total:?} not in {out}");
    }
}

#[test]
fn inspect_safetensors() {
    // Two tensors: a 2 x 3 BF16 weight and an I64 vector.
    let header = r#"{"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"ids":{"dtype":"I64","shape":[2],"data_offsets":[12,28]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for v in [1.0f32, -2.0, 0.5, 3.0, 0.25, -1.0] {
        bytes.extend_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
    }
    bytes.extend_from_slice(&[0u8; 16]);
    let path = tmp_file("t.safetensors", &bytes);
    let o = blockq(&["inspect", &path, "--load"]);
    std::fs::remove_file(&path).unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let row = |name: &str| {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row {name} in {out}"))
            .to_string()
    };
    assert!(row("w").contains("BF16") && row("w").contains("2 x 3") && row("w").ends_with(" yes"));
    assert!(
        row("ids").contains("no: type I64 not supported"),
        "{}",
        row("ids")
    );
    assert!(out.contains("1 of 2 tensors load"), "{out}");
}

#[test]
fn bad_files_give_one_clean_line() {
    let missing = "/nonexistent/model.gguf";
    assert_clean_file_error(&blockq(&["inspect", missing]), missing);
    let short = tmp_file("short.gguf", b"GG");
    assert_clean_file_error(&blockq(&["inspect", &short]), &short);
    // GGUF magic, then a truncated header.
    let trunc = tmp_file("trunc.gguf", b"GGUF\x03\x00\x00\x00\x05");
    assert_clean_file_error(&blockq(&["inspect", &trunc]), &trunc);
    let other = tmp_file("other.bin", b"not a model file at all");
    assert_clean_file_error(&blockq(&["inspect", &other]), &other);
    let bad_st = tmp_file("bad.safetensors", b"\xff\xff\xff\xff\xff\xff\xff\xff{");
    assert_clean_file_error(&blockq(&["inspect", &bad_st]), &bad_st);
    for p in [short, trunc, other, bad_st] {
        std::fs::remove_file(p).unwrap();
    }
}

/// An F16 / F32 model-like GGUF written with the public writer, carrying
/// the metadata (arrays included) of the gguf-py fixture.
fn float_model() -> (Vec<u8>, Vec<(&'static str, Vec<u64>)>) {
    use blockq::gguf::{GgmlType, GgufFile, GgufWriter, MetadataValue};
    let fixture = GgufFile::open(data("gguf_py.gguf")).unwrap();
    let mut w = GgufWriter::new();
    w.copy_metadata(&fixture, |k| k != "general.file_type")
        .unwrap();
    w.add_metadata("general.file_type", MetadataValue::U32(1))
        .unwrap();
    // (name, ne innermost first): matrices of whole blocks for every format,
    // one of rows of 96 (whole 32-blocks, not 256), one of rows of 40, a norm.
    let tensors: Vec<(&str, Vec<u64>, GgmlType)> = vec![
        ("token_embd.weight", vec![256, 12], GgmlType::F16),
        ("blk.0.attn_norm.weight", vec![256], GgmlType::F32),
        ("blk.0.ffn_down.weight", vec![96, 8], GgmlType::F16),
        ("blk.0.odd.weight", vec![40, 3], GgmlType::F16),
        ("output.weight", vec![512, 4], GgmlType::F32),
    ];
    let mut data: Vec<Vec<u8>> = Vec::new();
    for (i, (name, ne, ty)) in tensors.iter().enumerate() {
        w.add_tensor(name, *ty, ne).unwrap();
        let n = ne.iter().product::<u64>() as usize;
        let v: Vec<f32> = (0..n)
            .map(|j| {
                ((j * 7 + i * 13) as f32 * 0.731).sin() * (1.0 + (j % 97 == 0) as u8 as f32 * 9.0)
            })
            .collect();
        let q = if *ty == GgmlType::F16 {
            blockq::QuantType::F16
        } else {
            blockq::QuantType::F32
        };
        data.push(blockq::gguf::quantize_tensor(&v, ne[0] as usize, q).unwrap());
    }
    let refs: Vec<&[u8]> = data.iter().map(|d| &d[..]).collect();
    let shapes = tensors.into_iter().map(|(n, ne, _)| (n, ne)).collect();
    (w.to_bytes(&refs).unwrap(), shapes)
}

#[test]
fn quantize_gguf_carries_metadata_and_converts_matrices() {
    use blockq::gguf::{GgmlType, GgufFile, MetadataValue};
    use blockq::QuantType;
    let (bytes, shapes) = float_model();
    let input = tmp_file("float.gguf", &bytes);
    let inp = GgufFile::open(&input).unwrap();
    for to in QuantType::ALL {
        let output = tmp_file(&format!("out-{to}.gguf"), b"");
        let o = blockq(&[
            "quantize",
            &input,
            &output,
            "--type",
            &to.name().to_lowercase(),
        ]);
        assert!(o.status.success(), "{to}: {}", stderr(&o));
        let out = GgufFile::open(&output).unwrap();
        // Every pair carried over (arrays by type and length), the two
        // llama.cpp sets set.
        for m in inp.metadata() {
            let got = out
                .get(&m.key)
                .unwrap_or_else(|| panic!("{to}: {} missing", m.key));
            match (&m.value, got) {
                (
                    MetadataValue::Array {
                        item_type: a,
                        len: n,
                        ..
                    },
                    MetadataValue::Array {
                        item_type: b,
                        len: k,
                        ..
                    },
                ) => assert_eq!((a, n), (b, k), "{}", m.key),
                _ if m.key == "general.file_type" => {}
                (v, got) => assert_eq!(v, got, "{}", m.key),
            }
        }
        assert_eq!(
            out.get("general.quantization_version"),
            Some(&MetadataValue::U32(2))
        );
        assert!(matches!(
            out.get("general.file_type"),
            Some(MetadataValue::U32(_))
        ));
        let names: Vec<&str> = out.tensors().iter().map(|t| t.name.as_str()).collect();
        let want: Vec<&str> = shapes.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, want, "{to}: tensor order");
        let mut converted = 0;
        for (t, u) in inp.tensors().iter().zip(out.tensors()) {
            assert_eq!(t.ne, u.ne, "{}", t.name);
            let becomes = t.ne.len() >= 2 && t.ne[0] % to.block_size() as u64 == 0;
            if becomes {
                assert_eq!(u.ggml_type, GgmlType::from(to), "{to}: {}", t.name);
                let values = inp.tensor_f32(&t.name).unwrap();
                let want = blockq::gguf::quantize_tensor(&values, t.ne[0] as usize, to).unwrap();
                assert!(
                    out.tensor_data(&u.name).unwrap() == want,
                    "{to}: {} bytes",
                    t.name
                );
                converted += 1;
            } else {
                assert_eq!(u.ggml_type, t.ggml_type, "{to}: {}", t.name);
                assert_eq!(
                    out.tensor_data(&u.name).unwrap(),
                    inp.tensor_data(&t.name).unwrap()
                );
                if t.ne.len() >= 2 {
                    let line = format!("kept {} as {}", t.name, t.ggml_type.name());
                    assert!(
                        stdout(&o).contains(&line),
                        "{to}: {line:?} in {}",
                        stdout(&o)
                    );
                }
            }
        }
        let k_quant = to.block_size() == 256;
        assert_eq!(
            converted,
            if k_quant {
                2
            } else if to.block_size() == 1 {
                4
            } else {
                3
            },
            "{to}"
        );
        std::fs::remove_file(&output).unwrap();
    }
    std::fs::remove_file(&input).unwrap();
}

#[test]
fn quantize_safetensors_makes_a_gguf() {
    use blockq::gguf::{GgmlType, GgufFile};
    // w: 2 x 64 F32 (becomes Q8_0), n: a BF16 vector of 64 (becomes F32),
    // s: 2 x 3 BF16 (rows of 3: kept), ids: I64 (skipped).
    let header = r#"{"w":{"dtype":"F32","shape":[2,64],"data_offsets":[0,512]},"n":{"dtype":"BF16","shape":[64],"data_offsets":[512,640]},"s":{"dtype":"BF16","shape":[2,3],"data_offsets":[640,652]},"ids":{"dtype":"I64","shape":[2],"data_offsets":[652,668]}}"#;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    let w: Vec<f32> = (0..128).map(|i| (i as f32 * 0.37).cos()).collect();
    for v in &w {
        bytes.extend_from_slice(&v.to_le_bytes());
    }
    for i in 0..64 + 6 {
        bytes.extend_from_slice(&(((1.0 + i as f32 / 64.0).to_bits() >> 16) as u16).to_le_bytes());
    }
    bytes.extend_from_slice(&[0u8; 16]);
    let input = tmp_file("q.safetensors", &bytes);
    let output = tmp_file("q.gguf", b"");
    let o = blockq(&["quantize", &input, &output, "-t", "Q8_0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipping \"ids\""), "{}", stderr(&o));
    let out = GgufFile::open(&output).unwrap();
    let types: Vec<(&str, GgmlType, &[u64])> = out
        .tensors()
        .iter()
        .map(|t| (t.name.as_str(), t.ggml_type, &t.ne[..]))
        .collect();
    assert_eq!(
        types,
        [
            ("w", GgmlType::Q8_0, &[64, 2][..]),
            ("n", GgmlType::F32, &[64][..]),
            ("s", GgmlType::BF16, &[3, 2][..])
        ]
    );
    let want = blockq::gguf::quantize_tensor(&w, 64, blockq::QuantType::Q8_0).unwrap();
    assert_eq!(out.tensor_data("w").unwrap(), &want[..]);
    let n = out.tensor_f32("n").unwrap();
    assert_eq!(n[..3], [1.0, 1.015625, 1.03125]);
    for p in [input, output] {
        std::fs::remove_file(p).unwrap();
    }
}

#[test]
fn quantize_errors_are_clean() {
    let (bytes, _) = float_model();
    let input = tmp_file("e.gguf", &bytes);
    let o = blockq(&["quantize", &input, "/tmp/x.gguf", "--type", "q3_k"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("q3_k") && stderr(&o).contains("Q4_K"),
        "{}",
        stderr(&o)
    );
    let o = blockq(&["quantize", &input]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let missing = "/nonexistent/in.gguf";
    assert_clean_file_error(
        &blockq(&["quantize", missing, "/tmp/x.gguf", "-t", "q8_0"]),
        missing,
    );
    let bad_out = "/nonexistent/dir/out.gguf";
    assert_clean_file_error(
        &blockq(&["quantize", &input, bad_out, "-t", "q8_0"]),
        bad_out,
    );
    std::fs::remove_file(input).unwrap();
}

/// The Python that has gguf-py and numpy: `BLOCKQ_PYTHON`, else the virtual
/// environment `.ci/llama-reference.sh` makes, else `python3` if it has them.
fn gguf_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BLOCKQ_PYTHON") {
        return Some(p.into());
    }
    let models = std::env::var_os("BLOCKQ_MODELS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/blockq-models"))
        });
    let venv = models.map(|m| m.join(".python-reference/venv/bin/python"));
    let candidates = venv.into_iter().chain([PathBuf::from("python3")]);
    candidates.into_iter().find(|p| {
        Command::new(p)
            .args(["-c", "import gguf, numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

#[test]
fn quantize_matches_gguf_py() {
    // gguf-py writes an F16 model, blockq quantizes it, gguf-py reads the
    // output and compares every tensor with its own quantizer (a port of
    // llama.cpp's reference quantizers).
    let Some(python) = gguf_python() else {
        println!(
            "SKIPPED: quantize_matches_gguf_py (no Python with gguf and numpy; BLOCKQ_PYTHON=...)"
        );
        return;
    };
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/quantize_check.py");
    let input = tmp_file("py-in.gguf", b"");
    let run = |args: &[&str]| {
        let o = Command::new(&python)
            .arg(&script)
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}{}", stdout(&o), stderr(&o));
        stdout(&o)
    };
    run(&["make", &input]);
    for to in blockq::QuantType::ALL {
        let ty = to.name();
        let output = tmp_file(&format!("py-{ty}.gguf"), b"");
        let o = blockq(&["quantize", &input, &output, "--type", ty]);
        assert!(o.status.success(), "{ty}: {}", stderr(&o));
        let report = run(&["check", &input, &output, ty]);
        println!("{}", report.lines().last().unwrap_or_default());
        std::fs::remove_file(&output).unwrap();
    }
    std::fs::remove_file(&input).unwrap();
}

#[test]
fn verify_reports_identical_bits_for_every_weight() {
    let path = data("gguf_py.gguf");
    let file = blockq::gguf::GgufFile::open(&path).unwrap();
    let o = blockq(&["verify", &path, "--batch", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let isas = blockq::dispatch::available().len();
    let threads = if rayon::current_num_threads() > 1 {
        2
    } else {
        1
    };
    let runs = isas * threads * 3;
    assert!(out.contains(&format!("= {runs} runs each")), "{out}");
    let (mut weights, mut block_errors) = (0, Vec::new());
    for t in file.tensors() {
        if file.linear(&t.name, None).is_err() {
            continue;
        }
        weights += 1;
        let row = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(t.name.as_str()))
            .unwrap_or_else(|| panic!("no row for {} in {out}", t.name));
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(cols[3], "identical", "{row}");
        // The error against float64: small, and (int8 activations) not zero
        // for block formats with non-zero weights.
        let err: f64 = cols[4].parse().unwrap();
        assert!(err.is_finite() && err < 0.05, "{row}");
        if t.ggml_type.quant_type().unwrap().is_block_quantized() {
            block_errors.push(err);
        }
    }
    assert!(weights > 0);
    assert!(block_errors.iter().any(|&e| e > 0.0), "{out}");
    assert!(
        out.contains(&format!(
            "{weights} of {weights} weights give identical bits in all {runs} runs"
        )),
        "{out}"
    );
    // A filter that matches nothing is a clean error.
    assert_clean_file_error(
        &blockq(&["verify", &path, "--filter", "no-such-weight"]),
        &path,
    );
}

#[test]
fn bench_shapes_report_limits_json_and_a_plot() {
    let plot = tmp_file("roofline.svg", b"");
    let o = blockq(&[
        "bench",
        "--shape",
        "64x256",
        "--type",
        "q4_0,q6_k,f16",
        "--batch",
        "1,3",
        "--isa",
        "all",
        "--min-time",
        "0",
        "--threads",
        "1",
        "--json",
        "--plot",
        &plot,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // One JSON object; one case per ISA, format and batch (the scalar kernel: batch 1).
    assert!(
        out.starts_with("{\"cpu\":") && out.trim_end().ends_with("]}"),
        "{out}"
    );
    let cases = out.matches("\"median_s\":").count();
    let isas = blockq::dispatch::available();
    let own = |isa: blockq::Isa, q| blockq::dispatch::kernels(isa).unwrap().has_kernel(q);
    let want: usize = isas
        .iter()
        .flat_map(|&i| {
            [
                blockq::QuantType::Q4_0,
                blockq::QuantType::Q6_K,
                blockq::QuantType::F16,
            ]
            .map(|q| {
                if i == blockq::Isa::Scalar || !own(i, q) {
                    1
                } else {
                    2
                }
            })
        })
        .sum();
    assert_eq!(cases, want, "{out}");
    for isa in &isas {
        assert!(
            out.contains(&format!("{{\"isa\":\"{}\",\"int8_gops\":", isa.name())),
            "{out}"
        );
    }
    assert!(out.contains("\"n\":64,\"k\":256,\"m\":3"), "{out}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    std::fs::remove_file(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("read bandwidth") && svg.contains("Q6_K"));
}

#[test]
fn bench_a_file_times_each_format_and_shape_once() {
    let path = data("gguf_py.gguf");
    let file = blockq::gguf::GgufFile::open(&path).unwrap();
    let o = blockq(&[
        "bench",
        &path,
        "--batch",
        "2",
        "--min-time",
        "0",
        "--threads",
        "1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    let mut groups = std::collections::BTreeMap::new();
    for t in file.tensors() {
        if let Ok(l) = file.linear(&t.name, None) {
            *groups
                .entry((l.quant_type.name(), l.out_features, l.in_features))
                .or_insert(0) += 1;
        }
    }
    let best = blockq::dispatch::default_isa().unwrap();
    for ((q, n, k), count) in &groups {
        let row = out
            .lines()
            .find(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c.len() > 4 && c[1] == *q && c[2] == format!("{n}x{k}")
            })
            .unwrap_or_else(|| panic!("no row for {q} {n}x{k} in {out}"));
        let c: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            (c[0], c[3], c[4]),
            (best.name(), &*format!("x{count}"), "2"),
            "{row}"
        );
    }
    assert!(out.contains("%lim"), "{out}");
}

#[test]
fn bench_and_verify_argument_errors_exit_2() {
    for args in [
        &["bench"][..],
        &["bench", "--shape", "64"],
        &["bench", "--shape", "0x64"],
        &["bench", "--shape", "64x64", "--isa", "bogus"],
        &["bench", "--shape", "64x64", "--batch", "0"],
        &["bench", "--shape", "64x64", "--type", "q3_k"],
        &["verify"],
        &["verify", "x.gguf", "--batch", "0"],
    ] {
        let o = blockq(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    }
    let missing = "/nonexistent/m.gguf";
    assert_clean_file_error(&blockq(&["bench", missing]), missing);
    assert_clean_file_error(&blockq(&["verify", missing]), missing);
}

#[test]
fn each_subcommand_has_its_own_help() {
    for (cmd, starts) in [
        ("info", "CPU, the ISAs"),
        ("inspect", "Metadata summary"),
        ("quantize", "Writes a GGUF"),
        ("bench", "Forward-pass speed"),
        ("verify", "Forwards a deterministic batch"),
    ] {
        let o = blockq(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd}: {}", stderr(&o));
        assert!(stdout(&o).starts_with(starts), "{cmd}: {}", stdout(&o));
    }
}
