#!/usr/bin/env python3
"""Independent float64 reference for tests/llama.rs (not blockq).

    python3 tests/llama_reference.py MODEL.gguf OUT.bin

Reads a llama-architecture GGUF with llama.cpp's Python package `gguf`
(0.19.0: its reader and its numpy dequantization of every tensor type),
tokenizes PROMPT with the file's vocabulary and merges (GPT-2 byte-level BPE,
pre-tokenizer regexes by `tokenizer.ggml.pre`, with the `regex` module), and
runs the prompt through the model in float64 twice:

- exact: float64 activations into every matrix product;
- int8: every matrix-product input first rounded as blockq's kernels round
  it (per 32-value block: d = amax / 127, q = round-half-even(x / d), x -> q d),
  the rest still float64. The difference between the two runs is what int8
  activations alone cost: tests/llama.rs derives its error bound from it.

OUT.bin (little-endian): b"BQLLAMA1", u32 tokens n, u32 width d, u32
vocabulary v, u32 prompt bytes, the prompt (UTF-8), u32 token ids[n], then f32
arrays: hidden state after block 0 (exact, int8; [n, d] each) and logits
(exact, int8; [n, v] each); then u32 count of TOKENIZER_CASES and, for each,
u32 bytes, the text, u32 tokens, the token ids.
"""
import struct
import sys

import numpy as np
import regex
from gguf import GGUFReader
from gguf.quants import dequantize

PROMPT = (
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by "
    "Hugging Face<|im_end|>\n<|im_start|>user\nWhat's 12 + 30?  Answer in one word,\n"
    "then\texplain: it's   easy (naïve café 🙂).<|im_end|>\n<|im_start|>assistant\n"
)

# More texts for the tokenizer alone: runs of newlines and spaces, trailing
# whitespace, contractions in both cases, long numbers, non-Latin scripts,
# code, no-break space, special tokens next to text.
TOKENIZER_CASES = [
    "Hello world!\n\n\n  x  ",
    "don't DON'T you're I'M we'll they'd",
    "1234567890 3.14159 -42",
    "a\u00a0b \u00e9t\u00e9 \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u0645\u0631\u062d\u0628\u0627",
    "    def f(x):\n        return x**2\n\n\tprint(f(3))",
    "<|im_start|>  <|im_end|>x<|endoftext|>",
    "emoji: \U0001F600\U0001F680 ok?!...",
]

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
PRE = {
    "smollm": [r"\p{N}", GPT2],
    "starcoder": [r"\p{N}", GPT2],
    "gpt2": [GPT2],
}


def field(r, key):
    f = r.fields.get(key)
    return None if f is None else f.contents()


def bytes_to_unicode():
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def tokenize(r, text):
    tokens = field(r, "tokenizer.ggml.tokens")
    types = field(r, "tokenizer.ggml.token_type")
    ranks = {}
    for i, m in enumerate(field(r, "tokenizer.ggml.merges")):
        a, b = m.split(" ", 1) if not m.startswith(" ") else (None, None)
        ranks[(a, b)] = i
    ids = {t: i for i, t in enumerate(tokens)}
    special = sorted(
        [t for t, ty in zip(tokens, types) if ty in (2, 3, 4) and t],
        key=len,
        reverse=True,
    )
    pre = PRE[field(r, "tokenizer.ggml.pre")]
    b2u = bytes_to_unicode()

    def bpe(word):
        syms = [b2u[b] for b in word.encode("utf-8")]
        while len(syms) > 1:
            pairs = [(ranks.get((syms[i], syms[i + 1])), i) for i in range(len(syms) - 1)]
            pairs = [p for p in pairs if p[0] is not None]
            if not pairs:
                break
            _, i = min(pairs)
            syms[i : i + 2] = [syms[i] + syms[i + 1]]
        return [ids[s] for s in syms]

    def plain(t):
        pieces = [t] if t else []
        for pat in pre:
            out = []
            for p in pieces:
                at = 0
                for m in regex.finditer(pat, p):
                    if m.start() > at:
                        out.append(p[at : m.start()])
                    if m.end() > m.start():
                        out.append(m.group())
                    at = m.end()
                if at < len(p):
                    out.append(p[at:])
            pieces = out
        return [i for p in pieces for i in bpe(p)]

    split = regex.compile("(" + "|".join(regex.escape(s) for s in special) + ")")
    out = []
    for part in split.split(text):
        out += [ids[part]] if part in special else plain(part)
    return out


def int8(x):
    """Rounds each 32-value block of each row as blockq's activation quantizer."""
    n, k = x.shape
    pad = (-k) % 32
    xb = np.pad(x, ((0, 0), (0, pad))).astype(np.float32).reshape(n, -1, 32)
    amax = np.abs(xb).max(axis=2, keepdims=True)
    d = (amax / np.float32(127)).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(amax > 0, np.rint(xb * (np.float32(127) / amax)), 0)
    return (q.astype(np.float64) * d).reshape(n, -1)[:, :k]


def main(path, out_path):
    r = GGUFReader(path)
    arch = field(r, "general.architecture")
    assert arch == "llama", arch
    hp = lambda k: field(r, f"{arch}.{k}")
    n_layer = hp("block_count")
    n_head, n_kv = hp("attention.head_count"), hp("attention.head_count_kv")
    d_model = hp("embedding_length")
    hd = d_model // n_head
    rope_dim = hp("rope.dimension_count") or hd
    base = float(hp("rope.freq_base") or 10000.0)
    eps = float(hp("attention.layer_norm_rms_epsilon"))
    tensors = {t.name: t for t in r.tensors}

    def weight(name):
        t = tensors[name]
        w = dequantize(t.data, t.tensor_type).astype(np.float64)
        return w.reshape(-1, int(t.shape[0]))  # [out, in]

    toks = tokenize(r, PROMPT)
    n = len(toks)
    emb = weight("token_embd.weight")
    vocab = emb.shape[0]
    x0 = emb[toks]

    pos = np.arange(n, dtype=np.float64)[:, None]
    theta = pos * base ** (-2.0 * np.arange(rope_dim // 2) / rope_dim)
    cos, sin = np.cos(theta), np.sin(theta)

    def rope(v, heads):
        v = v.reshape(n, heads, hd).copy()
        a, b = v[:, :, 0:rope_dim:2].copy(), v[:, :, 1:rope_dim:2].copy()
        c, s = cos[:, None, :], sin[:, None, :]
        v[:, :, 0:rope_dim:2] = a * c - b * s
        v[:, :, 1:rope_dim:2] = a * s + b * c
        return v

    def norm(x, g):
        return x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * g

    mask = np.triu(np.full((n, n), -np.inf), 1)
    runs = {"exact": (x0.copy(), lambda x: x), "int8": (x0.copy(), int8)}
    hidden0 = {}
    for li in range(n_layer):
        w = {s: weight(f"blk.{li}.{s}.weight") for s in
             ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")}
        g = {s: tensors[f"blk.{li}.{s}.weight"].data.astype(np.float64)
             for s in ("attn_norm", "ffn_norm")}
        for key, (x, act) in runs.items():
            mm = lambda v, s: act(v) @ w[s].T
            h = norm(x, g["attn_norm"])
            q, k, v = rope(mm(h, "attn_q"), n_head), rope(mm(h, "attn_k"), n_kv), mm(h, "attn_v")
            v = v.reshape(n, n_kv, hd)
            att = np.empty((n, n_head, hd))
            for hh in range(n_head):
                kv = hh // (n_head // n_kv)
                s = q[:, hh] @ k[:, kv].T / np.sqrt(hd) + mask
                p = np.exp(s - s.max(axis=1, keepdims=True))
                att[:, hh] = (p / p.sum(axis=1, keepdims=True)) @ v[:, kv]
            x = x + mm(att.reshape(n, -1), "attn_output")
            h = norm(x, g["ffn_norm"])
            gate = mm(h, "ffn_gate")
            x = x + mm(gate / (1 + np.exp(-gate)) * mm(h, "ffn_up"), "ffn_down")
            runs[key] = (x, act)
            if li == 0:
                hidden0[key] = x.copy()
    out_w = weight("output.weight") if "output.weight" in tensors else emb
    gout = tensors["output_norm.weight"].data.astype(np.float64)
    logits = {k: act(norm(x, gout)) @ out_w.T for k, (x, act) in runs.items()}

    prompt = PROMPT.encode("utf-8")
    with open(out_path, "wb") as f:
        f.write(b"BQLLAMA1")
        f.write(struct.pack("<4I", n, d_model, vocab, len(prompt)))
        f.write(prompt)
        f.write(np.asarray(toks, dtype="<u4").tobytes())
        for a in (hidden0["exact"], hidden0["int8"], logits["exact"], logits["int8"]):
            f.write(np.ascontiguousarray(a, dtype="<f4").tobytes())
        f.write(struct.pack("<I", len(TOKENIZER_CASES)))
        for text in TOKENIZER_CASES:
            b, ids = text.encode("utf-8"), tokenize(r, text)
            f.write(struct.pack("<I", len(b)) + b)
            f.write(struct.pack("<I", len(ids)) + np.asarray(ids, dtype="<u4").tobytes())
    top = logits["exact"].argmax(axis=1)
    print(f"llama_reference: {n} tokens, width {d_model}, vocabulary {vocab} -> {out_path}")
    print(f"  tokens {toks}")
    print(f"  greedy next tokens {top.tolist()}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
