//! `blockq quantize IN OUT.gguf --type T`: llama.cpp's quantize, for the
//! formats blockq runs.
//!
//! The output is planned whole (metadata, then every tensor's type and
//! shape, so the header is written first), then each tensor is read,
//! quantized and streamed out in the input's order: memory holds one tensor.

use super::{file_error, CliError};
use blockq::gguf::{self, GgmlType, GgufWriter, MetadataValue};
use blockq::QuantType;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::BufWriter;
use std::path::Path;
use std::time::Instant;

/// One output tensor: where its values come from and what it becomes.
struct Job {
    name: String,
    /// GGUF dimensions, innermost first.
    ne: Vec<u64>,
    /// Type in the input (a GGUF type; safetensors dtypes are mapped).
    from: GgmlType,
    to: GgmlType,
    /// Why a weight-like tensor is not converted to the target type.
    kept: Option<String>,
}

/// llama.cpp's `general.file_type` (`llama_ftype`) for a file whose weights
/// are all of one type (the `_S` variant for k-quants: no mixing).
fn file_type(t: QuantType) -> u32 {
    match t {
        QuantType::F32 => 0,
        QuantType::F16 => 1,
        QuantType::Q4_0 => 2,
        QuantType::Q4_1 => 3,
        QuantType::Q8_0 => 7,
        QuantType::Q5_0 => 8,
        QuantType::Q5_1 => 9,
        QuantType::Q4_K => 14,
        QuantType::Q5_K => 16,
        QuantType::Q6_K => 18,
        QuantType::BF16 => 32,
    }
}

/// ggml's quantization version, which llama.cpp's quantize writes.
const QUANTIZATION_VERSION: u32 = 2;

/// What a tensor of `from` with dimensions `ne` becomes under `--type to`:
/// matrices (two or more dimensions) of F32 / F16 / BF16 whose rows hold
/// whole blocks become `to`; everything else stays as it is.
fn plan(name: &str, ne: &[u64], from: GgmlType, to: QuantType) -> Job {
    let float = [GgmlType::F32, GgmlType::F16, GgmlType::BF16].contains(&from);
    let row = ne.first().copied().unwrap_or(1);
    let kept = if !float {
        (ne.len() >= 2).then(|| format!("already {from}"))
    } else if ne.len() < 2 {
        None
    } else if row % to.block_size() as u64 != 0 {
        Some(format!(
            "rows of {row} values are not a multiple of {to}'s block size {}",
            to.block_size()
        ))
    } else {
        return Job {
            name: name.into(),
            ne: ne.to_vec(),
            from,
            to: to.into(),
            kept: None,
        };
    };
    Job {
        name: name.into(),
        ne: ne.to_vec(),
        from,
        to: from,
        kept,
    }
}

pub(crate) fn run(input: &Path, output: &Path, to: QuantType) -> Result<(), CliError> {
    let t0 = Instant::now();
    let magic = super::read_magic(input)?;
    let mut writer = GgufWriter::new();
    let out_err = |e: blockq::Error| file_error(output, e);
    let in_err = |e: blockq::Error| file_error(input, e);

    // The input's tensors, and a reader of each one's output bytes.
    enum Source {
        Gguf(gguf::GgufFile),
        Safetensors(blockq::safetensors::SafetensorsFile),
    }
    let (source, jobs) = if &magic == b"GGUF" {
        let f = gguf::GgufFile::open(input).map_err(in_err)?;
        writer
            .copy_metadata(&f, |k| {
                k != "general.file_type" && k != "general.quantization_version"
            })
            .map_err(out_err)?;
        let jobs = f
            .tensors()
            .iter()
            .map(|t| plan(&t.name, &t.ne, t.ggml_type, to))
            .collect();
        (Source::Gguf(f), jobs)
    } else if input.extension().is_some_and(|e| e == "safetensors") {
        let f = blockq::safetensors::SafetensorsFile::open(input).map_err(in_err)?;
        let mut jobs = Vec::new();
        for t in f.tensors() {
            let from = match t.dtype.as_str() {
                "F32" => GgmlType::F32,
                "F16" => GgmlType::F16,
                "BF16" => GgmlType::BF16,
                other => {
                    eprintln!(
                        "blockq: skipping {:?}: dtype {other} is not a float",
                        t.name
                    );
                    continue;
                }
            };
            // safetensors lists dimensions outermost first.
            let ne: Vec<u64> = t.shape.iter().rev().map(|&d| d as u64).collect();
            let mut job = plan(&t.name, &ne, from, to);
            if ne.len() < 2 {
                job.to = GgmlType::F32; // norms and biases as llama.cpp's converters store them
            }
            jobs.push(job);
        }
        (Source::Safetensors(f), jobs)
    } else {
        return Err(file_error(
            input,
            "neither GGUF (no \"GGUF\" magic) nor a .safetensors file",
        ));
    };
    writer
        .add_metadata(
            "general.quantization_version",
            MetadataValue::U32(QUANTIZATION_VERSION),
        )
        .map_err(out_err)?;
    writer
        .add_metadata("general.file_type", MetadataValue::U32(file_type(to)))
        .map_err(out_err)?;
    for j in &jobs {
        writer.add_tensor(&j.name, j.to, &j.ne).map_err(out_err)?;
    }

    let file = std::fs::File::create(output).map_err(|e| file_error(output, e))?;
    let total_in: u64 = jobs.iter().map(|j| bytes_of(j.from, &j.ne)).sum();
    let bar = ProgressBar::new(total_in).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} {msg}")
            .expect("a valid template"),
    );
    let result = (|| {
        let mut data = writer.write(BufWriter::new(file)).map_err(out_err)?;
        for j in &jobs {
            bar.set_message(j.name.clone());
            let raw: &[u8] = match &source {
                Source::Gguf(f) => f.tensor_data(&j.name).map_err(in_err)?,
                Source::Safetensors(f) => f.tensor_data(&j.name).map_err(in_err)?,
            };
            if j.to == j.from {
                data.tensor(raw).map_err(out_err)?;
            } else {
                let values = match &source {
                    Source::Gguf(f) => f.tensor_f32(&j.name),
                    Source::Safetensors(f) => f.tensor_f32(&j.name),
                }
                .map_err(in_err)?;
                let to = j.to.quant_type().expect("targets are blockq formats");
                let row = j.ne.first().copied().unwrap_or(1) as usize;
                let bytes = gguf::quantize_tensor(&values, row, to).map_err(out_err)?;
                data.tensor(&bytes).map_err(out_err)?;
            }
            bar.inc(raw.len() as u64);
        }
        data.finish().map_err(out_err)
    })();
    bar.finish_and_clear();
    if let Err(e) = result {
        let _ = std::fs::remove_file(output);
        return Err(e);
    }

    // Summary: what became what.
    let target = GgmlType::from(to);
    let is_converted = |j: &&Job| j.to != j.from && j.to == target;
    let converted = jobs.iter().filter(is_converted).count();
    let out_bytes = std::fs::metadata(output).map_or(0, |m| m.len());
    let secs = t0.elapsed().as_secs_f64();
    let mut from: std::collections::BTreeMap<&str, usize> = Default::default();
    for j in jobs.iter().filter(is_converted) {
        *from.entry(j.from.name()).or_default() += 1;
    }
    let from: Vec<String> = from.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!(
        "{}: {} tensors, {converted} converted to {} (from {}), {:.1} MB -> {:.1} MB in {secs:.1} s ({:.2} GB/s of input)",
        output.display(),
        jobs.len(),
        to.name(),
        if from.is_empty() { "none".into() } else { from.join(", ") },
        total_in as f64 / 1e6,
        out_bytes as f64 / 1e6,
        total_in as f64 / secs / 1e9,
    );
    for j in jobs.iter().filter(|j| j.kept.is_some()) {
        println!(
            "  kept {} as {}: {}",
            j.name,
            j.to.name(),
            j.kept.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}

/// Bytes of a tensor of `t` with dimensions `ne` (validated by the planner).
fn bytes_of(t: GgmlType, ne: &[u64]) -> u64 {
    ne.iter().product::<u64>() / t.block_size() * t.type_size()
}
