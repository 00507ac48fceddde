//! `blockq bench FILE | --shape NxK --type T`: forward-pass speed next to
//! this machine's limits, measured in the same run.
//!
//! Each case (ISA, format, N x K, batch M) is timed on a pool of the chosen
//! thread count; its limit is the roofline bound of [`blockq::bench`]: the
//! read bandwidth of a buffer as large as the weights (so cache-resident
//! weights are compared with cache bandwidth) and the ISA's int8 or f32 FMA
//! peak, both measured on the same pool. A file's weights are grouped by
//! format and shape: each group is timed once.

use super::{file_error, CliError};
use blockq::bench::{read_gbs, run_times, Bound, Peaks};
use blockq::{dispatch, Isa, QuantType, QuantizedLinear};
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What to run: the layer of one (format, N, K) group and how many weights
/// of the file it stands for.
struct Group {
    layer: QuantizedLinear,
    count: usize,
    /// Synthetic layers: the relative L2 error of a forwarded row against
    /// a float64 product with the f32 weights before quantization.
    error: Option<f64>,
}

/// Relative L2 error of `layer`'s output for one deterministic row against
/// the float64 product of that row with the f32 weights `w` ([N, K]).
fn error_vs_f32(layer: &QuantizedLinear, w: &[f32]) -> f64 {
    let (n, k) = (layer.out_features, layer.in_features);
    let x: Vec<f32> = (0..k)
        .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let y = layer.forward_f32(&x, 1);
    super::rel_error_f64(w, &x, &y, (1, k, n))
}

/// One measured case.
pub(crate) struct Case {
    isa: Isa,
    quant_type: QuantType,
    n: usize,
    k: usize,
    m: usize,
    count: usize,
    threads: usize,
    median: f64,
    best: f64,
    bytes: usize,
    read_gbs: f64,
    bound: Bound,
}

impl Case {
    fn ops(&self) -> f64 {
        2.0 * (self.m * self.n * self.k) as f64
    }
    fn gops(&self) -> f64 {
        self.ops() / self.median / 1e9
    }
    fn gbs(&self) -> f64 {
        self.bytes as f64 / self.median / 1e9
    }
}

pub(crate) struct Opts {
    pub file: Option<PathBuf>,
    pub shapes: Vec<String>,
    pub types: Vec<QuantType>,
    pub batches: Vec<usize>,
    pub threads: Option<usize>,
    pub isa: String,
    pub min_time: f64,
    pub json: bool,
    pub plot: Option<PathBuf>,
}

fn usage(msg: impl Into<String>) -> CliError {
    CliError {
        msg: msg.into(),
        code: 2,
    }
}

/// Deterministic weights in [-0.05, 0.05) (a shape's synthetic layer).
fn weights(n: usize, k: usize) -> Vec<f32> {
    let mut s: u64 = 0x2545_F491_4F6C_DD1D ^ (n * 31 + k) as u64;
    (0..n * k)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.1
        })
        .collect()
}

fn parse_shape(s: &str) -> Result<(usize, usize), CliError> {
    let bad = || {
        usage(format!(
            "--shape {s:?}: expected NxK (N outputs, K inputs), e.g. 4096x4096"
        ))
    };
    let (n, k) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (n, k) = (
        n.trim().parse().map_err(|_| bad())?,
        k.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || k == 0 {
        return Err(bad());
    }
    Ok((n, k))
}

fn parse_isas(s: &str) -> Result<Vec<Isa>, CliError> {
    let available = dispatch::available();
    match s {
        "best" => Ok(vec![
            dispatch::default_isa().map_err(|e| usage(e.to_string()))?
        ]),
        "all" => Ok(available),
        list => list
            .split(',')
            .map(|name| {
                let isa = dispatch::parse_isa(name.trim()).map_err(|e| usage(e.to_string()))?;
                if available.contains(&isa) {
                    Ok(isa)
                } else {
                    Err(usage(format!("--isa {name}: this CPU cannot run it")))
                }
            })
            .collect(),
    }
}

/// The groups of a model file: each (format, N, K) of its loadable weights.
fn file_groups(path: &Path, to: Option<QuantType>) -> Result<Vec<Group>, CliError> {
    let err = |e: blockq::Error| file_error(path, e);
    let (weights, load) = super::open_weights(path, to)?;
    // (format, n, k) -> (count, first weight's name)
    let mut groups: BTreeMap<(QuantType, usize, usize), (usize, String)> = BTreeMap::new();
    for w in weights {
        groups
            .entry((w.quant_type, w.n, w.k))
            .or_insert((0, w.name))
            .0 += 1;
    }
    if groups.is_empty() {
        return Err(file_error(path, "no weight blockq loads as a layer"));
    }
    groups
        .into_iter()
        .map(|(_, (count, name))| {
            Ok(Group {
                layer: load(&name).map_err(err)?,
                count,
                error: None,
            })
        })
        .collect()
}

pub(crate) fn run(o: Opts) -> Result<(), CliError> {
    let isas = parse_isas(&o.isa)?;
    if o.batches.contains(&0) {
        return Err(usage("--batch: batch sizes must be at least 1"));
    }
    if !(o.min_time.is_finite() && o.min_time >= 0.0) {
        return Err(usage("--min-time: a number of seconds"));
    }
    let mut groups = match &o.file {
        Some(path) => {
            if o.types.len() > 1 {
                return Err(usage("--type: one format for a file's safetensors weights"));
            }
            file_groups(path, o.types.first().copied())?
        }
        None => {
            let types = if o.types.is_empty() {
                vec![QuantType::Q4_0]
            } else {
                o.types.clone()
            };
            let mut g = Vec::new();
            for s in &o.shapes {
                let (n, k) = parse_shape(s)?;
                let w = weights(n, k);
                for &q in &types {
                    let layer = QuantizedLinear::try_from_linear_params(&w, None, k, n, q)
                        .map_err(|e| usage(format!("--shape {s} --type {q}: {e}")))?;
                    let error = Some(error_vs_f32(&layer, &w));
                    g.push(Group {
                        layer,
                        count: 1,
                        error,
                    });
                }
            }
            g
        }
    };
    let threads = o.threads.unwrap_or_else(rayon::current_num_threads);
    if threads == 0 {
        return Err(usage("--threads: at least 1"));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| usage(format!("--threads {threads}: {e}")))?;

    if !o.json {
        println!(
            "blockq bench: {}; {threads} thread(s); {}",
            dispatch::cpu_model(),
            blockq::build_info()
        );
        println!(
            "measuring the limits on {threads} thread(s) (int8 and f32 FMA peaks per ISA) ..."
        );
    }
    let peaks: Vec<Peaks> = isas.iter().map(|&i| Peaks::measure(i, &pool)).collect();
    // The scalar kernel (the scalar ISA, or the fallback of an ISA without
    // a kernel of its own) runs batch 1 only: larger batches take seconds
    // per call.
    let scalar = |isa: Isa, q: QuantType| {
        isa == Isa::Scalar
            || !dispatch::kernels(isa)
                .expect("an available ISA")
                .has_kernel(q)
    };
    let batches = |isa: Isa, q: QuantType| -> Vec<usize> {
        o.batches
            .iter()
            .copied()
            .filter(|&m| !scalar(isa, q) || m == 1)
            .collect()
    };
    let n_cases: usize = groups
        .iter()
        .flat_map(|g| isas.iter().map(|&i| batches(i, g.layer.quant_type).len()))
        .sum();
    let bar = ProgressBar::new(n_cases as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} {msg}").expect("a valid template"),
    );
    let mut cases = Vec::new();
    for g in &mut groups {
        let layer = &mut g.layer;
        let (n, k) = (layer.out_features, layer.in_features);
        let bytes = layer.weight_bytes();
        let buf = vec![1u8; layer.packed().storage_bytes()];
        let bw = read_gbs(&pool, &buf, o.min_time.min(0.2));
        drop(buf);
        for (&isa, &pk) in isas.iter().zip(&peaks) {
            layer.set_isa(isa).expect("an available ISA");
            for m in batches(isa, layer.quant_type) {
                bar.set_message(format!("{isa} {} {n}x{k} M={m}", layer.quant_type));
                let x: Vec<f32> = (0..m * k)
                    .map(|i| ((i % 251) as f32 - 125.0) / 64.0)
                    .collect();
                let mut y = vec![0.0f32; m * n];
                let t = pool.install(|| {
                    run_times(o.min_time, || {
                        layer.forward_into(&x, m, &mut y).expect("shapes match")
                    })
                });
                let ops = 2.0 * (m * n * k) as f64;
                cases.push(Case {
                    isa,
                    quant_type: layer.quant_type,
                    n,
                    k,
                    m,
                    count: g.count,
                    threads,
                    median: t[t.len() / 2],
                    best: t[0],
                    bytes,
                    read_gbs: bw,
                    bound: Bound::of(bytes as f64, ops, layer.quant_type, bw, pk),
                });
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();

    if o.json {
        print_json(&cases, &isas, &peaks);
    } else {
        print_table(&cases, &groups, &isas, &peaks);
    }
    if let Some(path) = &o.plot {
        super::plot::roofline(path, &cases_for_plot(&cases), &isas, &peaks)
            .map_err(|e| file_error(path, e))?;
        if !o.json {
            println!("roofline plot: {}", path.display());
        }
    }
    Ok(())
}

fn fmt_peak(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

fn print_table(cases: &[Case], groups: &[Group], isas: &[Isa], peaks: &[Peaks]) {
    for (isa, p) in isas.iter().zip(peaks) {
        println!(
            "  {:<11} int8 peak {:>6} GOPS, f32 FMA peak {:>6} GFLOPS",
            isa.name(),
            fmt_peak(p.int8_gops),
            fmt_peak(p.fma_gflops)
        );
    }
    if groups.iter().any(|g| g.error.is_some()) {
        println!(
            "\n{:<5} {:>11} {:>12} {:>11}  (one row, any ISA: all give the same bits)",
            "type", "bits/weight", "NxK", "rel. error"
        );
        for g in groups {
            if let Some(e) = g.error {
                let l = &g.layer;
                println!(
                    "{:<5} {:>11.2} {:>12} {:>11.2e}",
                    l.quant_type.name(),
                    8.0 * l.weight_bytes() as f64 / (l.out_features * l.in_features) as f64,
                    format!("{}x{}", l.out_features, l.in_features),
                    e
                );
            }
        }
        println!(
            "rel. error: the relative L2 distance of the layer's output from a float64 product \
             with the f32 weights before quantization. It is mostly the weights' rounding: \
             weights uniform in [-a, a] rounded to 16 levels (Q4_0) err by about 1/16 of \
             their size (6%), 32 levels (Q5_0) 3%, 256 (Q8_0) 0.4%; the int8 activations \
             add about 0.5%, F16 / BF16 weights 0.02% / 0.2%."
        );
    }
    if groups.iter().any(|g| g.count > 1) {
        println!("(weights of the same format and shape are timed once: \"x count\")");
    }
    println!(
        "\n{:<11} {:<5} {:>12} {:>6} {:>4} {:>10} {:>9} {:>8} {:>8} {:>9} {:>5} {:>5}",
        "isa",
        "type",
        "NxK",
        "count",
        "M",
        "median ms",
        "best ms",
        "GB/s",
        "GOPS",
        "read GB/s",
        "bound",
        "%lim"
    );
    for c in cases {
        println!(
            "{:<11} {:<5} {:>12} {:>6} {:>4} {:>10.3} {:>9.3} {:>8.1} {:>8.1} {:>9.1} {:>5} {:>4.0}%",
            c.isa.name(),
            c.quant_type.name(),
            format!("{}x{}", c.n, c.k),
            format!("x{}", c.count),
            c.m,
            c.median * 1e3,
            c.best * 1e3,
            c.gbs(),
            c.gops(),
            c.read_gbs,
            c.bound.name,
            c.bound.percent(c.median)
        );
    }
    println!(
        "\nGB/s: weight bytes read per second (each forward reads the weights once). GOPS: 2 x M x N x K \
         per second. read GB/s: this machine reading a buffer as large as the weights, \
         on the same threads. bound: what limits the case (mem: the read bandwidth; int8 / fma: \
         the ISA's peak). %lim: the fastest possible time under that bound over the median time."
    );
}

/// Minimal JSON escaping for names (quotes, backslashes, control characters).
fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v}"),
        _ => "null".into(),
    }
}

fn print_json(cases: &[Case], isas: &[Isa], peaks: &[Peaks]) {
    let limits: Vec<String> = isas
        .iter()
        .zip(peaks)
        .map(|(i, p)| {
            format!(
                "{{\"isa\":{},\"int8_gops\":{},\"fma_gflops\":{}}}",
                json_str(i.name()),
                json_num(p.int8_gops),
                json_num(p.fma_gflops)
            )
        })
        .collect();
    let rows: Vec<String> = cases
        .iter()
        .map(|c| {
            format!(
                "{{\"isa\":{},\"type\":{},\"n\":{},\"k\":{},\"m\":{},\"count\":{},\"threads\":{},\
                 \"median_s\":{},\"best_s\":{},\"weight_bytes\":{},\"gbs\":{},\"gops\":{},\
                 \"read_gbs\":{},\"bound\":{},\"percent_of_limit\":{}}}",
                json_str(c.isa.name()),
                json_str(c.quant_type.name()),
                c.n,
                c.k,
                c.m,
                c.count,
                c.threads,
                json_num(Some(c.median)),
                json_num(Some(c.best)),
                c.bytes,
                json_num(Some(c.gbs())),
                json_num(Some(c.gops())),
                json_num(Some(c.read_gbs)),
                json_str(c.bound.name),
                json_num(Some(c.bound.percent(c.median)))
            )
        })
        .collect();
    println!(
        "{{\"cpu\":{},\"build\":{},\"limits\":[{}],\"cases\":[\n{}\n]}}",
        json_str(&dispatch::cpu_model()),
        json_str(&blockq::build_info().to_string()),
        limits.join(","),
        rows.join(",\n")
    );
}

/// The cases as plot points: (ISA, format, arithmetic intensity in ops per
/// weight byte, GOPS, read GB/s of the case).
fn cases_for_plot(cases: &[Case]) -> Vec<super::plot::Point> {
    cases
        .iter()
        .map(|c| super::plot::Point {
            isa: c.isa,
            quant_type: c.quant_type,
            intensity: c.ops() / c.bytes as f64,
            gops: c.gops(),
            read_gbs: c.read_gbs,
        })
        .collect()
}
