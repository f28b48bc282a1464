#!/usr/bin/env python3
"""quant_goldens.py: golden data for tests/test_quant.c, from the gguf Python
package (its numpy dequantizers, and its quantizers where it has them).

Writes tests/data/quant/<TYPE>.bin for every type the engine computes with,
and tests/data/quant/sizes.txt (block / bytes of every type in our table).
Deterministic: fixed numpy seed; the real-model records need models/*.gguf
(scripts/fetch-models.sh) and are skipped with a warning when missing.

Usage:  python3 tools/goldens/quant_goldens.py [--out DIR] [--dump DIR]
  --dump DIR  also write real-model tensors (up to 2048 rows each; large, not
              for committing)
              in the same format to DIR/<TYPE>.bin; test_quant checks them when
              run with BEAST_QUANT_DUMP=DIR.

File format: a sequence of records, all little-endian:
  magic    4 bytes  b"BQG1"
  type     u32      ggml type id
  block    u32      elements per block
  bytes    u32      bytes per block
  nblocks  u32
  kind     u32      0: random valid blocks, 1: gguf's quantization of
                    `source`, 2: blocks copied from a real model tensor
  flags    u32      bit 0: a source f32 array follows `expected`
  labellen u32      then labellen bytes of ASCII label (no NUL)
  blocks   nblocks * bytes
  expected f32[nblocks * block]  gguf's dequantization of `blocks`
  source   f32[nblocks * block]  (if flags & 1) the input gguf quantized

Random valid blocks: random bytes everywhere, then the float fields (scales)
overwritten with sane finite values (normal-distributed, a few edge cases:
zero, negative, f16 subnormal) so that the dequantized values are finite.

Q8_1 and Q8_K: the gguf package has no dequantizer for these two activation
types, so `expected` comes from the small numpy function below written from
ggml's block definitions (x = d * q). Also, gguf's GGML_QUANT_SIZES lists Q8_1
as 40 bytes (a float d and s, an old layout); ggml's block_q8_1 is two f16
plus 32 int8 = 36 bytes, which is what we use.
"""

import argparse
import os
import struct
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import dequantize, quantize

SEED = 20250611
QK_K = 256

# Types the engine computes with, and the other types of the table.
COMPUTE = ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
           "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K"]
STORAGE_ONLY = ["I8", "I16", "I32", "I64", "F64"]

# Types gguf can quantize (kind 1 records).
GGUF_QUANTIZES = ["F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0"]

# Byte offsets of the f16 scale fields in each block (for random blocks).
F16_FIELDS = {
    "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q8_0": [0],
    "Q8_1": [0, 2], "Q2_K": [80, 82], "Q3_K": [108], "Q4_K": [0, 2],
    "Q5_K": [0, 2], "Q6_K": [208],
}

NBLOCKS_RANDOM = {"F32": 256, "F16": 256, "BF16": 256}  # others: below


def sizes(name):
    if name == "Q8_1":
        return 32, 36  # see the module docstring
    return gguf.GGML_QUANT_SIZES[T[name]]


def dequant_ref(name, raw):
    """gguf's dequantization, or ours for the two types it lacks."""
    if name == "Q8_1":
        b = raw.reshape(-1, 36)
        d = b[:, 0:2].copy().view(np.float16).astype(np.float32)
        q = b[:, 4:36].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(-1)
    if name == "Q8_K":
        b = raw.reshape(-1, 292)
        d = b[:, 0:4].copy().view(np.float32)
        q = b[:, 4:260].copy().view(np.int8).astype(np.float32)
        return (d * q).reshape(-1)
    out = dequantize(raw, T[name])
    return np.asarray(out, dtype=np.float32).reshape(-1)


def record(name, raw, expected, kind, label, source=None):
    block, nbytes = sizes(name)
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1)
    assert raw.size % nbytes == 0
    nblocks = raw.size // nbytes
    expected = np.ascontiguousarray(expected, dtype="<f4").reshape(-1)
    assert expected.size == nblocks * block, (name, expected.size, nblocks, block)
    flags = 0 if source is None else 1
    lab = label.encode("ascii")
    out = b"BQG1" + struct.pack("<7I", int(T[name]), block, nbytes, nblocks, kind, flags, len(lab))
    out += lab + raw.tobytes() + expected.tobytes()
    if source is not None:
        src = np.ascontiguousarray(source, dtype="<f4").reshape(-1)
        assert src.size == expected.size
        out += src.tobytes()
    return out


def random_scales(rng, n):
    """n sane f16 scale values: mostly normal(0, 0.02), with a zero, a
    negative, and an f16 subnormal among the first few."""
    v = rng.normal(0.0, 0.02, n).astype(np.float32)
    if n >= 4:
        v[1] = 0.0
        v[2] = -abs(v[2]) - 0.01
        v[3] = 3.0e-6  # subnormal in f16 (below 6.1e-5)
    return v.astype(np.float16)


def random_blocks(rng, name):
    block, nbytes = sizes(name)
    if name == "F32":
        v = rng.normal(0, 1, 256).astype(np.float32)
        v[:6] = [0.0, -0.0, np.inf, -np.inf, 1e-40, -3.4e38]  # incl. a subnormal
        return v.view(np.uint8)
    if name in ("F16", "BF16"):
        bits = rng.integers(0, 1 << 16, 256, dtype=np.uint32).astype(np.uint16)
        exp_mask, man_mask = (0x7C00, 0x03FF) if name == "F16" else (0x7F80, 0x007F)
        nan = ((bits & exp_mask) == exp_mask) & ((bits & man_mask) != 0)
        bits[nan] &= ~np.uint16(exp_mask)  # no NaNs: they never compare equal
        bits[:4] = [0x0000, 0x8000, exp_mask, 0x8000 | exp_mask]  # +-0, +-inf
        bits[4] = 0x0001  # smallest subnormal
        return bits.view(np.uint8)
    nblocks = 8 if block == QK_K else 16
    raw = rng.integers(0, 256, (nblocks, nbytes), dtype=np.uint32).astype(np.uint8)
    if name == "Q8_K":
        d = rng.normal(0, 0.01, nblocks).astype(np.float32)
        d[1] = 0.0
        raw[:, 0:4] = d.view(np.uint8).reshape(nblocks, 4)
        q = raw[:, 4:260].copy().view(np.int8).astype(np.int32)
        bsums = q.reshape(nblocks, 16, 16).sum(axis=2).astype("<i2")
        raw[:, 260:292] = bsums.view(np.uint8).reshape(nblocks, 32)
        return raw
    for off in F16_FIELDS[name]:
        raw[:, off:off + 2] = random_scales(rng, nblocks).view(np.uint8).reshape(nblocks, 2)
    if name == "Q8_1":  # s = d * sum(q), as a quantizer would write it
        d = raw[:, 0:2].copy().view(np.float16).astype(np.float32).reshape(-1)
        q = raw[:, 4:36].copy().view(np.int8).astype(np.int32)
        s = (d * q.sum(axis=1).astype(np.float32)).astype(np.float16)
        raw[:, 2:4] = s.view(np.uint8).reshape(nblocks, 2)
    return raw


def quantized_by_gguf(rng, name):
    block, _ = sizes(name)
    n = 256 if block == 1 else 16 * block
    src = rng.normal(0, 1, n).astype(np.float32)
    src[::37] *= 6.0  # a few larger values
    raw = quantize(src, T[name])
    raw = np.asarray(raw).view(np.uint8).reshape(-1)
    return raw, src


DUMP_ROWS = 2048
MODELS = ["SmolLM2-135M-Instruct.Q4_1.gguf", "gemma-3-270m-q4_k_m.gguf"]


def model_tensors(models_dir):
    """(model file, tensor) for the first tensor of each type in each model."""
    out = []
    for m in MODELS:
        path = os.path.join(models_dir, m)
        if not os.path.exists(path):
            print(f"warning: {path} missing, no real-model records from it", file=sys.stderr)
            continue
        seen = set()
        for t in gguf.GGUFReader(path).tensors:
            name = t.tensor_type.name
            if name in COMPUTE and name not in seen and name != "F32":
                seen.add(name)
                out.append((m, name, t))
    return out


def main():
    ap = argparse.ArgumentParser()
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(here))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "quant"))
    ap.add_argument("--models", default=os.path.join(root, "models"))
    ap.add_argument("--dump", default=None)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(SEED)

    files = {name: [] for name in COMPUTE}
    for name in COMPUTE:
        raw = random_blocks(rng, name)
        files[name].append(record(name, raw, dequant_ref(name, raw), 0, f"random {name} blocks"))
        if name in GGUF_QUANTIZES:
            raw, src = quantized_by_gguf(rng, name)
            files[name].append(record(name, raw, dequant_ref(name, raw), 1,
                                      f"gguf quantize of normal data to {name}", src))

    # A few blocks of real tensors: the first blocks of rows 0 and 1.
    dumps = {}
    for model, name, t in model_tensors(args.models):
        block, nbytes = sizes(name)
        k = 2 if block == QK_K else 4
        for row in (0, 1):
            raw = np.asarray(t.data[row]).view(np.uint8)[:k * nbytes]
            files[name].append(record(name, raw, dequant_ref(name, raw), 2,
                                      f"{model} {t.name} row {row}"))
        if args.dump:  # up to DUMP_ROWS rows of the tensor
            raw = np.asarray(t.data[:DUMP_ROWS]).view(np.uint8).reshape(-1)
            dumps.setdefault(name, []).append(
                record(name, raw, dequant_ref(name, raw), 2, f"{model} {t.name} (rows)"))

    for name, recs in files.items():
        with open(os.path.join(args.out, f"{name}.bin"), "wb") as f:
            f.write(b"".join(recs))
    with open(os.path.join(args.out, "sizes.txt"), "w") as f:
        f.write("# name ggml_id block bytes   (from gguf.GGML_QUANT_SIZES; Q8_1 corrected)\n")
        for name in COMPUTE + STORAGE_ONLY:
            block, nbytes = sizes(name)
            f.write(f"{name} {int(T[name])} {block} {nbytes}\n")
    if args.dump:
        os.makedirs(args.dump, exist_ok=True)
        for name, recs in dumps.items():
            with open(os.path.join(args.dump, f"{name}.bin"), "wb") as f:
                f.write(b"".join(recs))
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    print(f"wrote {len(files)} golden files + sizes.txt to {args.out} ({total} bytes)")


if __name__ == "__main__":
    main()
