#!/usr/bin/env python3
"""Golden-output generator for beast's end-to-end correctness tests.

Owns: tools/goldens/llama_goldens.py (this script). It drives llama.cpp through
the llama-cpp-python binding (a reference implementation, used for comparison
only) and writes, per model, into tests/data/golden/:

  <model>.greedy.txt  prompts, prompt token ids, greedy token ids, top-2 gaps
  <model>.topk.bin    teacher-forced top-K (id, logit) per sequence position
  <model>.full.bin    full f32 logit vectors at a few chosen positions

<model> is the GGUF file name without ".gguf". The formats are documented in
tools/goldens/README.md. Nothing here is needed at test time: CI only reads the
committed files.

Usage (see README.md for the full recipe):
  python3 tools/goldens/llama_goldens.py [--models-dir DIR] [--out DIR]
      [--gemma-template FILE] [--only NAME ...]
"""

import argparse
import glob
import hashlib
import json
import os
import struct
import sys
from datetime import datetime

import numpy as np

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# llama-cpp-python release -> the llama.cpp commit it vendors (from the sdist's
# CHANGELOG.md and vendor/llama.cpp git HEAD). Checked against the binding's
# version at run time so the recorded string cannot silently go stale.
LLAMA_CPP_COMMITS = {
    "0.3.36": "0c1e57098bba43ac29e6e3b677cdceebdd22334f",
}

N_GEN = 64  # greedy steps per prompt (fewer if an end-of-generation token comes)
TOPK = 32  # (id, logit) pairs kept per teacher-forced position
N_CTX = 1024
N_THREADS = 2
N_BATCH = 512
FULL_OFFSET = 32  # full.bin holds prompt 0 at last-prompt-pos and +FULL_OFFSET

# Varied single-turn user messages (explanation, poem, steps, arithmetic word
# problem, code, proper names, translation with non-ASCII text, one-word answer,
# and a multi-line message). Both models use the same list.
MESSAGES = [
    "Explain what a black hole is in simple terms.",
    "Write a short poem about the ocean at night.",
    "List the steps to make a cup of tea.",
    "A train travels at 60 miles per hour for 2.5 hours. How far does it go?",
    "Write a Python function that returns the factorial of a number.",
    "Who was Marie Curie, and what is she famous for?",
    'Translate into French: "The café is open today, and the weather is nice."',
    "What is the capital of Japan? Answer in one word.",
    "Give me three tips for learning to play the guitar.\nKeep it brief.",
]

# Plain-text prompts (no chat template; BOS only if the GGUF asks for one):
# ordinary text completion, which also exercises the tokenizer's own BOS path.
RAW_PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a little girl who",
    "def fibonacci(n):\n",
]

MODELS = {
    "SmolLM2-135M-Instruct.Q4_1": {"template": "gguf"},
    "gemma-3-270m-q4_k_m": {"template": "gemma3"},
}


# ---------------------------------------------------------------- templates


def make_jinja_env():
    """A jinja2 environment configured like transformers' apply_chat_template
    (transformers/utils/chat_template_utils.py: ImmutableSandboxedEnvironment,
    trim_blocks=True, lstrip_blocks=True, loopcontrols, tojson override,
    raise_exception and strftime_now globals)."""
    import jinja2
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols]
    )

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def render(template_text, messages, special_tokens):
    env = make_jinja_env()
    text = env.from_string(template_text).render(
        messages=messages, tools=None, documents=None, add_generation_prompt=True, **special_tokens
    )
    # Cross-check against transformers' own renderer when it is installed.
    try:
        from transformers.utils.chat_template_utils import render_jinja_template
    except Exception:  # pragma: no cover - optional
        return text, False
    ref, _ = render_jinja_template(
        conversations=[messages],
        chat_template=template_text,
        add_generation_prompt=True,
        **special_tokens,
    )
    if ref[0] != text:
        raise SystemExit("rendered prompt differs from transformers' render_jinja_template")
    return text, True


def find_gemma_template(arg):
    if arg:
        return arg
    hits = sorted(glob.glob(os.path.join(REPO, "tests", "data", "templates", "*gemma3*")))
    if not hits:
        raise SystemExit(
            "no tests/data/templates/*gemma3* file: pass --gemma-template FILE "
            "(the official Gemma 3 chat template text)"
        )
    return hits[0]


# ---------------------------------------------------------------- helpers


def escape(b):
    """One-line escape of a UTF-8 byte string: backslash, \\n, \\r, \\t and
    \\xHH for other bytes < 0x20 and 0x7f; bytes >= 0x80 are kept raw."""
    res = bytearray()
    for c in b:
        if c == 0x5C:
            res += b"\\\\"
        elif c == 0x0A:
            res += b"\\n"
        elif c == 0x0D:
            res += b"\\r"
        elif c == 0x09:
            res += b"\\t"
        elif c < 0x20 or c == 0x7F:
            res += b"\\x%02x" % c
        else:
            res.append(c)
    return bytes(res)


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def topk_sorted(row, k):
    """Top-k indices of row, by descending value, ties by ascending id."""
    kth = np.partition(row, row.size - k)[row.size - k]  # k-th largest value
    idx = np.nonzero(row >= kth)[0]
    order = np.lexsort((idx, -row[idx]))
    return idx[order][:k]


def logsumexp(row):
    m = float(np.max(row))
    return m + float(np.log(np.sum(np.exp(row.astype(np.float64) - m))))


# ---------------------------------------------------------------- main work


def gguf_meta(path):
    from gguf import GGUFReader

    r = GGUFReader(path)

    def get(key, default=None):
        f = r.fields.get(key)
        return f.contents() if f is not None else default

    tokens = r.fields["tokenizer.ggml.tokens"].contents()
    meta = {
        "chat_template": get("tokenizer.chat_template"),
        "add_bos": bool(get("tokenizer.ggml.add_bos_token", False)),
        "special": {},
    }
    for name in ("bos", "eos", "unknown", "padding"):
        tid = get("tokenizer.ggml.%s_token_id" % name)
        if tid is not None:
            key = {"unknown": "unk_token", "padding": "pad_token"}.get(name, name + "_token")
            meta["special"][key] = tokens[int(tid)]
    return meta


def run_model(llama_cpp, name, model_path, template_text, template_src, out_dir, version_line):
    meta = gguf_meta(model_path)
    llm = llama_cpp.Llama(
        model_path=model_path,
        n_ctx=N_CTX,
        n_threads=N_THREADS,
        n_threads_batch=N_THREADS,
        logits_all=True,
        seed=0,
        n_batch=N_BATCH,
        verbose=False,
    )
    vocab = llm._model.vocab
    n_vocab = llm.n_vocab()
    bos_id = llm.token_bos()
    bos_str = meta["special"].get("bos_token", "")

    records = []
    prompts = [("chat", m) for m in MESSAGES] + [("raw", m) for m in RAW_PROMPTS]
    for pi, (mode, msg) in enumerate(prompts):
        if mode == "chat":
            messages = [{"role": "user", "content": msg}]
            text, checked = render(template_text, messages, meta["special"])
        else:
            text, checked = msg, True
        emits_bos = bool(bos_str) and text.startswith(bos_str)
        add_bos = meta["add_bos"] and not emits_bos
        ids = llm.tokenize(text.encode("utf-8"), add_bos=add_bos, special=True)
        if len(ids) > 1 and ids[0] == bos_id and ids[1] == bos_id:
            raise SystemExit("double BOS in prompt %d" % pi)
        if meta["add_bos"] and ids[0] != bos_id:
            raise SystemExit("model wants BOS but prompt %d does not start with it" % pi)
        n_prompt = len(ids)
        assert n_prompt + N_GEN <= min(N_CTX, N_BATCH)

        # Greedy decoding: one token per eval, exact argmax of llama.cpp's logits.
        llm.reset()
        llm.eval(ids)
        gen, gaps, step_logits = [], [], []
        stop = "length"
        for _ in range(N_GEN):
            row = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
            step_logits.append(row)
            tok = int(np.argmax(row))
            second = float(np.max(np.delete(row, tok)))
            gen.append(tok)
            gaps.append(float(row[tok]) - second)
            if llama_cpp.llama_vocab_is_eog(vocab, tok):
                stop = "eog"
                break
            if len(gen) < N_GEN:
                llm.eval([tok])

        # Teacher-forced: the whole prompt+generated sequence in one batch.
        seq = ids + gen
        llm.reset()
        llm.eval(seq)
        tf = np.array(llm.scores[: len(seq)], dtype=np.float32)

        inc = np.stack(step_logits)
        tfg = tf[n_prompt - 1 : n_prompt - 1 + len(gen)]
        argmax_mismatch = int(np.sum(np.argmax(tfg, axis=1) != np.array(gen)))
        max_diff = float(np.max(np.abs(inc - tfg)))

        gen_text = llm.detokenize(gen)
        records.append(
            {
                "mode": mode,
                "message": msg,
                "text": text,
                "ids": ids,
                "gen": gen,
                "gaps": gaps,
                "stop": stop,
                "gen_text": gen_text,
                "tf": tf,
                "argmax_mismatch": argmax_mismatch,
                "max_diff": max_diff,
                "checked": checked,
                "add_bos": add_bos,
            }
        )
        print(
            "[%s] prompt %d (%s): %d prompt tokens, %d generated (%s), near-ties(<0.1) %d, "
            "tf-vs-incremental max|dlogit| %.4g, argmax mismatches %d"
            % (name, pi, mode, n_prompt, len(gen), stop, sum(g < 0.1 for g in gaps), max_diff,
               argmax_mismatch)
        )
        print("    -> %r" % gen_text.decode("utf-8", "replace"))

    model_sha = sha256_file(model_path)
    tmpl_sha = hashlib.sha256(template_text.encode("utf-8")).hexdigest()

    # ---- greedy.txt
    lines = [
        b"# beast golden: greedy decoding by llama.cpp (see tools/goldens/README.md)",
        b"# " + version_line.encode(),
        ("# n_ctx %d n_batch %d n_threads %d kv f16 flash_attn off cpu" % (N_CTX, N_BATCH, N_THREADS)).encode(),
        ("# template %s sha256 %s" % (template_src, tmpl_sha)).encode(),
        ("model %s.gguf" % name).encode(),
        ("model_sha256 %s" % model_sha).encode(),
        ("n_vocab %d" % n_vocab).encode(),
        ("n_gen_max %d" % N_GEN).encode(),
        ("n_prompts %d" % len(records)).encode(),
    ]
    for pi, r in enumerate(records):
        lines += [
            ("prompt %d" % pi).encode(),
            ("mode %s" % r["mode"]).encode(),
            b"message " + escape(r["message"].encode("utf-8")),
            b"text " + escape(r["text"].encode("utf-8")),
            ("add_bos %d" % int(r["add_bos"])).encode(),
            ("prompt_ids %d %s" % (len(r["ids"]), " ".join(map(str, r["ids"])))).encode(),
            ("gen_ids %d %s" % (len(r["gen"]), " ".join(map(str, r["gen"])))).encode(),
            ("gaps %d %s" % (len(r["gaps"]), " ".join("%.6f" % g for g in r["gaps"]))).encode(),
            ("stop %s" % r["stop"]).encode(),
            ("check tf_argmax_mismatch %d tf_vs_step_max_abs_diff %.6f"
             % (r["argmax_mismatch"], r["max_diff"])).encode(),
            b"gen_text " + escape(r["gen_text"]),
            b"end",
        ]
    with open(os.path.join(out_dir, name + ".greedy.txt"), "wb") as f:
        f.write(b"\n".join(lines) + b"\n")

    # ---- topk.bin
    with open(os.path.join(out_dir, name + ".topk.bin"), "wb") as f:
        f.write(b"BGTK")
        f.write(struct.pack("<IIII", 1, len(records), TOPK, n_vocab))
        for r in records:
            seq = r["ids"] + r["gen"]
            f.write(struct.pack("<II", len(seq), len(r["ids"])))
            f.write(np.asarray(seq, dtype="<i4").tobytes())
            for p in range(len(seq)):
                row = r["tf"][p]
                top = topk_sorted(row, TOPK)
                rec = np.zeros(TOPK, dtype=[("id", "<i4"), ("logit", "<f4")])
                rec["id"] = top
                rec["logit"] = row[top]
                f.write(struct.pack("<f", logsumexp(row)))
                f.write(rec.tobytes())

    # ---- full.bin: prompt 0, last prompt position and FULL_OFFSET further
    r0 = records[0]
    p0 = len(r0["ids"]) - 1
    p1 = min(p0 + FULL_OFFSET, len(r0["ids"]) + len(r0["gen"]) - 1)
    with open(os.path.join(out_dir, name + ".full.bin"), "wb") as f:
        f.write(b"BGFL")
        f.write(struct.pack("<III", 1, n_vocab, 2))
        for p in (p0, p1):
            f.write(struct.pack("<II", 0, p))
            f.write(r0["tf"][p].astype("<f4").tobytes())

    llm.close()
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models-dir", default=os.path.join(REPO, "models"))
    ap.add_argument("--out", default=os.path.join(REPO, "tests", "data", "golden"))
    ap.add_argument("--gemma-template", default=None,
                    help="Gemma 3 chat template file (default: tests/data/templates/*gemma3*)")
    ap.add_argument("--only", nargs="*", default=None, help="model names (GGUF stem) to run")
    args = ap.parse_args()

    import llama_cpp

    ver = llama_cpp.__version__
    commit = LLAMA_CPP_COMMITS.get(ver)
    if commit is None:
        raise SystemExit("unknown llama-cpp-python version %s: add its llama.cpp commit" % ver)
    version_line = "llama.cpp %s via llama-cpp-python %s" % (commit, ver)
    try:
        sysinfo = llama_cpp.llama_print_system_info().decode().strip()
    except Exception:
        sysinfo = "?"
    print(version_line)
    print("system_info:", sysinfo)

    os.makedirs(args.out, exist_ok=True)
    summary = {}
    for name, cfg in MODELS.items():
        if args.only and name not in args.only:
            continue
        path = os.path.join(args.models_dir, name + ".gguf")
        if cfg["template"] == "gguf":
            template_text = gguf_meta(path)["chat_template"]
            template_src = "gguf:tokenizer.chat_template"
        else:
            tpath = find_gemma_template(args.gemma_template)
            with open(tpath, encoding="utf-8") as f:
                template_text = f.read()
            template_src = os.path.basename(tpath)
        recs = run_model(llama_cpp, name, path, template_text, template_src, args.out, version_line)
        summary[name] = recs

    print("\nsummary")
    for name, recs in summary.items():
        steps = sum(len(r["gaps"]) for r in recs)
        gaps = [g for r in recs for g in r["gaps"]]
        mism = sum(r["argmax_mismatch"] for r in recs)
        print("  %s: %d prompts, %d greedy steps, near-ties: %d with gap < 0.1, %d < 0.5, %d < 1.0; "
              "%d teacher-forced argmax mismatches; max |tf - step| logit diff %.3f; "
              "transformers render check: %s"
              % (name, len(recs), steps, sum(g < 0.1 for g in gaps), sum(g < 0.5 for g in gaps),
                 sum(g < 1.0 for g in gaps), mism, max(r["max_diff"] for r in recs),
                 all(r["checked"] for r in recs)))


if __name__ == "__main__":
    sys.exit(main())
