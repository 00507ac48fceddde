"""Writes tests/data/gguf_py.gguf with gguf-py (llama.cpp's Python GGUF
package), an implementation independent of blockq, for tests/gguf.rs.

For each of Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, BF16, F16 and F32 it stores the
weight `<type>.weight` (quantized by gguf-py from `orig`), gguf-py's
dequantization of it as the F32 tensor `<type>.deq`, and one F32 bias; plus
`orig` (the f32 weights), a Q4_K tensor of zeros (gguf-py does not quantize
the k-quants) and metadata of several value types.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install gguf==0.19.0
    /tmp/venv/bin/python tests/data/make_gguf_py_fixture.py
"""

import os

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFWriter, quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gguf_py.gguf")
ROWS, COLS = 5, 64  # numpy [rows, cols] is GGUF ne = [COLS, ROWS]

rng = np.random.default_rng(20240611)
orig = (rng.standard_normal((ROWS, COLS)) * 0.7).astype(np.float32)
orig[0, :32] = 0.0  # an all-zero block
orig[1, 3] = 3.5  # a block whose largest value is positive
orig[2, 40] = -4.0  # ... and negative
bias = rng.standard_normal(ROWS).astype(np.float32)

w = GGUFWriter(OUT, "blockq-fixture")
w.add_name("gguf-py fixture")
w.add_uint32("fixture.u32", 123456)
w.add_int32("fixture.i32", -42)
w.add_float32("fixture.f32", 0.5)
w.add_bool("fixture.bool", True)
w.add_uint64("fixture.u64", 1 << 40)
w.add_array("fixture.tokens", ["<s>", "</s>", "hello", "wörld"])
w.add_array("fixture.scores", [0.0, -1.5, 2.25])
w.add_array("fixture.nested", [["a", "bc"], ["d"]])
w.add_tensor("orig", orig)
w.add_tensor("bias", bias)
for qtype in (T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.BF16):
    q = quants.quantize(orig, qtype)
    w.add_tensor(f"{qtype.name}.weight", q, raw_dtype=qtype)
    w.add_tensor(f"{qtype.name}.deq", quants.dequantize(q, qtype).astype(np.float32))
h = orig.astype(np.float16)
w.add_tensor("F16.weight", h)
w.add_tensor("F16.deq", h.astype(np.float32))
w.add_tensor("F32.weight", orig.copy())
w.add_tensor("F32.deq", orig.copy())
# One Q4_K super-block row of zeros.
w.add_tensor("Q4_K.weight", np.zeros((1, 144), dtype=np.uint8), raw_dtype=T.Q4_K)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(OUT, os.path.getsize(OUT), "bytes")
