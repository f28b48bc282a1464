"""test_ollama.py: the Ollama-style endpoints of `beast serve` (/api/generate,
/api/chat as NDJSON streams and with stream:false, /api/tags, /api/show,
/api/version), /health, and /metrics (Prometheus text: parses, counters move
with the requests, histograms well formed).

usage: test_ollama.py URL
"""
import json

from e2e import Checks, base_url, parse_prometheus, request, stream_lines

URL = base_url()
T = Checks("test_ollama")
MSGS = [{"role": "user", "content": "Name three colors."}]
PROMPT = "The three primary colors are"


def ndjson(path, body):
    """Streams an NDJSON request; returns (status, content type, [objects])."""
    objs, status = [], None
    for st, line in stream_lines(URL, path, body):
        status = st
        if line:
            objs.append(json.loads(line))
    return status, objs


def check_final(o, what, max_tokens=None):
    T.ok(o.get("done") is True, f"{what}: final object has done:true", str(o)[:200])
    T.ok(o.get("done_reason") in ("stop", "length"), f"{what}: done_reason stop/length", str(o.get("done_reason")))
    pe, ev = o.get("prompt_eval_count"), o.get("eval_count")
    T.ok(isinstance(pe, int) and pe > 0, f"{what}: prompt_eval_count > 0", str(pe))
    T.ok(isinstance(ev, int) and ev > 0 and (max_tokens is None or ev <= max_tokens),
         f"{what}: 0 < eval_count <= num_predict", str(ev))
    for k in ("total_duration", "eval_duration"):
        T.ok(isinstance(o.get(k), int) and o[k] >= 0, f"{what}: {k} is a non-negative integer (ns)", str(o.get(k)))
    T.ok(isinstance(o.get("model"), str) and isinstance(o.get("created_at"), str), f"{what}: model, created_at")


def test_generate():
    body = {"model": "x", "prompt": PROMPT, "options": {"temperature": 0, "num_predict": 16}}
    status, objs = ndjson("/api/generate", body)
    T.eq(status, 200, "generate stream: 200")
    if not T.ok(len(objs) >= 2, "generate stream: several NDJSON objects", str(len(objs))):
        return
    T.ok(all(o.get("done") is False for o in objs[:-1]), "generate stream: done:false until the last")
    check_final(objs[-1], "generate stream", 16)
    text = "".join(o.get("response", "") for o in objs)
    T.ok(text.strip(), "generate stream: non-empty text", repr(text))
    r = request(URL, "POST", "/api/generate", body=dict(body, stream=False))
    T.eq(r.status, 200, "generate stream:false: 200")
    o = r.json()
    check_final(o, "generate stream:false", 16)
    T.eq(o.get("response"), text, "generate: greedy stream:false text equals the streamed text")
    T.eq(o.get("eval_count"), objs[-1].get("eval_count"), "generate: same eval_count")
    r = request(URL, "POST", "/api/generate",
                body={"prompt": PROMPT, "stream": False, "options": {"temperature": 0, "num_predict": 5}})
    o = r.json()
    T.eq((o.get("eval_count"), o.get("done_reason")), (5, "length"), "generate num_predict 5: 5 tokens, length")
    # seeds at temperature > 0
    b = {"prompt": PROMPT, "stream": False, "options": {"temperature": 0.9, "seed": 42, "num_predict": 16}}
    a1 = request(URL, "POST", "/api/generate", body=b).json().get("response")
    a2 = request(URL, "POST", "/api/generate", body=b).json().get("response")
    T.ok(a1 is not None and a1 == a2, "generate seed 42: same text twice", f"{a1!r} / {a2!r}")


def test_chat():
    body = {"model": "x", "messages": MSGS, "options": {"temperature": 0, "num_predict": 16}}
    status, objs = ndjson("/api/chat", body)
    T.eq(status, 200, "chat stream: 200")
    if not T.ok(len(objs) >= 2, "chat stream: several NDJSON objects", str(len(objs))):
        return
    T.ok(all(o.get("message", {}).get("role") == "assistant" for o in objs[:-1]), "chat stream: assistant messages")
    check_final(objs[-1], "chat stream", 16)
    text = "".join(o.get("message", {}).get("content", "") for o in objs)
    T.ok(text.strip(), "chat stream: non-empty text", repr(text))
    r = request(URL, "POST", "/api/chat", body=dict(body, stream=False))
    o = r.json()
    check_final(o, "chat stream:false", 16)
    T.eq(o.get("message", {}).get("content"), text, "chat: stream:false text equals the streamed text")
    # the same conversation through the OpenAI endpoint (same template, greedy) gives the same reply
    r = request(URL, "POST", "/v1/chat/completions", body={"messages": MSGS, "temperature": 0, "max_tokens": 16})
    T.eq(r.json()["choices"][0]["message"]["content"], text, "chat: /api/chat and /v1/chat/completions agree")
    r = request(URL, "POST", "/api/chat", body={"messages": "nope"})
    T.eq(r.status, 400, "chat: messages not a list -> 400")


def test_info():
    r = request(URL, "GET", "/api/tags")
    T.eq(r.status, 200, "tags: 200")
    ms = r.json().get("models", [])
    T.ok(len(ms) >= 1 and isinstance(ms[0].get("name"), str) and ms[0]["name"], "tags: lists the model", str(ms)[:200])
    name = ms[0].get("name", "x") if ms else "x"
    T.ok(bool(ms) and isinstance(ms[0].get("size"), int) and ms[0]["size"] > 0, "tags: size in bytes")
    r = request(URL, "POST", "/api/show", body={"model": name})
    T.eq(r.status, 200, "show: 200")
    o = r.json() if r.status == 200 else {}
    T.ok(isinstance(o.get("details"), dict) and isinstance(o.get("model_info"), dict),
         "show: details and model_info objects", str(o)[:300])
    mi = o.get("model_info", {})
    T.ok(any(k.endswith("context_length") for k in mi) and mi.get("general.architecture") == "llama",
         "show: model_info has general.architecture=llama and a context_length", str(mi)[:300])
    r = request(URL, "GET", "/api/version")
    T.ok(r.status == 200 and isinstance(r.json().get("version"), str), "version: {version: string}", r.body[:100])
    r = request(URL, "GET", "/health")
    T.eq(r.status, 200, "health: 200")


def scrape():
    r = request(URL, "GET", "/metrics")
    T.eq(r.status, 200, "metrics: 200")
    T.ok((r.header("Content-Type") or "").startswith("text/plain"), "metrics: text/plain", r.header("Content-Type"))
    samples, types, errors = parse_prometheus(r.body.decode())
    T.ok(not errors, "metrics: every line parses", str(errors[:3]))
    return samples, types


def family_sum(samples, pred):
    return sum(v for (n, lab), v in samples.items() if pred(n, dict(lab)))


def check_histograms(samples, types):
    hists = [f for f, t in types.items() if t == "histogram"]
    T.ok(len(hists) >= 2, "metrics: at least two histograms (TTFT, inter-token)", str(hists))
    for f in hists:
        buckets = {}
        for (n, lab), v in samples.items():
            lab = dict(lab)
            if n == f + "_bucket":
                key = frozenset((k, x) for k, x in lab.items() if k != "le")
                buckets.setdefault(key, []).append((float(lab["le"]), v))
        ok = bool(buckets)
        for key, bs in buckets.items():
            bs.sort()
            ok &= bs[-1][0] == float("inf")
            ok &= all(bs[i][1] <= bs[i + 1][1] for i in range(len(bs) - 1))
            cnt = samples.get((f + "_count", key))
            ok &= cnt is not None and cnt == bs[-1][1] and samples.get((f + "_sum", key), -1) >= 0
        T.ok(ok, f"metrics: histogram {f}: cumulative buckets, +Inf bucket = _count, _sum >= 0")


def test_metrics():
    before, types = scrape()
    n_req = 3
    for _ in range(n_req):
        request(URL, "POST", "/v1/completions", body={"prompt": PROMPT, "max_tokens": 4, "temperature": 0})
    after, types = scrape()
    fams = set(types)
    print("     metric families:", " ".join(sorted(fams)))
    counters = [f for f, t in types.items() if t == "counter"]

    def grew(words, at_least):
        fs = [f for f in counters if all(w in f for w in words)]
        if not fs:
            return False, f"no counter named like {words}"
        d = {f: family_sum(after, lambda n, _l, f=f: n in (f, f + "_total")) -
             family_sum(before, lambda n, _l, f=f: n in (f, f + "_total")) for f in fs}
        return any(v >= at_least for v in d.values()), str(d)

    for words, least, what in ((["request"], n_req, "requests"), (["prompt", "token"], n_req, "prompt tokens"),
                               (["token"], 4 * n_req, "generated tokens")):
        ok, detail = grew(words, least)
        T.ok(ok, f"metrics: a {what} counter grew by >= {least}", detail)
    has = lambda *ws: any(all(w in f for w in ws) for f in fams)  # noqa: E731
    T.ok(has("queue"), "metrics: queue depth")
    T.ok(has("active") or has("running"), "metrics: active sequences")
    T.ok(has("kv"), "metrics: KV blocks")
    T.ok(any(("ttft" in f or "first" in f) and types[f] == "histogram" for f in fams), "metrics: TTFT histogram")
    T.ok(any(("itl" in f or "inter" in f) and types[f] == "histogram" for f in fams), "metrics: inter-token histogram")
    check_histograms(after, types)
    ttft = [f for f in fams if ("ttft" in f or "first" in f) and types[f] == "histogram"]
    if ttft:
        f = ttft[0]
        d = family_sum(after, lambda n, _l: n == f + "_count") - family_sum(before, lambda n, _l: n == f + "_count")
        T.ok(d >= n_req, f"metrics: {f}_count grew by >= {n_req}", str(d))


for fn in (test_info, test_generate, test_chat, test_metrics):
    T.run(fn)
T.finish()
