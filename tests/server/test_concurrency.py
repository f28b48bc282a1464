"""test_concurrency.py: batching changes nothing but speed. N concurrent
streaming greedy chat requests (different prompts, staggered starts so that
prompt prefill mixes with decoding) must each get the text the same request
gets when sent alone. A difference is allowed only after a near-tie: at the
first differing token, the solo run's top-2 logprob gap (= logit gap) must be
< 0.1; the test reports how many streams differed and the gaps. Every stream
must end with a finish_reason and usage. With --deterministic the texts (and
logprobs) must be identical.

usage: test_concurrency.py URL [--deterministic] [--clients N] [--max-tokens N]
"""
import argparse
import json
import threading
import time

from e2e import QUICK, Checks, request, sse_payloads

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("--deterministic", action="store_true")
# BEAST_TEST_QUICK (the sanitizer build, ~10x slower): 8 clients, 8 tokens
ap.add_argument("--clients", type=int, default=8 if QUICK else 32)
ap.add_argument("--max-tokens", type=int, default=8 if QUICK else 24)
args = ap.parse_args()
URL = args.url.rstrip("/")
T = Checks("test_concurrency" + (" --deterministic" if args.deterministic else ""))
GAP = 0.1

TOPICS = ["the sea", "a lighthouse", "winter", "bread", "a violin", "the moon", "a library", "rain",
          "a bicycle", "volcanoes", "honeybees", "a clock", "chess", "a desert", "trains", "tea",
          "a garden", "snow", "the wind", "a city at night", "mountains", "a river", "paper", "a fox",
          "glass", "thunder", "a market", "an old map", "the stars", "a bridge", "salt", "a candle"]
SYSTEM = ("You are a helpful assistant. You answer briefly and clearly, in plain English, "
          "without lists or headings.")


def messages(i):
    topic = TOPICS[i % len(TOPICS)]
    if i % 3 == 0:  # a shared system prompt (prefix-cache candidates) on a third of them
        return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Describe {topic}."}]
    if i % 3 == 1:  # a longer prompt: its prefill overlaps others' decoding
        filler = " ".join(f"{topic} is item {k} of my list." for k in range(12))
        return [{"role": "user", "content": f"{filler} Now write one sentence about {topic}."}]
    return [{"role": "user", "content": f"Write one sentence about {topic}."}]


def run_one(i):
    """One streaming request; returns a result dict (never raises)."""
    body = {"messages": messages(i), "max_tokens": args.max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2}
    res = {"i": i, "text": "", "tokens": [], "finish": None, "usage": None, "error": None, "n_done": 0}
    try:
        t0 = time.monotonic()
        status, payloads, times = sse_payloads(URL, "/v1/chat/completions", body, timeout=600)
        res["status"], res["t"] = status, (times[-1] if times else time.monotonic()) - t0
        if status != 200:
            res["error"] = f"status {status}"
            return res
        for p in payloads:
            if p == "[DONE]":
                res["n_done"] += 1
                continue
            ch = json.loads(p)
            if ch.get("usage"):
                res["usage"] = ch["usage"]
            for c in ch.get("choices") or []:
                res["text"] += (c.get("delta") or {}).get("content") or ""
                if c.get("finish_reason"):
                    res["finish"] = c["finish_reason"]
                lp = c.get("logprobs") or {}
                for e in lp.get("content") or []:
                    res["tokens"].append((e["token"], e["logprob"], [t["logprob"] for t in e["top_logprobs"]]))
    except Exception as e:  # noqa: BLE001
        res["error"] = f"{type(e).__name__}: {e}"
    return res


def run_concurrent(n):
    out = [None] * n
    barrier = threading.Barrier(n)

    def worker(i):
        barrier.wait()
        time.sleep((i % 4) * 0.05)  # staggered: later arrivals join a running batch
        out[i] = run_one(i)

    ths = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    return out, time.monotonic() - t0


def check_stream(r, what):
    ok = r["error"] is None and r["finish"] in ("stop", "length") and r["n_done"] == 1
    u = r["usage"] or {}
    # completion_tokens may count the end-of-generation token, which has no text and no logprobs entry
    nt = len(r["tokens"])
    ok &= u.get("completion_tokens") in ((nt, nt + 1) if r["finish"] == "stop" else (nt,)) and nt <= args.max_tokens
    ok &= u.get("prompt_tokens", 0) > 0 and u.get("total_tokens") == u.get("prompt_tokens", 0) + u.get("completion_tokens", 0)
    ok &= "".join(t[0] for t in r["tokens"]) == r["text"]
    return T.ok(ok, f"{what} stream {r['i']}: finish_reason, usage, [DONE], tokens spell the text",
                f"error={r['error']} finish={r['finish']} usage={u} n_tokens={len(r['tokens'])} done={r['n_done']}")


def main():
    n = args.clients
    T.ok(request(URL, "GET", "/health").status == 200, "health before")
    t0 = time.monotonic()
    solo = [run_one(i) for i in range(n)]
    t_solo = time.monotonic() - t0
    for r in solo:
        check_stream(r, "solo")
    conc, t_conc = run_concurrent(n)
    for r in conc:
        check_stream(r, f"{n} concurrent")
    differed, bad, max_lp_diff = [], [], 0.0
    for s, c in zip(solo, conc):
        if s["error"] or c["error"]:
            continue
        m = min(len(s["tokens"]), len(c["tokens"]))
        for k in range(m):
            max_lp_diff = max(max_lp_diff, abs(s["tokens"][k][1] - c["tokens"][k][1]))
        if s["text"] == c["text"] and [t[0] for t in s["tokens"]] == [t[0] for t in c["tokens"]]:
            continue
        k = next((k for k in range(m) if s["tokens"][k][0] != c["tokens"][k][0]), m)
        if k >= len(s["tokens"]) or len(s["tokens"][k][2]) < 2:
            gap = float("inf")  # one ended (EOS or stop) where the other went on: no tie to blame
        else:
            tops = s["tokens"][k][2]
            gap = tops[0] - tops[1]
        cgap = (c["tokens"][k][2][0] - c["tokens"][k][2][1]) if k < len(c["tokens"]) and len(c["tokens"][k][2]) >= 2 else None
        differed.append((s["i"], k, gap, cgap))
        if gap >= GAP:
            bad.append(s["i"])
            print(f"     stream {s['i']} differs at token {k} (gap {gap:.4f}):\n       solo: {s['text']!r}\n"
                  f"       conc: {c['text']!r}")
    gen = sum(len(r["tokens"]) for r in conc)
    print(f"     {n} streams, {len(differed)} differed from their solo run; first-difference gaps (solo, concurrent): "
          + (", ".join(f"#{i}@{k}: {g:.4f}/{cg if cg is None else round(cg, 4)}" for i, k, g, cg in differed) or "none"))
    print(f"     largest logprob difference on the common prefix: {max_lp_diff:.3g}")
    print(f"     solo: {t_solo:.1f} s for {sum(len(r['tokens']) for r in solo)} tokens; "
          f"{n} concurrent: {t_conc:.1f} s for {gen} tokens ({gen / max(t_conc, 1e-9):.1f} tok/s aggregate)")
    if args.deterministic:
        T.eq(len(differed), 0, "--deterministic: every concurrent text equals its solo text")
        T.ok(max_lp_diff == 0.0, "--deterministic: logprobs identical", f"max diff {max_lp_diff}")
    else:
        T.eq(bad, [], f"streams that differ only after a near-tie (top-2 gap < {GAP})")
    T.ok(request(URL, "GET", "/health").status == 200, "health after")


T.run(main)
T.finish()
