//! A whole model next to a peer: examples/llama (blockq layers) and
//! candle-transformers' `quantized_llama` on the same GGUF, same tokens,
//! same threads, in one run.
//!
//! `cargo run --release -p blockq-peers --bin llama -- [MODEL.gguf] [--threads N]
//! [--prompt-tokens N] [--decode N] [--runs N]`
//!
//! Each run: a prefill of `--prompt-tokens` tokens (default 128: the chat
//! prompt's tokens repeated) as one batch, then `--decode` single-token steps
//! (default 128) through the KV cache, the inputs fixed (the prompt's tokens
//! again) so that both libraries do the same work. The libraries alternate,
//! run after run; the table gives each one's best run (a shared machine's
//! load only slows runs down) and blockq's speed-up. Threads: as in the
//! peers' main benchmark, `RAYON_NUM_THREADS` and `CANDLE_NUM_THREADS` are
//! set before any pool starts.

#[allow(dead_code)]
#[path = "../../../../examples/llama/model.rs"]
mod model;
#[allow(dead_code)]
#[path = "../../../../examples/llama/tokenizer.rs"]
mod tokenizer;

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};
use candle_transformers::models::quantized_llama::ModelWeights;
use std::time::Instant;

const USAGE: &str = "\
usage: llama [MODEL.gguf] [--threads N] [--prompt-tokens N] [--decode N] [--runs N]
  MODEL.gguf        default: ${BLOCKQ_MODELS:-~/.cache/blockq-models}/SmolLM2-135M-Instruct.Q4_1.gguf
  --threads N       threads for both libraries (default 1)
  --prompt-tokens N prefill length (default 128)
  --decode N        decode steps (default 128)
  --runs N          runs per library, alternating (default 3)";

/// Seconds of (prefill, decode) and the first predicted token.
type Run = (f64, f64, u32);

fn blockq_run(m: &model::Model, prompt: &[u32], steps: &[u32]) -> Result<Run, String> {
    let mut cache = m.cache();
    let mut stats = model::Stats::default();
    let t = Instant::now();
    let logits = m.forward(prompt, &mut cache, false, &mut stats, None)?;
    let prefill = t.elapsed().as_secs_f64();
    let first = model::argmax(&logits);
    let t = Instant::now();
    for &tok in steps {
        m.forward(&[tok], &mut cache, false, &mut stats, None)?;
    }
    Ok((prefill, t.elapsed().as_secs_f64(), first))
}

fn candle_run(m: &mut ModelWeights, prompt: &[u32], steps: &[u32]) -> candle_core::Result<Run> {
    m.clear_kv_cache();
    let dev = Device::Cpu;
    let t = Instant::now();
    let logits = m.forward(&Tensor::new(prompt, &dev)?.unsqueeze(0)?, 0)?;
    let logits: Vec<f32> = logits.squeeze(0)?.to_vec1()?;
    let prefill = t.elapsed().as_secs_f64();
    let first = model::argmax(&logits);
    let t = Instant::now();
    for (i, &tok) in steps.iter().enumerate() {
        let l = m.forward(&Tensor::new(&[tok], &dev)?.unsqueeze(0)?, prompt.len() + i)?;
        std::hint::black_box(l.squeeze(0)?.to_vec1::<f32>()?);
    }
    Ok((prefill, t.elapsed().as_secs_f64(), first))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut path = {
        let dir = std::env::var_os("BLOCKQ_MODELS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| {
                std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                    .join(".cache/blockq-models")
            });
        dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
    };
    let (mut threads, mut n_prompt, mut n_decode, mut runs) = (1usize, 128usize, 128usize, 3usize);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize, String> {
            let v = args.next().ok_or(format!("{name} needs a value"))?;
            v.parse().map_err(|e| format!("{name} {v:?}: {e}"))
        };
        match a.as_str() {
            "--threads" => threads = num(&a)?,
            "--prompt-tokens" => n_prompt = num(&a)?,
            "--decode" => n_decode = num(&a)?,
            "--runs" => runs = num(&a)?,
            "-h" | "--help" => {
                eprintln!("{USAGE}");
                return Ok(());
            }
            s if s.starts_with('-') => return Err(format!("unknown option {s}\n{USAGE}").into()),
            s => path = s.into(),
        }
    }
    // Before any thread pool exists.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());

    let file = blockq::gguf::GgufFile::open(&path)?;
    let bq = model::Model::load(&file)?;
    let tok = tokenizer::Tokenizer::from_gguf(&file)?;
    let ids = tok.encode(&tok.chat_prompt("What is the capital of France?", None)?);
    let prompt: Vec<u32> = ids.iter().copied().cycle().take(n_prompt).collect();
    let steps: Vec<u32> = ids.iter().copied().cycle().take(n_decode).collect();

    let mut reader = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut reader)?;
    let mut cm = ModelWeights::from_gguf(content, &mut reader, &Device::Cpu)?;

    println!(
        "{}: prefill {n_prompt} tokens, then {n_decode} decode steps; {threads} thread(s); \
         blockq ISA {}; best of {runs} runs each",
        path.display(),
        bq.embd.isa()
    );
    let (mut b, mut c) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        b.push(blockq_run(&bq, &prompt, &steps)?);
        c.push(candle_run(&mut cm, &prompt, &steps)?);
    }
    let best = |v: &[Run], f: fn(&Run) -> f64| v.iter().map(f).fold(f64::INFINITY, f64::min);
    let (bp, bd) = (best(&b, |r| r.0), best(&b, |r| r.1));
    let (cp, cd) = (best(&c, |r| r.0), best(&c, |r| r.1));
    println!("| | blockq | candle-transformers 0.11 | blockq / candle |");
    println!("|---|---|---|---|");
    println!(
        "| prefill tokens/s | {:.1} | {:.1} | {:.2}x |",
        n_prompt as f64 / bp,
        n_prompt as f64 / cp,
        cp / bp
    );
    println!(
        "| decode tokens/s | {:.1} | {:.1} | {:.2}x |",
        n_decode as f64 / bd,
        n_decode as f64 / cd,
        cd / bd
    );
    println!(
        "first greedy token after the prompt: blockq {} {:?}, candle {} {:?}",
        b[0].2,
        String::from_utf8_lossy(&tok.token_bytes(b[0].2)),
        c[0].2,
        String::from_utf8_lossy(&tok.token_bytes(c[0].2)),
    );
    Ok(())
}
