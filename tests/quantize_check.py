#!/usr/bin/env python3
"""Independent check of `blockq quantize` with llama.cpp's gguf-py (PyPI `gguf`).

    quantize_check.py make IN.gguf            write an F16 model-like GGUF with gguf-py's writer
    quantize_check.py check IN.gguf OUT.gguf TYPE
                                              read OUT with gguf-py's reader and compare it with IN

`check` asserts that OUT carries every metadata pair of IN (arrays
included) with `general.file_type` / `general.quantization_version` set as
llama.cpp's quantize sets them, has IN's tensors in IN's order and shapes,
stores every 2-D F16 / F32 tensor whose rows hold whole blocks as TYPE with
the bytes of gguf-py's `gguf.quants.quantize` (its port of llama.cpp's
reference quantizers; for the k-quants, which it cannot quantize, the values
dequantized by gguf-py are compared with blockq's dequantization instead),
and every other tensor unchanged. Prints one line per tensor; exits 1 on
the first mismatch. tests/cli.rs runs it where Python has `gguf` and numpy.
"""
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T

FILE_TYPE = {"F32": 0, "F16": 1, "Q4_0": 2, "Q4_1": 3, "Q8_0": 7, "Q5_0": 8, "Q5_1": 9,
             "Q4_K": 14, "Q5_K": 16, "Q6_K": 18, "BF16": 32}
KQUANTS = {"Q4_K", "Q5_K", "Q6_K"}


def make(path):
    rng = np.random.default_rng(20261203)
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("blockq quantize check")
    w.add_file_type(1)
    w.add_context_length(256)
    w.add_embedding_length(256)
    w.add_block_count(1)
    w.add_head_count(4)
    w.add_float32("llama.attention.layer_norm_rms_epsilon", 1e-5)
    w.add_token_list([f"tok{i}" for i in range(300)])
    w.add_token_scores([float(-i) for i in range(300)])
    w.add_array("blockq.test.nested_ints", [1, 2, 3, 1 << 20])

    def weight(rows, cols, scale=0.05):
        x = rng.standard_normal((rows, cols)).astype(np.float32) * scale
        x[rng.random((rows, cols)) < 0.01] *= 20.0  # outliers, as real weights have
        x[0, :8] = 0.0  # an all-zero start (a zero block scale for most formats)
        return x

    w.add_tensor("token_embd.weight", weight(300, 256).astype(np.float16))
    w.add_tensor("blk.0.attn_norm.weight", (1.0 + rng.standard_normal(256) * 0.1).astype(np.float32))
    w.add_tensor("blk.0.attn_q.weight", weight(256, 256).astype(np.float16))
    w.add_tensor("blk.0.ffn_up.weight", weight(96, 512).astype(np.float16))
    w.add_tensor("blk.0.ffn_down.weight", weight(512, 96).astype(np.float16))  # rows of 96
    w.add_tensor("blk.0.odd.weight", weight(8, 48).astype(np.float16))  # rows of 48
    w.add_tensor("output.weight", weight(300, 256))  # F32 matrix
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def field_value(f):
    """A metadata field's raw parts, comparable across files."""
    return [bytes(np.asarray(p).tobytes()) for p in f.parts[f.data[0]:]] if f.data else []


def check(inp, out, ty):
    a = gguf.GGUFReader(inp)
    b = gguf.GGUFReader(out)
    qt = T[ty]
    for name, f in a.fields.items():
        if name.startswith("GGUF.") or name in ("general.file_type", "general.quantization_version"):
            continue
        g = b.fields.get(name)
        assert g is not None, f"metadata {name} missing"
        assert g.types == f.types, f"metadata {name}: types {g.types} != {f.types}"
        assert [bytes(p.tobytes()) for p in g.parts[1:]] == [bytes(p.tobytes()) for p in f.parts[1:]], \
            f"metadata {name} differs"
    assert int(b.fields["general.file_type"].contents()) == FILE_TYPE[ty], "general.file_type"
    assert int(b.fields["general.quantization_version"].contents()) == 2, "quantization_version"
    assert [t.name for t in b.tensors] == [t.name for t in a.tensors], "tensor names / order"
    block = gguf.GGML_QUANT_SIZES[qt][0]
    converted = 0
    for ta, tb in zip(a.tensors, b.tensors):
        assert list(ta.shape) == list(tb.shape), f"{ta.name}: shape {tb.shape} != {ta.shape}"
        ne0 = int(ta.shape[0])
        becomes = len(ta.shape) >= 2 and ta.tensor_type in (T.F16, T.F32, T.BF16) and ne0 % block == 0
        if not becomes:
            assert tb.tensor_type == ta.tensor_type, f"{ta.name}: type changed"
            assert bytes(tb.data.tobytes()) == bytes(ta.data.tobytes()), f"{ta.name}: bytes changed"
            print(f"{ta.name}: kept {ta.tensor_type.name}")
            continue
        assert tb.tensor_type == qt, f"{ta.name}: {tb.tensor_type.name}, expected {ty}"
        x = gguf.quants.dequantize(ta.data, ta.tensor_type).astype(np.float32).reshape(-1, ne0)
        if ty in KQUANTS:
            # gguf-py dequantizes k-quants but cannot quantize them: the
            # bytes were checked against llama.cpp's C reference elsewhere
            # (tests/format_vectors.rs); here the values must decode and be close.
            # Bound: the error of the legacy format of at most as many bits
            # with a minimum (Q4_1 for Q4_K, Q5_1 for Q5_K and Q6_K), with
            # gguf-py's quantizer.
            y = gguf.quants.dequantize(tb.data, qt).reshape(-1, ne0)
            legacy = {"Q4_K": T.Q4_1, "Q5_K": T.Q5_1, "Q6_K": T.Q5_1}[ty]
            z = gguf.quants.dequantize(gguf.quants.quantize(x, legacy), legacy).reshape(-1, ne0)
            err, bound = (np.linalg.norm(v - x) / max(np.linalg.norm(x), 1e-30) for v in (y, z))
            assert err <= bound, f"{ta.name}: {ty} relative L2 error {err:.3g} > {legacy.name}'s {bound:.3g}"
            print(f"{ta.name}: {ty} decodes, relative L2 error {err:.3g} (<= {legacy.name}'s {bound:.3g})")
        else:
            want = gguf.quants.quantize(x, qt)
            got = np.asarray(tb.data).reshape(want.shape)
            if want.tobytes() != got.tobytes():
                diff = np.flatnonzero(want.view(np.uint8).ravel() != got.view(np.uint8).ravel())
                raise AssertionError(f"{ta.name}: {len(diff)} bytes differ from gguf-py's quantizer, first at {diff[0]}")
            print(f"{ta.name}: {ty} bytes equal gguf-py's quantizer ({want.nbytes} bytes)")
        converted += 1
    assert converted > 0, "no tensor was converted"
    print(f"OK: {out} ({ty}): {converted} tensors converted, metadata carried over")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "make":
        make(sys.argv[2])
    elif len(sys.argv) == 5 and sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3], sys.argv[4].upper())
    else:
        sys.exit(__doc__)
