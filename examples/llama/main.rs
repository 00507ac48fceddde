//! Runs a Llama-architecture GGUF model (e.g. SmolLM2-135M-Instruct, Q4_1)
//! with every matrix product in blockq's `QuantizedLinear`.
//!
//! ```text
//! .ci/fetch-models.sh   # SmolLM2-135M-Instruct.Q4_1.gguf into ~/.cache/blockq-models
//! cargo run --release --example llama -- ~/.cache/blockq-models/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     --prompt "What is the capital of France?"
//! ```
//!
//! Hyperparameters, vocabulary, merges, pre-tokenizer and chat format come
//! from the file's metadata. The prompt (in the chat template unless `--raw`)
//! runs as one batch; then one token per step through the KV cache, the text
//! streamed as it comes. Greedy unless `--temperature` is above 0 (then
//! sampled with `--seed`). At the end (on stderr): prefill and decode tokens/s,
//! the share of time in blockq's layers, the matmuls' GOPS, and the decode
//! bound `read bandwidth / weight bytes`, the bandwidth of reading the
//! packed weights themselves in the same run on the same threads.

mod model;
mod tokenizer;

use blockq::kernels::peak::read_checksum;
use model::{argmax, Model, Stats};
use rayon::prelude::*;
use std::hint::black_box;
use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;
use tokenizer::Tokenizer;

const USAGE: &str = "\
usage: llama [MODEL.gguf] [options]
  MODEL.gguf          default: $BLOCKQ_SMOLLM2_GGUF, else
                      ${BLOCKQ_MODELS:-~/.cache/blockq-models}/SmolLM2-135M-Instruct.Q4_1.gguf
  --prompt TEXT       the user message (default: What is the capital of France?)
  --system TEXT       system message (default: the chat template's, if any)
  --raw               use the prompt as it is, without the chat template
  --prompt-tokens N   repeat the prompt's tokens to exactly N tokens (prefill benchmark)
  -n, --max-tokens N  tokens to generate at most (default 256)
  --ignore-eos        do not stop at end-of-turn tokens (decode benchmark)
  --temperature T     sample with temperature T (default 0: greedy)
  --top-k K           sample among the K most likely tokens (default 40)
  --seed S            random seed for sampling (default 1)
  --threads N         threads (default: all cores)
  --isa NAME          kernels of this ISA (default: $BLOCKQ_ISA, else the best here)";

struct Args {
    model: std::path::PathBuf,
    prompt: String,
    system: Option<String>,
    raw: bool,
    prompt_tokens: Option<usize>,
    max_tokens: usize,
    ignore_eos: bool,
    temperature: f32,
    top_k: usize,
    seed: u64,
    threads: Option<usize>,
    isa: Option<blockq::Isa>,
}

fn default_model() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("BLOCKQ_SMOLLM2_GGUF").filter(|p| !p.is_empty()) {
        return p.into();
    }
    let dir = match std::env::var_os("BLOCKQ_MODELS").filter(|d| !d.is_empty()) {
        Some(d) => std::path::PathBuf::from(d),
        None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
            .join(".cache/blockq-models"),
    };
    dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        model: default_model(),
        prompt: "What is the capital of France?".into(),
        system: None,
        raw: false,
        prompt_tokens: None,
        max_tokens: 256,
        ignore_eos: false,
        temperature: 0.0,
        top_k: 40,
        seed: 1,
        threads: None,
        isa: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        fn num<T: std::str::FromStr>(name: &str, v: String) -> Result<T, String> {
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        }
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "--prompt" => a.prompt = val("--prompt")?,
            "--system" => a.system = Some(val("--system")?),
            "--raw" => a.raw = true,
            "--prompt-tokens" => a.prompt_tokens = Some(num(&arg, val(&arg)?)?),
            "-n" | "--max-tokens" => a.max_tokens = num(&arg, val(&arg)?)?,
            "--ignore-eos" => a.ignore_eos = true,
            "--temperature" => a.temperature = num(&arg, val(&arg)?)?,
            "--top-k" => a.top_k = num(&arg, val(&arg)?)?,
            "--seed" => a.seed = num(&arg, val(&arg)?)?,
            "--threads" => a.threads = Some(num(&arg, val(&arg)?)?),
            "--isa" => {
                let name = val(&arg)?;
                a.isa = Some(blockq::dispatch::parse_isa(&name).map_err(|e| e.to_string())?);
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s => a.model = s.into(),
        }
    }
    Ok(a)
}

/// xorshift64* random numbers in `[0, 1)`, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn uniform(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// A token drawn from `softmax(logits / temperature)` over the `top_k` most
/// likely tokens.
fn sample(logits: &[f32], temperature: f32, top_k: usize, rng: &mut Rng) -> u32 {
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    let k = top_k.clamp(1, logits.len());
    idx.select_nth_unstable_by(k - 1, |&a, &b| {
        logits[b as usize]
            .total_cmp(&logits[a as usize])
            .then(a.cmp(&b))
    });
    idx.truncate(k);
    let max = idx
        .iter()
        .map(|&i| logits[i as usize])
        .fold(f32::MIN, f32::max);
    let w: Vec<f32> = idx
        .iter()
        .map(|&i| blockq::ops::exp((logits[i as usize] - max) / temperature))
        .collect();
    let mut r = rng.uniform() * w.iter().sum::<f32>();
    for (&i, &wi) in idx.iter().zip(&w) {
        if r < wi {
            return i;
        }
        r -= wi;
    }
    idx[k - 1]
}

/// Read bandwidth (GB/s) of `slices` read in order, each split in
/// contiguous parts over the current rayon pool's threads (as the layers
/// split their rows), best of the passes in about half a second: the
/// machine's limit, not its typical pass.
fn read_bandwidth(slices: &[&[u8]]) -> f64 {
    let bytes: usize = slices.iter().map(|s| s.len()).sum();
    let threads = rayon::current_num_threads();
    let start = Instant::now();
    let mut best = f64::INFINITY;
    while start.elapsed().as_secs_f64() < 0.5 || best.is_infinite() {
        let t = Instant::now();
        for s in slices {
            let part = s.len().div_ceil(threads).max(1);
            black_box(s.par_chunks(part).map(read_checksum).sum::<u64>());
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best / 1e9
}

fn run(a: &Args) -> Result<(), String> {
    let t0 = Instant::now();
    let file = blockq::gguf::GgufFile::open(&a.model)
        .map_err(|e| format!("{}: {e}", a.model.display()))?;
    let mut model = Model::load(&file)?;
    if let Some(isa) = a.isa {
        model.set_isa(isa)?;
    }
    let tok = Tokenizer::from_gguf(&file)?;
    let c = &model.cfg;
    eprintln!(
        "{}: {} layers, width {}, FFN {}, {} heads / {} KV heads of {}, RoPE base {}, \
         vocabulary {}; {:.1} MB of weights per token; loaded in {:.2} s on {} thread(s), ISA {}",
        a.model.display(),
        c.n_layer,
        c.n_embd,
        c.n_ff,
        c.n_head,
        c.n_head_kv,
        c.head_dim,
        c.rope_base,
        tok.len(),
        model.weight_bytes() as f64 / 1e6,
        t0.elapsed().as_secs_f64(),
        rayon::current_num_threads(),
        model.embd.isa(),
    );
    let text = if a.raw {
        a.prompt.clone()
    } else {
        tok.chat_prompt(&a.prompt, a.system.as_deref())?
    };
    let mut prompt = tok.encode(&text);
    if let Some(n) = a.prompt_tokens {
        if prompt.is_empty() || n == 0 {
            return Err("--prompt-tokens needs a non-empty prompt and N > 0".into());
        }
        prompt = prompt.iter().copied().cycle().take(n).collect();
    }
    if prompt.is_empty() {
        return Err("empty prompt".into());
    }
    eprintln!("prompt: {} tokens", prompt.len());
    eprintln!("---");

    let mut cache = model.cache();
    let mut pre = Stats::default();
    let t = Instant::now();
    let mut logits = model.forward(&prompt, &mut cache, false, &mut pre, None)?;
    let prefill_s = t.elapsed().as_secs_f64();

    let mut rng = Rng(a.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut dec = Stats::default();
    let mut decode_s = 0.0;
    let mut generated = 0usize;
    let mut step_s: Vec<f64> = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut out = std::io::stdout().lock();
    while generated < a.max_tokens && cache.len() < model.cfg.context {
        let next = if a.temperature > 0.0 {
            sample(&logits, a.temperature, a.top_k, &mut rng)
        } else {
            argmax(&logits)
        };
        generated += 1;
        if !a.ignore_eos && tok.stop.contains(&next) {
            break;
        }
        // Stream the text, holding back an incomplete UTF-8 sequence.
        pending.extend(tok.token_bytes(next));
        let valid = match std::str::from_utf8(&pending) {
            Ok(s) => s.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => pending.len(),
        };
        out.write_all(&pending[..valid])
            .map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        pending.drain(..valid);
        if generated == a.max_tokens {
            break;
        }
        let t = Instant::now();
        logits = model.forward(&[next], &mut cache, false, &mut dec, None)?;
        step_s.push(t.elapsed().as_secs_f64());
        decode_s += step_s[step_s.len() - 1];
    }
    out.write_all(&pending).map_err(|e| e.to_string())?;
    writeln!(out).map_err(|e| e.to_string())?;
    drop(out);

    eprintln!("---");
    let share = |s: &Stats, total: f64| 100.0 * s.linear.as_secs_f64() / total;
    let att = |s: &Stats, total: f64| 100.0 * s.attention.as_secs_f64() / total;
    eprintln!(
        "prefill: {} tokens in {:.3} s = {:.1} tokens/s; matmuls {:.2} GMAC at {:.1} GOPS; \
         {:.1}% of the time in blockq layers, {:.1}% in attention",
        prompt.len(),
        prefill_s,
        prompt.len() as f64 / prefill_s,
        pre.macs as f64 / 1e9,
        2.0 * pre.macs as f64 / pre.linear.as_secs_f64() / 1e9,
        share(&pre, prefill_s),
        att(&pre, prefill_s),
    );
    if step_s.is_empty() {
        return Ok(());
    }
    let steps = step_s.len();
    let tps = steps as f64 / decode_s;
    step_s.sort_by(f64::total_cmp);
    let (median, fastest) = (1.0 / step_s[steps / 2], 1.0 / step_s[0]);
    eprintln!(
        "decode: {steps} tokens in {decode_s:.3} s = {tps:.1} tokens/s (median step {median:.1}, \
         fastest {fastest:.1} tokens/s); {:.1}% of the time in blockq layers, {:.1}% in attention",
        share(&dec, decode_s),
        att(&dec, decode_s),
    );
    let bytes = model.weight_bytes() as f64;
    // The bound reads the weights themselves (the same pages, in the
    // decode's order, wherever the caches hold them); a fresh buffer of the
    // same size is read too, for comparison.
    let bw = read_bandwidth(&model.weight_slices());
    let buffer: Vec<u8> = (0..model.weight_bytes()).map(|i| i as u8).collect();
    let fresh = read_bandwidth(&[&buffer]);
    drop(buffer);
    let bound = bw * 1e9 / bytes;
    // A step at position p also reads the f32 keys and values of positions
    // 0..=p in every block: on average over the steps, this many bytes.
    let kv_position = (2 * c.n_layer * c.n_head_kv * c.head_dim * 4) as f64;
    let first = prompt.len() as f64;
    let kv = kv_position * (first + 1.0 + (steps as f64 - 1.0) / 2.0);
    let kv_bound = bw * 1e9 / (bytes + kv);
    eprintln!(
        "decode bound: reading the weights {bw:.1} GB/s (best pass, {} thread(s), same run; \
         a fresh buffer of that size {fresh:.1}) / {:.1} MB of weights = {bound:.1} tokens/s; \
         decode at {:.0}% of it (median step {:.0}%); blockq layers alone read the weights at \
         {:.1} GB/s ({:.0}% of the bandwidth)",
        rayon::current_num_threads(),
        bytes / 1e6,
        100.0 * tps / bound,
        100.0 * median / bound,
        bytes * steps as f64 / dec.linear.as_secs_f64() / 1e9,
        100.0 * bytes * steps as f64 / dec.linear.as_secs_f64() / 1e9 / bw,
    );
    eprintln!(
        "with the KV cache it reads ({:.1} MB per token on average): bound {kv_bound:.1} \
         tokens/s; decode at {:.0}% of it",
        kv / 1e6,
        100.0 * tps / kv_bound,
    );
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match args.threads {
        Some(n) => match rayon::ThreadPoolBuilder::new().num_threads(n).build() {
            Ok(pool) => pool.install(|| run(&args)),
            Err(e) => Err(e.to_string()),
        },
        None => run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
