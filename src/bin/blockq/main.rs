//! `blockq`: what blockq makes of this CPU and of a model file.
//!
//! ```text
//! blockq info [--no-measure]        CPU, ISAs, build, measured limits
//! blockq inspect FILE [--load]      GGUF / safetensors metadata and tensor table
//! blockq quantize IN OUT.gguf --type T
//!                                   2-D F32 / F16 / BF16 weights to T (llama.cpp's bytes)
//! blockq verify FILE                every ISA, thread count and batch split: same bits?
//! blockq bench FILE | --shape NxK  speed per ISA and batch vs the measured limits [--plot]
//! ```
//!
//! Built with the `cli` feature (`cargo run --release --features cli --bin
//! blockq -- info`), so that library users never build its dependencies.
//! Errors are one line on stderr: exit code 1 for files that cannot be read
//! or parsed, 2 for bad arguments.

use blockq::dispatch::{self, Isa};
use blockq::{gguf, QuantType};
use clap::{Parser, Subcommand};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Loads a named weight of an open model file as a layer.
type Loader = Box<dyn Fn(&str) -> Result<blockq::QuantizedLinear, blockq::Error>>;

/// Relative L2 distance of `y` (`[m, n]`) from the float64 product of `x`
/// (`[m, k]`) and the weights `w` (`[n, k]`); the absolute distance when that
/// product is zero.
fn rel_error_f64(w: &[f32], x: &[f32], y: &[f32], (m, k, n): (usize, usize, usize)) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for b in 0..m {
        let xb = &x[b * k..(b + 1) * k];
        for o in 0..n {
            let r: f64 = w[o * k..(o + 1) * k]
                .iter()
                .zip(xb)
                .map(|(&w, &x)| w as f64 * x as f64)
                .sum();
            let d = y[b * n + o] as f64 - r;
            num += d * d;
            den += r * r;
        }
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// A weight of a model file that loads as a layer: `[n, k]` in `quant_type`.
struct Weight {
    name: String,
    quant_type: QuantType,
    n: usize,
    k: usize,
}

/// The weights of a GGUF or safetensors file that load as layers (matrices
/// of a blockq format; safetensors weights in `to`, default as stored), in
/// file order, and their loader (`bench` and `verify`).
fn open_weights(path: &Path, to: Option<QuantType>) -> Result<(Vec<Weight>, Loader), CliError> {
    let magic = read_magic(path)?;
    let err = |e: blockq::Error| file_error(path, e);
    if &magic == b"GGUF" {
        let f = gguf::GgufFile::open(path).map_err(err)?;
        let weights = f
            .tensors()
            .iter()
            .filter(|t| t.ne.len() >= 2 && t.ne[2..].iter().all(|&d| d == 1))
            .filter_map(|t| {
                Some(Weight {
                    name: t.name.clone(),
                    quant_type: t.ggml_type.quant_type()?,
                    n: t.ne[1] as usize,
                    k: t.ne[0] as usize,
                })
            })
            .collect();
        Ok((weights, Box::new(move |name| f.linear(name, None))))
    } else if path.extension().is_some_and(|e| e == "safetensors") {
        let f = blockq::safetensors::SafetensorsFile::open(path).map_err(err)?;
        let weights = f
            .tensors()
            .into_iter()
            .filter(|t| t.shape.len() == 2)
            .filter_map(|t| {
                let stored = t.dtype.parse::<QuantType>().ok()?;
                Some(Weight {
                    quant_type: to.unwrap_or(stored),
                    n: t.shape[0],
                    k: t.shape[1],
                    name: t.name,
                })
            })
            .collect();
        let load: Loader = Box::new(move |name| {
            let stored = f.tensor(name).expect("listed").dtype.parse::<QuantType>()?;
            f.linear(name, None, to.unwrap_or(stored))
        });
        Ok((weights, load))
    } else {
        Err(file_error(
            path,
            "neither GGUF (no \"GGUF\" magic) nor a .safetensors file",
        ))
    }
}

mod bench;
mod plot;
mod quantize;
mod verify;

#[derive(Parser)]
#[command(
    name = "blockq",
    version,
    about = "Bit-exact quantized linear layers: this CPU and your model files"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// CPU, the ISAs blockq can run here and the one it picks, build
    /// provenance, and the machine's measured limits (one thread).
    Info {
        /// Skip the measurements (about 2 s).
        #[arg(long)]
        no_measure: bool,
    },
    /// Metadata summary and tensor table of a GGUF or safetensors file: name,
    /// type, shape, bytes, and whether blockq loads it as a layer (or why not).
    Inspect {
        /// A `.gguf` or `.safetensors` file.
        file: PathBuf,
        /// Load every loadable weight as a layer (packs it; takes time on big
        /// files) instead of checking its type and shape only.
        #[arg(long)]
        load: bool,
    },
    /// Writes a GGUF whose 2-D F32 / F16 / BF16 weights are stored as TYPE,
    /// with the bytes llama.cpp's reference quantizer gives; other tensors
    /// are copied as they are (safetensors vectors become F32). From a GGUF
    /// every metadata pair is carried over (`general.file_type` and
    /// `general.quantization_version` are set as llama.cpp's quantize sets
    /// them); from safetensors, tensors only.
    Quantize {
        /// A `.gguf` file or a `.safetensors` file.
        input: PathBuf,
        /// The GGUF file to write (replaced if it exists).
        output: PathBuf,
        /// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K, F16, BF16 or F32
        /// (any case).
        #[arg(long = "type", short = 't', value_parser = parse_quant_type)]
        quant_type: QuantType,
    },
    /// Forward-pass speed of a file's weights (each format and shape once)
    /// or of synthetic shapes, per ISA and batch size, next to this
    /// machine's limits measured in the same run (read bandwidth, int8 and
    /// f32 FMA peaks).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["file", "shape"])))]
    Bench {
        /// A `.gguf` or `.safetensors` file.
        file: Option<PathBuf>,
        /// Shapes NxK (N outputs, K inputs) instead of a file, comma-separated.
        #[arg(long, value_delimiter = ',')]
        shape: Vec<String>,
        /// Formats of --shape (default Q4_0; `all`: every format),
        /// comma-separated; for a safetensors file, the format to quantize
        /// its weights to.
        #[arg(long = "type", short = 't', value_delimiter = ',', value_parser = parse_quant_types)]
        quant_type: Vec<Vec<QuantType>>,
        /// Batch sizes M, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,8,128")]
        batch: Vec<usize>,
        /// Threads (default: all cores, or RAYON_NUM_THREADS).
        #[arg(long)]
        threads: Option<usize>,
        /// ISAs: `best` (the one blockq picks), `all`, or names, comma-separated.
        #[arg(long, default_value = "best")]
        isa: String,
        /// Seconds spent per case (at least 3 timed runs).
        #[arg(long, default_value_t = 0.3)]
        min_time: f64,
        /// Print the results as JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Write a roofline plot of the cases (SVG).
        #[arg(long)]
        plot: Option<PathBuf>,
    },
    /// Forwards a deterministic batch through every loadable weight of FILE
    /// on every ISA this CPU runs, on one thread and on all, as one batch,
    /// row by row and in uneven parts, and checks that the bits are the
    /// scalar kernel's (exit code 1 if not); reports the error against a
    /// float64 product with the stored weights.
    Verify {
        /// A `.gguf` file or a `.safetensors` file.
        file: PathBuf,
        /// Rows of the input batch.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        batch: u16,
        /// Only the weights whose name contains this.
        #[arg(long)]
        filter: Option<String>,
        /// safetensors weights: the format to quantize them to (default: as stored).
        #[arg(long = "type", short = 't', value_parser = parse_quant_type)]
        quant_type: Option<QuantType>,
    },
}

/// A `--type` value of `bench`: a format, or `all` of them.
fn parse_quant_types(s: &str) -> Result<Vec<QuantType>, String> {
    if s.eq_ignore_ascii_case("all") {
        Ok(QuantType::ALL.to_vec())
    } else {
        parse_quant_type(s).map(|q| vec![q])
    }
}

/// A `--type` value, with the accepted spellings in the usage error.
fn parse_quant_type(s: &str) -> Result<QuantType, String> {
    s.parse::<QuantType>()
        .map_err(|e| blockq::Error::from(e).to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Info { no_measure } => info(!no_measure),
        Command::Inspect { file, load } => inspect(&file, load),
        Command::Quantize {
            input,
            output,
            quant_type,
        } => quantize::run(&input, &output, quant_type),
        Command::Bench {
            file,
            shape,
            quant_type,
            batch,
            threads,
            isa,
            min_time,
            json,
            plot,
        } => bench::run(bench::Opts {
            file,
            shapes: shape,
            types: quant_type.concat(),
            batches: batch,
            threads,
            isa,
            min_time,
            json,
            plot,
        }),
        Command::Verify {
            file,
            batch,
            filter,
            quant_type,
        } => verify::run(&file, batch.into(), filter.as_deref(), quant_type),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("blockq: {e}");
            ExitCode::from(e.code)
        }
    }
}

/// A one-line error and the exit code it maps to.
struct CliError {
    msg: String,
    code: u8,
}

impl std::fmt::Display for CliError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.msg)
    }
}

/// A file that cannot be read or parsed (exit code 1).
fn file_error(path: &Path, e: impl std::fmt::Display) -> CliError {
    CliError {
        msg: format!("{}: {e}", path.display()),
        code: 1,
    }
}

// ---------------------------------------------------------------------------
// info
// ---------------------------------------------------------------------------

fn info(measure: bool) -> Result<(), CliError> {
    println!("cpu:      {}", dispatch::cpu_model());
    let available = dispatch::available();
    let names: Vec<&str> = available.iter().map(|i| i.name()).collect();
    println!(
        "ISAs:     {} (every one gives the same bits)",
        names.join(", ")
    );
    // As `default_isa` reads it: a blank value is no choice.
    let why = match std::env::var(dispatch::ISA_ENV) {
        Ok(v) if !v.trim().is_empty() => format!("named by {}={v}", dispatch::ISA_ENV),
        _ => "the fastest level this CPU runs; BLOCKQ_ISA=<name> overrides".into(),
    };
    let isa = dispatch::default_isa().map_err(|e| CliError {
        msg: e.to_string(),
        code: 2,
    })?;
    println!("chosen:   {isa} ({why})");
    println!("features: {} (what {isa} needs)", isa.features());
    println!(
        "threads:  {} (rayon; RAYON_NUM_THREADS to change)",
        rayon::current_num_threads()
    );
    println!("build:    {}", blockq::build_info());
    if !measure {
        return Ok(());
    }
    println!("\nmeasured limits, one thread (best of several runs; a shared machine varies):");
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .map_err(|e| CliError {
            msg: format!("a thread pool: {e}"),
            code: 1,
        })?;
    let bw = blockq::bench::read_gbs(&one, &vec![1u8; 256 << 20], 0.5);
    println!("  read bandwidth     {bw:8.1} GB/s  (256 MB buffer: bounds batch 1, which reads the weights once)");
    for isa in available.iter().filter(|&&i| i != Isa::Scalar) {
        let p = blockq::bench::Peaks::measure(*isa, &one);
        if let Some(g) = p.int8_gops {
            println!("  {:<11} int8  {g:8.1} GOPS  (multiply-adds x 2: bounds block formats at large batches)", isa.name());
        }
        if let Some(g) = p.fma_gflops {
            println!(
                "  {:<11} f32   {g:8.1} GFLOPS (FMA x 2: bounds F16 / BF16 / F32 at large batches)",
                isa.name()
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------

/// One row of the tensor table.
struct Row {
    name: String,
    ty: String,
    shape: String,
    bytes: u64,
    /// `Ok(())` if blockq loads it as a layer, else why not.
    loads: Result<(), String>,
}

/// The first four bytes of a model file (`GGUF` for GGUF files).
fn read_magic(path: &Path) -> Result<[u8; 4], CliError> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut f = std::fs::File::open(path).map_err(|e| file_error(path, e))?;
    f.read_exact(&mut magic)
        .map_err(|_| file_error(path, "too short to be a GGUF or safetensors file"))?;
    Ok(magic)
}

fn inspect(path: &Path, load: bool) -> Result<(), CliError> {
    let magic = read_magic(path)?;
    let rows = if &magic == b"GGUF" {
        inspect_gguf(path, load)?
    } else if path.extension().is_some_and(|e| e == "safetensors") {
        inspect_safetensors(path, load)?
    } else {
        return Err(file_error(
            path,
            "neither GGUF (no \"GGUF\" magic) nor a .safetensors file",
        ));
    };
    print_table(&rows);
    Ok(())
}

fn inspect_gguf(path: &Path, load: bool) -> Result<Vec<Row>, CliError> {
    let f = gguf::GgufFile::open(path).map_err(|e| file_error(path, e))?;
    println!(
        "{}: GGUF v{}, {} metadata keys, {} tensors, {:.1} MB",
        path.display(),
        f.version(),
        f.metadata().len(),
        f.tensors().len(),
        f.bytes().len() as f64 / 1e6
    );
    for key in ["general.architecture", "general.name", "general.file_type"] {
        if let Some(v) = f.get(key) {
            println!("  {key} = {}", show_value(v));
        }
    }
    let rows = f
        .tensors()
        .iter()
        .map(|t| {
            let quant = t.ggml_type.quant_type();
            let matrix = t.ne.len() >= 2 && t.ne[2..].iter().all(|&d| d == 1);
            let loads = match quant {
                None => Err(format!("type {} not supported", t.ggml_type.name())),
                Some(_) if !matrix && t.ne.len() == 1 => {
                    Err("a vector (norm or bias: read with tensor_f32)".into())
                }
                Some(_) if !matrix => Err("not a matrix".into()),
                Some(_) if load => f
                    .linear(&t.name, None)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                Some(_) => Ok(()),
            };
            Row {
                name: t.name.clone(),
                ty: t.ggml_type.name().to_string(),
                // GGUF lists dimensions innermost first; shown outermost first.
                shape: t
                    .ne
                    .iter()
                    .rev()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" x "),
                bytes: t.size,
                loads,
            }
        })
        .collect();
    Ok(rows)
}

fn inspect_safetensors(path: &Path, load: bool) -> Result<Vec<Row>, CliError> {
    let f = blockq::safetensors::SafetensorsFile::open(path).map_err(|e| file_error(path, e))?;
    let tensors = f.tensors();
    println!(
        "{}: safetensors, {} tensors, {:.1} MB",
        path.display(),
        tensors.len(),
        f.bytes().len() as f64 / 1e6
    );
    let rows = tensors
        .iter()
        .map(|t| {
            let float = matches!(t.dtype.as_str(), "F32" | "F16" | "BF16");
            let loads = if !float {
                Err(format!("type {} not supported", t.dtype))
            } else if t.shape.len() == 1 {
                Err("a vector (norm or bias: read with tensor_f32)".into())
            } else if t.shape.len() != 2 {
                Err("not a matrix".into())
            } else if load {
                let qt: QuantType = t.dtype.parse().expect("F32 / F16 / BF16 are QuantTypes");
                f.linear(&t.name, None, qt)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            } else {
                Ok(())
            };
            let bytes = f.tensor_data(&t.name).map_or(0, |d| d.len() as u64);
            Row {
                name: t.name.clone(),
                ty: t.dtype.clone(),
                shape: t
                    .shape
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(" x "),
                bytes,
                loads,
            }
        })
        .collect();
    Ok(rows)
}

fn show_value(v: &gguf::MetadataValue) -> String {
    use gguf::MetadataValue as V;
    match v {
        V::String(s) => format!("{s:?}"),
        V::U8(x) => x.to_string(),
        V::I8(x) => x.to_string(),
        V::U16(x) => x.to_string(),
        V::I16(x) => x.to_string(),
        V::U32(x) => x.to_string(),
        V::I32(x) => x.to_string(),
        V::U64(x) => x.to_string(),
        V::I64(x) => x.to_string(),
        V::F32(x) => x.to_string(),
        V::F64(x) => x.to_string(),
        V::Bool(x) => x.to_string(),
        V::Array { item_type, len, .. } => format!("[{len} x {item_type:?}]"),
    }
}

fn print_table(rows: &[Row]) {
    let w = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    let ws = rows.iter().map(|r| r.shape.len()).max().unwrap_or(5).max(5);
    println!(
        "\n{:<w$}  {:<6}  {:<ws$}  {:>12}  loads as a layer",
        "name", "type", "shape", "bytes"
    );
    for r in rows {
        let loads = match &r.loads {
            Ok(()) => "yes".to_string(),
            Err(why) => format!("no: {why}"),
        };
        println!(
            "{:<w$}  {:<6}  {:<ws$}  {:>12}  {loads}",
            r.name, r.ty, r.shape, r.bytes
        );
    }
    // Totals per type: tensors, bytes, how many load.
    let mut totals: BTreeMap<&str, (usize, u64, usize)> = BTreeMap::new();
    for r in rows {
        let t = totals.entry(&r.ty).or_default();
        t.0 += 1;
        t.1 += r.bytes;
        t.2 += usize::from(r.loads.is_ok());
    }
    println!(
        "\n{:<6}  {:>7}  {:>12}  {:>6}",
        "type", "tensors", "bytes", "loads"
    );
    for (ty, (n, bytes, ok)) in &totals {
        println!("{ty:<6}  {n:>7}  {bytes:>12}  {ok:>6}");
    }
    let loadable = rows.iter().filter(|r| r.loads.is_ok()).count();
    println!("{loadable} of {} tensors load as blockq layers", rows.len());
}
