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
