//! A Llama-architecture transformer from a GGUF file, every matrix product
//! a blockq [`QuantizedLinear`].
//!
//! Batch invariance: the logits of a position do not depend on how the
//! prompt is cut into batches, on the thread count or on the kernel ISA.
//! blockq's layers give that for the matrix products (a row's result does not
//! depend on the other rows); everything else here computes one row at a time
//! with one fixed sequence of f32 operations: RoPE here, and RMSNorm, SwiGLU
//! and attention from [`blockq::ops`] (defined there, the same bits on every
//! CPU), where a query row reads the KV cache positions `0..=pos` in order,
//! whether they were written by this batch or earlier ones.

use super::tokenizer::{meta_str, meta_u64};
use blockq::gguf::{GgufFile, MetadataValue};
use blockq::ops::{attend_heads, rms_norm, silu_mul};
use blockq::{Isa, QuantizedLinear};
use rayon::prelude::*;
use std::time::{Duration, Instant};

/// Hyperparameters, from `{arch}.*` metadata keys.
#[derive(Clone, Debug)]
pub struct Config {
    /// `general.architecture` (the prefix of the other keys).
    pub arch: String,
    /// Transformer blocks.
    pub n_layer: usize,
    /// Width of the residual stream.
    pub n_embd: usize,
    /// FFN hidden width.
    pub n_ff: usize,
    /// Query heads.
    pub n_head: usize,
    /// Key/value heads (grouped-query attention when fewer than `n_head`).
    pub n_head_kv: usize,
    /// Width of one head.
    pub head_dim: usize,
    /// Leading dimensions of each head that RoPE rotates.
    pub rope_dim: usize,
    /// RoPE frequency base.
    pub rope_base: f64,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Vocabulary size (rows of the output matrix).
    pub vocab: usize,
    /// Trained context length (the KV cache may not grow beyond it).
    pub context: usize,
}

fn meta_f64(file: &GgufFile, key: &str) -> Option<f64> {
    match file.get(key)? {
        MetadataValue::F32(v) => Some(*v as f64),
        MetadataValue::F64(v) => Some(*v),
        _ => meta_u64(file, key).map(|v| v as f64),
    }
}

impl Config {
    /// Reads the hyperparameters. Errors name a missing key.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, String> {
        let arch = meta_str(file, "general.architecture")
            .ok_or("general.architecture missing")?
            .to_string();
        if arch != "llama" {
            return Err(format!(
                "general.architecture = {arch}: this program runs llama models"
            ));
        }
        let need = |k: &str| {
            meta_u64(file, &format!("{arch}.{k}"))
                .map(|v| v as usize)
                .ok_or(format!("metadata key {arch}.{k} missing"))
        };
        let n_embd = need("embedding_length")?;
        let n_head = need("attention.head_count")?;
        let n_head_kv = need("attention.head_count_kv").unwrap_or(n_head);
        let head_dim = need("attention.key_length").unwrap_or(n_embd / n_head.max(1));
        let embd = file
            .tensor("token_embd.weight")
            .ok_or("tensor token_embd.weight missing")?;
        let cfg = Config {
            n_layer: need("block_count")?,
            n_embd,
            n_ff: need("feed_forward_length")?,
            n_head,
            n_head_kv,
            head_dim,
            rope_dim: need("rope.dimension_count").unwrap_or(head_dim),
            rope_base: meta_f64(file, &format!("{arch}.rope.freq_base")).unwrap_or(10_000.0),
            eps: meta_f64(file, &format!("{arch}.attention.layer_norm_rms_epsilon"))
                .ok_or(format!("{arch}.attention.layer_norm_rms_epsilon missing"))?
                as f32,
            vocab: need("vocab_size").unwrap_or(embd.ne.get(1).copied().unwrap_or(0) as usize),
            context: need("context_length")?,
            arch,
        };
        if n_head == 0
            || n_head_kv == 0
            || !n_head.is_multiple_of(n_head_kv)
            || cfg.rope_dim > head_dim
            || !cfg.rope_dim.is_multiple_of(2)
        {
            return Err(format!("unsupported head layout: {cfg:?}"));
        }
        for key in ["rope.scaling.type", "rope.scaling.factor"] {
            if file.get(&format!("{}.{key}", cfg.arch)).is_some() {
                eprintln!(
                    "warning: {}.{key} is set; RoPE scaling is not implemented",
                    cfg.arch
                );
            }
        }
        Ok(cfg)
    }
}

/// One transformer block.
pub struct Block {
    attn_norm: Vec<f32>,
    /// Query, key and value projections (one layer when their tensors
    /// allow, see [`Group`]).
    pub qkv: Group,
    /// Output projection.
    pub wo: QuantizedLinear,
    ffn_norm: Vec<f32>,
    /// SwiGLU FFN: `down(silu(gate(x)) * up(x))`, gate and up as one group.
    pub gate_up: Group,
    pub down: QuantizedLinear,
}

/// Projections of the same input. When their tensors have one type (and all
/// or none has a bias) they run as one layer whose rows are theirs one
/// after another: one call, one quantization of the input and one stream of
/// weights instead of several. A row's result never depends on the other
/// rows, so the outputs are the same bits either way.
pub struct Group {
    /// One fused layer, or one layer per part.
    pub layers: Vec<QuantizedLinear>,
    /// Output width of each part.
    widths: Vec<usize>,
}

impl Group {
    /// Runs the parts on `x` (`rows` rows), part `i` into `outs[i]`
    /// (`[rows, widths[i]]`).
    fn run(
        &self,
        x: &[f32],
        rows: usize,
        outs: &mut [&mut Vec<f32>],
        fused: &mut Vec<f32>,
        stats: &mut Stats,
    ) -> Result<(), String> {
        if self.layers.len() == outs.len() {
            for (l, y) in self.layers.iter().zip(outs.iter_mut()) {
                linear(l, x, rows, y, stats)?;
            }
            return Ok(());
        }
        linear(&self.layers[0], x, rows, fused, stats)?;
        let total: usize = self.widths.iter().sum();
        for (i, (y, &w)) in outs.iter_mut().zip(&self.widths).enumerate() {
            let at: usize = self.widths[..i].iter().sum();
            y.clear();
            for r in fused.chunks_exact(total) {
                y.extend_from_slice(&r[at..at + w]);
            }
        }
        Ok(())
    }
}

/// `y = l(x)` for `rows` rows, timed into `stats`.
fn linear(
    l: &QuantizedLinear,
    x: &[f32],
    rows: usize,
    y: &mut Vec<f32>,
    stats: &mut Stats,
) -> Result<(), String> {
    y.resize(rows * l.out_features, 0.0);
    let t = Instant::now();
    l.forward_into(x, rows, y).map_err(|e| e.to_string())?;
    stats.linear += t.elapsed();
    stats.macs += (rows * l.in_features * l.out_features) as u64;
    Ok(())
}

/// The model: token embedding, blocks, final norm, output matrix.
pub struct Model {
    /// Hyperparameters.
    pub cfg: Config,
    /// `token_embd.weight`: rows are embeddings (read one at a time).
    pub embd: QuantizedLinear,
    /// `output.weight`, or `None` when the output is tied to the embedding.
    pub output: Option<QuantizedLinear>,
    output_norm: Vec<f32>,
    /// The blocks.
    pub blocks: Vec<Block>,
}

/// Time spent in blockq's layers (their `forward_into` calls) and the
/// multiply-adds they did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    /// Wall time inside `QuantizedLinear::forward_into`.
    pub linear: Duration,
    /// Multiply-adds of those calls (`batch * in * out`).
    pub macs: u64,
    /// Wall time in attention (scores, softmax, weighted sum of values).
    pub attention: Duration,
}

/// Positions the KV cache grows by.
const KV_CHUNK: usize = 512;

/// Keys and values of every block for positions `0..len` (`n_head_kv *
/// head_dim` values per position), grown as tokens arrive.
#[derive(Clone, Default)]
pub struct KvCache {
    k: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    len: usize,
}

impl KvCache {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }
}

/// `(sin, cos)` of the RoPE angles of position `pos`: `pos * base^(-2i /
/// rope_dim)` for `2i < rope_dim`, in f64, then rounded to f32 (a function
/// of the position alone, computed once per position and call).
fn rope_angles(pos: usize, rope_dim: usize, base: f64) -> Vec<(f32, f32)> {
    (0..rope_dim / 2)
        .map(|i| {
            let theta = pos as f64 * base.powf(-2.0 * i as f64 / rope_dim as f64);
            (theta.sin() as f32, theta.cos() as f32)
        })
        .collect()
}

/// Rotates pairs `(x[2i], x[2i+1])`, `2i < rope_dim`, of each head of `row`
/// by the angles of [`rope_angles`] (llama.cpp's "normal" RoPE: GGUF llama
/// files store Q and K with the pairs adjacent).
fn rope(row: &mut [f32], head_dim: usize, angles: &[(f32, f32)]) {
    for head in row.chunks_exact_mut(head_dim) {
        for (i, &(s, c)) in angles.iter().enumerate() {
            let (a, b) = (head[2 * i], head[2 * i + 1]);
            head[2 * i] = a * c - b * s;
            head[2 * i + 1] = a * s + b * c;
        }
    }
}

impl Model {
    /// Loads every weight (used as stored: no re-quantization).
    pub fn load(file: &GgufFile) -> Result<Self, String> {
        let cfg = Config::from_gguf(file)?;
        let lin = |name: &str, k: usize, n: usize| -> Result<QuantizedLinear, String> {
            let bias_name = name.replace(".weight", ".bias");
            let bias = file.tensor(&bias_name).map(|_| bias_name.as_str());
            let l = file
                .linear(name, bias)
                .map_err(|e| format!("{name}: {e}"))?;
            if (l.in_features, l.out_features) != (k, n) {
                return Err(format!(
                    "{name}: {}x{}, expected {k} inputs and {n} outputs",
                    l.in_features, l.out_features
                ));
            }
            Ok(l)
        };
        let vec = |name: &str, n: usize| -> Result<Vec<f32>, String> {
            let v = file.tensor_f32(name).map_err(|e| format!("{name}: {e}"))?;
            if v.len() != n {
                return Err(format!("{name}: {} values, expected {n}", v.len()));
            }
            Ok(v)
        };
        // Fuses `names` (each `[k, n_i]`) into one layer when they share a
        // type and all or none has a bias; else loads them one by one.
        let group = |names: &[String], k: usize, widths: &[usize]| -> Result<Group, String> {
            let infos: Vec<_> = names.iter().map(|n| file.tensor(n)).collect();
            let biases: Vec<String> = names
                .iter()
                .map(|n| n.replace(".weight", ".bias"))
                .collect();
            let has_bias: Vec<bool> = biases.iter().map(|b| file.tensor(b).is_some()).collect();
            let same_type = infos
                .iter()
                .all(|t| t.is_some_and(|t| Some(t.ggml_type) == infos[0].map(|t| t.ggml_type)));
            let qt = infos[0].and_then(|t| t.ggml_type.quant_type());
            if let (true, Some(qt), true) =
                (same_type, qt, has_bias.iter().all(|&b| b == has_bias[0]))
            {
                // Each part must be a [k, w] matrix (as `GgufFile::linear`
                // checks); `from_gguf_bytes` checks the bytes.
                for ((n, &w), t) in names.iter().zip(widths).zip(infos.iter().flatten()) {
                    let (ne, want) = (&t.ne, [k as u64, w as u64]);
                    if ne.len() < 2 || ne[..2] != want || ne[2..].iter().any(|&d| d != 1) {
                        return Err(format!("{n}: shape {ne:?}, expected [{k}, {w}]"));
                    }
                }
                let mut bytes = Vec::new();
                for n in names {
                    bytes.extend_from_slice(file.tensor_data(n).map_err(|e| format!("{n}: {e}"))?);
                }
                let bias = if has_bias[0] {
                    let mut b = Vec::new();
                    for (name, &w) in biases.iter().zip(widths) {
                        b.extend(vec(name, w)?);
                    }
                    Some(b)
                } else {
                    None
                };
                let n: usize = widths.iter().sum();
                let layer = QuantizedLinear::from_gguf_bytes(&bytes, bias.as_deref(), k, n, qt)
                    .map_err(|e| format!("{}: {e}", names.join(" + ")))?;
                return Ok(Group {
                    layers: vec![layer],
                    widths: widths.to_vec(),
                });
            }
            let layers = names
                .iter()
                .zip(widths)
                .map(|(n, &w)| lin(n, k, w))
                .collect::<Result<_, _>>()?;
            Ok(Group {
                layers,
                widths: widths.to_vec(),
            })
        };
        let (d, hd) = (cfg.n_embd, cfg.head_dim);
        let blocks = (0..cfg.n_layer)
            .map(|i| {
                let t = |s: &str| format!("blk.{i}.{s}.weight");
                Ok(Block {
                    attn_norm: vec(&t("attn_norm"), d)?,
                    qkv: group(
                        &[t("attn_q"), t("attn_k"), t("attn_v")],
                        d,
                        &[cfg.n_head * hd, cfg.n_head_kv * hd, cfg.n_head_kv * hd],
                    )?,
                    wo: lin(&t("attn_output"), cfg.n_head * hd, d)?,
                    ffn_norm: vec(&t("ffn_norm"), d)?,
                    gate_up: group(&[t("ffn_gate"), t("ffn_up")], d, &[cfg.n_ff, cfg.n_ff])?,
                    down: lin(&t("ffn_down"), cfg.n_ff, d)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let embd = lin("token_embd.weight", d, cfg.vocab)?;
        let output = match file.tensor("output.weight") {
            Some(_) => Some(lin("output.weight", d, cfg.vocab)?),
            None => None,
        };
        Ok(Model {
            output_norm: vec("output_norm.weight", d)?,
            cfg,
            embd,
            output,
            blocks,
        })
    }

    /// Every layer of the model (the embedding once, even when tied).
    pub fn layers_mut(&mut self) -> Vec<&mut QuantizedLinear> {
        let mut v: Vec<&mut QuantizedLinear> = vec![&mut self.embd];
        v.extend(self.output.as_mut());
        for b in &mut self.blocks {
            v.extend(b.qkv.layers.iter_mut());
            v.extend(b.gate_up.layers.iter_mut());
            v.extend([&mut b.wo, &mut b.down]);
        }
        v
    }

    /// Runs every layer on `isa`'s kernels.
    pub fn set_isa(&mut self, isa: Isa) -> Result<(), String> {
        for l in self.layers_mut() {
            l.set_isa(isa).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The packed bytes of every matrix a decode step reads, in the order
    /// it reads them (each block's Q/K/V, output, gate/up and down
    /// projections, then the output matrix).
    pub fn weight_slices(&self) -> Vec<&[u8]> {
        let mut v = Vec::new();
        for b in &self.blocks {
            let layers = (b.qkv.layers.iter()).chain([&b.wo]);
            v.extend(layers.chain(&b.gate_up.layers).chain([&b.down]));
        }
        v.push(self.output.as_ref().unwrap_or(&self.embd));
        v.into_iter().map(|l| l.packed().bytes()).collect()
    }

    /// Bytes of weights one decode step reads: every matrix once, the
    /// embedding (a single row read) only as the tied output matrix.
    pub fn weight_bytes(&self) -> usize {
        let out = self.output.as_ref().unwrap_or(&self.embd);
        out.weight_bytes()
            + self
                .blocks
                .iter()
                .map(|b| {
                    (b.qkv.layers.iter())
                        .chain(&b.gate_up.layers)
                        .chain([&b.wo, &b.down])
                        .map(|l| l.weight_bytes())
                        .sum::<usize>()
                })
                .sum::<usize>()
    }

    /// A new, empty KV cache.
    pub fn cache(&self) -> KvCache {
        KvCache {
            k: vec![Vec::new(); self.cfg.n_layer],
            v: vec![Vec::new(); self.cfg.n_layer],
            len: 0,
        }
    }

    /// Runs `tokens` (positions `cache.len()..`) as one batch, appending
    /// their keys and values to `cache`. Returns the logits of every position
    /// (`all_logits`) or of the last one, `[rows, vocab]`. `layer0`, if given,
    /// receives the residual stream after block 0 (`[tokens, n_embd]`).
    pub fn forward(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        all_logits: bool,
        stats: &mut Stats,
        mut layer0: Option<&mut Vec<f32>>,
    ) -> Result<Vec<f32>, String> {
        let c = &self.cfg;
        let (m, d, hd) = (tokens.len(), c.n_embd, c.head_dim);
        let (qd, kvd) = (c.n_head * hd, c.n_head_kv * hd);
        let p0 = cache.len;
        if m == 0 {
            return Err("no tokens".into());
        }
        if p0 + m > c.context {
            return Err(format!("context length {} exceeded", c.context));
        }
        let mut x = vec![0.0f32; m * d];
        for (row, &t) in x.chunks_exact_mut(d).zip(tokens) {
            if t as usize >= c.vocab {
                return Err(format!("token {t} outside the vocabulary"));
            }
            self.embd.packed().dequantize_row(t as usize, row);
        }
        let (mut h, mut q, mut k, mut v, mut att, mut o) = (
            vec![0.0f32; m * d],
            vec![],
            vec![],
            vec![],
            vec![0.0f32; m * qd],
            vec![],
        );
        let (mut g, mut u, mut fused) = (vec![], vec![], vec![]);
        let mut attention = Duration::ZERO;
        let angles: Vec<Vec<(f32, f32)>> = (p0..p0 + m)
            .map(|p| rope_angles(p, c.rope_dim, c.rope_base))
            .collect();
        let scale = 1.0 / (hd as f32).sqrt();
        // The cache grows by whole chunks of positions: no copy of the
        // whole cache every time a vector doubles (a decode step appends
        // one position).
        let want = (p0 + m).next_multiple_of(KV_CHUNK).min(c.context) * kvd;
        for kv in cache.k.iter_mut().chain(cache.v.iter_mut()) {
            kv.reserve_exact(want.saturating_sub(kv.len()));
        }
        for (li, b) in self.blocks.iter().enumerate() {
            rms_norm(&x, &b.attn_norm, c.eps, &mut h);
            b.qkv
                .run(&h, m, &mut [&mut q, &mut k, &mut v], &mut fused, stats)?;
            for (i, (qr, kr)) in q
                .chunks_exact_mut(qd)
                .zip(k.chunks_exact_mut(kvd))
                .enumerate()
            {
                rope(qr, hd, &angles[i]);
                rope(kr, hd, &angles[i]);
            }
            cache.k[li].extend_from_slice(&k);
            cache.v[li].extend_from_slice(&v);
            let (kc, vc) = (&cache.k[li], &cache.v[li]);
            // Every query head of one row (position `pos`), reading the
            // cache positions 0..=pos in order (whole rows of the cache,
            // every KV head at once): the same work item whatever the
            // batch, so rayon may run the items on any threads. `w`: the
            // job's buffer for the softmax weights (one per rayon job, not
            // one allocation per item).
            let item = |w: &mut Vec<f32>, (idx, (oh, qh)): (usize, (&mut [f32], &[f32]))| {
                let pos = p0 + idx;
                w.resize(c.n_head * (pos + 1), 0.0);
                attend_heads(qh, hd, c.n_head_kv, kc, vc, kvd, scale, w, oh);
            };
            let t = Instant::now();
            // Jobs of at least ~2048 cached positions x heads: a rayon job
            // costs microseconds, a position of a head ~10 ns (a decode
            // step is one job).
            let min_len = 2048usize.div_ceil(c.n_head * (p0 + m));
            att.par_chunks_mut(qd)
                .zip(q.par_chunks(qd))
                .enumerate()
                .with_min_len(min_len)
                .for_each_init(Vec::new, item);
            attention += t.elapsed();
            linear(&b.wo, &att, m, &mut o, stats)?;
            for (xv, ov) in x.iter_mut().zip(&o) {
                *xv += ov;
            }
            rms_norm(&x, &b.ffn_norm, c.eps, &mut h);
            b.gate_up
                .run(&h, m, &mut [&mut g, &mut u], &mut fused, stats)?;
            silu_mul(&mut g, &u);
            linear(&b.down, &g, m, &mut o, stats)?;
            for (xv, ov) in x.iter_mut().zip(&o) {
                *xv += ov;
            }
            if li == 0 {
                if let Some(dst) = layer0.as_deref_mut() {
                    dst.clear();
                    dst.extend_from_slice(&x);
                }
            }
        }
        cache.len += m;
        let rows = if all_logits { m } else { 1 };
        let last = &x[(m - rows) * d..];
        rms_norm(last, &self.output_norm, c.eps, &mut h[..rows * d]);
        let mut logits = Vec::new();
        let out = self.output.as_ref().unwrap_or(&self.embd);
        linear(out, &h[..rows * d], rows, &mut logits, stats)?;
        stats.attention += attention;
        Ok(logits)
    }
}

/// Index of the largest logit (the first of equal ones): greedy decoding.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best as u32
}
