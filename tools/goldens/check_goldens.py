#!/usr/bin/env python3
"""Format checker for the llama.cpp goldens in tests/data/golden/.

Owns: tools/goldens/check_goldens.py. Parses <model>.greedy.txt, .topk.bin and
.full.bin strictly as documented in tools/goldens/README.md (independently of
the generator) and cross-checks them: same token sequences, top-k sorted and
consistent with logsumexp, full vectors equal to the top-k rows at their
positions, greedy ids equal the greedy text's decoded counts. Needs numpy only.

Usage: python3 tools/goldens/check_goldens.py [golden dir]
"""

import glob
import os
import struct
import sys

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def unescape(s):
    out = bytearray()
    i = 0
    while i < len(s):
        c = s[i]
        if c == 0x5C:
            n = s[i + 1]
            if n == ord("x"):
                out.append(int(s[i + 2 : i + 4], 16))
                i += 4
                continue
            out.append({ord("\\"): 0x5C, ord("n"): 0x0A, ord("r"): 0x0D, ord("t"): 0x09}[n])
            i += 2
        else:
            out.append(c)
            i += 1
    return bytes(out)


def read_greedy(path):
    head, prompts, cur = {}, [], None
    with open(path, "rb") as f:
        for line in f.read().split(b"\n"):
            if not line or line.startswith(b"#"):
                continue
            key, _, val = line.partition(b" ")
            key = key.decode()
            if key == "prompt":
                cur = {"index": int(val)}
            elif key == "end":
                prompts.append(cur)
                cur = None
            elif cur is None:
                head[key] = val.decode()
            elif key in ("message", "text", "gen_text"):
                cur[key] = unescape(val)
            elif key in ("prompt_ids", "gen_ids", "gaps"):
                parts = val.split()
                n = int(parts[0])
                conv = float if key == "gaps" else int
                vals = [conv(x) for x in parts[1:]]
                assert len(vals) == n, (path, key)
                cur[key] = vals
            else:
                cur[key] = val.decode()
    assert int(head["n_prompts"]) == len(prompts)
    return head, prompts


def read_topk(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"BGTK"
    ver, n_prompts, k, n_vocab = struct.unpack_from("<IIII", data, 4)
    assert ver == 1
    off = 20
    out = []
    rec = np.dtype([("id", "<i4"), ("logit", "<f4")])
    for _ in range(n_prompts):
        n_tok, n_prompt = struct.unpack_from("<II", data, off)
        off += 8
        toks = np.frombuffer(data, "<i4", n_tok, off).tolist()
        off += 4 * n_tok
        lse = np.empty(n_tok, np.float32)
        top = np.empty((n_tok, k), rec)
        for p in range(n_tok):
            (lse[p],) = struct.unpack_from("<f", data, off)
            off += 4
            top[p] = np.frombuffer(data, rec, k, off)
            off += 8 * k
        out.append({"tokens": toks, "n_prompt": n_prompt, "lse": lse, "top": top})
    assert off == len(data), "trailing bytes in " + path
    return k, n_vocab, out


def read_full(path):
    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b"BGFL"
    ver, n_vocab, n = struct.unpack_from("<III", data, 4)
    assert ver == 1
    off, out = 16, []
    for _ in range(n):
        pi, pos = struct.unpack_from("<II", data, off)
        off += 8
        out.append((pi, pos, np.frombuffer(data, "<f4", n_vocab, off)))
        off += 4 * n_vocab
    assert off == len(data), "trailing bytes in " + path
    return n_vocab, out


def check(stem):
    head, prompts = read_greedy(stem + ".greedy.txt")
    k, n_vocab, tk = read_topk(stem + ".topk.bin")
    nv2, full = read_full(stem + ".full.bin")
    assert n_vocab == nv2 == int(head["n_vocab"])
    assert len(tk) == len(prompts)
    ties = 0
    for pr, t in zip(prompts, tk):
        seq = pr["prompt_ids"] + pr["gen_ids"]
        assert t["tokens"] == seq and t["n_prompt"] == len(pr["prompt_ids"])
        assert len(pr["gaps"]) == len(pr["gen_ids"]) <= int(head["n_gen_max"])
        assert pr["stop"] in ("eog", "length")
        assert pr["mode"] in ("chat", "raw")
        if pr["stop"] == "length":
            assert len(pr["gen_ids"]) == int(head["n_gen_max"])
        lg = t["top"]["logit"]
        assert np.all(np.diff(lg, axis=1) <= 0)
        assert np.all(t["lse"] >= lg[:, 0])
        assert np.all((t["top"]["id"] >= 0) & (t["top"]["id"] < n_vocab))
        ties += sum(g < 0.1 for g in pr["gaps"])
    for pi, pos, vec in full:
        row = tk[pi]["top"][pos]
        assert np.array_equal(vec[row["id"]], row["logit"]), "full/topk mismatch"
        order = np.lexsort((np.arange(n_vocab), -vec))[:k]
        assert np.array_equal(order, row["id"]), "full top-k order differs"
        m = float(vec.max())
        lse = m + np.log(np.sum(np.exp(vec.astype(np.float64) - m)))
        assert abs(lse - tk[pi]["lse"][pos]) < 1e-4
    steps = sum(len(p["gaps"]) for p in prompts)
    print("%s: ok (%d prompts, %d greedy steps, %d gaps < 0.1, k=%d, n_vocab=%d, %d full rows)"
          % (os.path.basename(stem), len(prompts), steps, ties, k, n_vocab, len(full)))


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "data", "golden")
    stems = sorted(p[: -len(".greedy.txt")] for p in glob.glob(os.path.join(d, "*.greedy.txt")))
    if not stems:
        raise SystemExit("no goldens in " + d)
    for s in stems:
        check(s)


if __name__ == "__main__":
    main()
