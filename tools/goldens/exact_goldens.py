#!/usr/bin/env python3
"""Float64 reference logits for beast's forward pass (llama and gemma3).

An independent, deliberately plain numpy implementation of the two
architectures, fed with weights dequantized by the `gguf` Python package, and
computed in float64 throughout (no KV-cache rounding, no activation
quantization). It answers "what does this model file compute?" without any
engine's approximations; tests/test_golden.c checks beast's exact CPU path
(BEAST_CPU_SCALAR=1) against it tightly and the fast path within its 8-bit
activation error.

Writes tests/data/golden/<model>.exact.bin:
  "BGEX", u32 version (1), u32 n_vocab, u32 count, then count entries of
  u32 n_tokens, i32 tokens[n_tokens], f32 logits[n_vocab] (last position).
The token sequences are the first prompts of <model>.greedy.txt.

Usage: python3 tools/goldens/exact_goldens.py [--models-dir DIR] [--count N]
"""
import argparse
import os
import struct

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def field(r, key, default=None):
    f = r.fields.get(key)
    return default if f is None else f.contents()


def load(path):
    r = GGUFReader(path)
    w = {}
    for t in r.tensors:
        a = dequantize(t.data, t.tensor_type).astype(np.float64)
        w[t.name] = a.reshape([int(x) for x in reversed(t.shape)]) if len(t.shape) > 1 else a
    arch = field(r, "general.architecture")
    hp = dict(
        arch=arch,
        n_layer=field(r, arch + ".block_count"),
        n_embd=field(r, arch + ".embedding_length"),
        n_head=field(r, arch + ".attention.head_count"),
        n_head_kv=field(r, arch + ".attention.head_count_kv"),
        eps=field(r, arch + ".attention.layer_norm_rms_epsilon"),
        base=field(r, arch + ".rope.freq_base", 10000.0),
        window=field(r, arch + ".attention.sliding_window", 0),
    )
    hp["head_dim"] = field(r, arch + ".attention.key_length", hp["n_embd"] // hp["n_head"])
    return w, hp


def rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, pos, base, neox):
    d = x.shape[-1]
    half = d // 2
    th = pos[:, None] * base ** (-np.arange(half) * 2.0 / d)[None, :]
    c, s = np.cos(th)[:, None, :], np.sin(th)[:, None, :]
    y = np.empty_like(x)
    if neox:  # rotate halves
        x0, x1 = x[..., :half], x[..., half:]
        y[..., :half], y[..., half:] = x0 * c - x1 * s, x0 * s + x1 * c
    else:  # rotate interleaved pairs
        x0, x1 = x[..., 0::2], x[..., 1::2]
        y[..., 0::2], y[..., 1::2] = x0 * c - x1 * s, x0 * s + x1 * c
    return y


def forward(w, hp, toks):
    gemma = hp["arch"] == "gemma3"
    E, H, HKV, D, eps = hp["n_embd"], hp["n_head"], hp["n_head_kv"], hp["head_dim"], hp["eps"]
    n = len(toks)
    pos = np.arange(n, dtype=np.float64)
    x = w["token_embd.weight"][toks] * (np.sqrt(E) if gemma else 1.0)
    for l in range(hp["n_layer"]):
        p = "blk.%d." % l
        h = rms(x, w[p + "attn_norm.weight"], eps)
        q = (h @ w[p + "attn_q.weight"].T).reshape(n, H, D)
        k = (h @ w[p + "attn_k.weight"].T).reshape(n, HKV, D)
        v = (h @ w[p + "attn_v.weight"].T).reshape(n, HKV, D)
        swa = gemma and hp["window"] and l % 6 != 5
        if gemma:
            q = rms(q, w[p + "attn_q_norm.weight"], eps)
            k = rms(k, w[p + "attn_k_norm.weight"], eps)
        base = 10000.0 if swa else hp["base"]
        q, k = rope(q, pos, base, gemma), rope(k, pos, base, gemma)
        mask = np.triu(np.full((n, n), -np.inf), 1)
        if swa:
            mask += np.tril(np.full((n, n), -np.inf), -hp["window"])
        out = np.zeros((n, H, D))
        for hh in range(H):
            kv = hh // (H // HKV)
            s = q[:, hh, :] @ k[:, kv, :].T / np.sqrt(D) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            out[:, hh, :] = (s / s.sum(-1, keepdims=True)) @ v[:, kv, :]
        o = out.reshape(n, H * D) @ w[p + "attn_output.weight"].T
        if gemma:
            o = rms(o, w[p + "post_attention_norm.weight"], eps)
        x = x + o
        h = rms(x, w[p + "ffn_norm.weight"], eps)
        g, u = h @ w[p + "ffn_gate.weight"].T, h @ w[p + "ffn_up.weight"].T
        if gemma:
            g = 0.5 * g * (1 + np.tanh(np.sqrt(2 / np.pi) * (g + 0.044715 * g**3)))
        else:
            g = g / (1 + np.exp(-g))
        f = (g * u) @ w[p + "ffn_down.weight"].T
        if gemma:
            f = rms(f, w[p + "post_ffw_norm.weight"], eps)
        x = x + f
    x = rms(x[-1:], w["output_norm.weight"], eps)
    out_w = w.get("output.weight", w["token_embd.weight"])
    return (x @ out_w.T)[0]


def prompts(greedy_path, count):
    seqs = []
    for line in open(greedy_path, encoding="utf-8", errors="replace"):
        if line.startswith("prompt_ids "):
            seqs.append([int(t) for t in line.split()[2:]])
    return seqs[:count]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models-dir", default=os.path.join(REPO, "models"))
    ap.add_argument("--count", type=int, default=2)
    args = ap.parse_args()
    out_dir = os.path.join(REPO, "tests", "data", "golden")
    for name in ("SmolLM2-135M-Instruct.Q4_1", "gemma-3-270m-q4_k_m"):
        w, hp = load(os.path.join(args.models_dir, name + ".gguf"))
        seqs = prompts(os.path.join(out_dir, name + ".greedy.txt"), args.count)
        n_vocab = w["token_embd.weight"].shape[0]
        with open(os.path.join(out_dir, name + ".exact.bin"), "wb") as f:
            f.write(b"BGEX" + struct.pack("<III", 1, n_vocab, len(seqs)))
            for s in seqs:
                logits = forward(w, hp, s)
                f.write(struct.pack("<I", len(s)) + np.asarray(s, "<i4").tobytes())
                f.write(logits.astype("<f4").tobytes())
                print(name, len(s), "tokens, argmax", int(logits.argmax()))


if __name__ == "__main__":
    main()
