"""test_openai.py: the official `openai` Python client, unchanged, and curl
against `beast serve`: chat and completions, streaming and not, usage and
finish reasons, max_tokens, stop strings, include_usage, seeds, logprobs,
errors, the context limit and the API key.

usage: test_openai.py URL [--keyed URL --key KEY] [--small URL]
  --keyed: a server started with --api-key KEY
  --small: a server started with --parallel 1 --queue 1 --timeout 2 (admission, timeout)
"""
import argparse
import json
import subprocess
import threading
import time

import openai

from e2e import Checks, request, sse_payloads

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("--keyed")
ap.add_argument("--key")
ap.add_argument("--small")
args = ap.parse_args()
URL = args.url.rstrip("/")
KEYED, KEY, SMALL = args.keyed, args.key, args.small
T = Checks("test_openai")
client = openai.OpenAI(base_url=URL + "/v1", api_key="unused", max_retries=0, timeout=300)
MODEL = "default"
HELLO = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
STORY = "Once upon a time, in a small village by the sea,"


def usage_ok(u, max_tokens, what):
    T.ok(u is not None, f"{what}: usage present")
    if u is None:
        return
    T.ok(u.prompt_tokens > 0, f"{what}: prompt_tokens > 0", str(u.prompt_tokens))
    T.ok(0 < u.completion_tokens <= max_tokens, f"{what}: 0 < completion_tokens <= {max_tokens}",
         str(u.completion_tokens))
    T.eq(u.total_tokens, u.prompt_tokens + u.completion_tokens, f"{what}: total = prompt + completion")


def stream_chat(**kw):
    """Streams a chat completion; returns (text, finish_reason, usage, n_content_chunks, chunks)."""
    text, finish, usage, n, chunks = "", None, None, 0, []
    for ch in client.chat.completions.create(model=MODEL, stream=True, **kw):
        chunks.append(ch)
        if ch.usage is not None:
            usage = ch.usage
        for c in ch.choices:
            if c.delta and c.delta.content:
                text += c.delta.content
                n += 1
            if c.finish_reason:
                T.ok(finish is None, "one finish_reason per stream", f"second: {c.finish_reason}")
                finish = c.finish_reason
    return text, finish, usage, n, chunks


def stream_completion(**kw):
    text, finish, usage = "", None, None
    for ch in client.completions.create(model=MODEL, stream=True, **kw):
        if ch.usage is not None:
            usage = ch.usage
        for c in ch.choices:
            text += c.text or ""
            if c.finish_reason:
                finish = c.finish_reason
    return text, finish, usage


def test_models():
    global MODEL
    ms = client.models.list()
    ids = [m.id for m in ms.data]
    T.ok(len(ids) >= 1 and all(isinstance(i, str) and i for i in ids), "GET /v1/models lists a model", str(ids))
    if ids:
        MODEL = ids[0]


def test_chat():
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=32, temperature=0)
    c = r.choices[0]
    T.eq(r.object, "chat.completion", "chat: object")
    T.ok(isinstance(c.message.content, str) and c.message.content.strip(), "chat: non-empty reply",
         repr(c.message.content))
    T.eq(c.message.role, "assistant", "chat: role")
    T.ok(c.finish_reason in ("stop", "length"), "chat: finish_reason stop/length", str(c.finish_reason))
    usage_ok(r.usage, 32, "chat")
    print(f"     chat reply: {c.message.content!r}")

    text, finish, usage, n, chunks = stream_chat(messages=HELLO, max_tokens=32, temperature=0)
    T.ok(n >= 1 and text.strip(), "chat stream: content chunks arrive", f"{n} chunks")
    T.eq(text, c.message.content, "chat stream: greedy text equals the non-streamed reply")
    T.eq(finish, c.finish_reason, "chat stream: same finish_reason")
    T.ok(all(ch.object == "chat.completion.chunk" for ch in chunks), "chat stream: chunk object")
    T.ok(len({ch.id for ch in chunks}) == 1, "chat stream: one id for all chunks")
    T.ok(usage is None, "chat stream: no usage without stream_options.include_usage")

    text2, finish2, usage2, _, chunks2 = stream_chat(messages=HELLO, max_tokens=32, temperature=0,
                                                     stream_options={"include_usage": True})
    T.eq(text2, text, "include_usage: same text")
    usage_ok(usage2, 32, "include_usage")
    if usage2 is not None and r.usage is not None:
        T.eq((usage2.prompt_tokens, usage2.completion_tokens), (r.usage.prompt_tokens, r.usage.completion_tokens),
             "include_usage: same counts as the non-streamed reply")
    last = chunks2[-1] if chunks2 else None
    T.ok(last is not None and last.usage is not None and last.choices == [],
         "include_usage: the last chunk carries usage and no choices")
    T.ok(all(ch.usage is None for ch in chunks2[:-1]), "include_usage: only the last chunk has usage")


def test_completions():
    r = client.completions.create(model=MODEL, prompt=STORY, max_tokens=24, temperature=0)
    c = r.choices[0]
    T.eq(r.object, "text_completion", "completion: object")
    T.ok(isinstance(c.text, str) and c.text.strip(), "completion: non-empty text", repr(c.text))
    T.ok(c.finish_reason in ("stop", "length"), "completion: finish_reason", str(c.finish_reason))
    usage_ok(r.usage, 24, "completion")
    print(f"     completion: {c.text!r}")
    text, finish, usage = stream_completion(prompt=STORY, max_tokens=24, temperature=0,
                                            stream_options={"include_usage": True})
    T.eq(text, c.text, "completion stream: greedy text equals the non-streamed one")
    T.eq(finish, c.finish_reason, "completion stream: same finish_reason")
    usage_ok(usage, 24, "completion stream")


def test_max_tokens():
    r = client.completions.create(model=MODEL, prompt=STORY, max_tokens=5, temperature=0)
    T.eq(r.choices[0].finish_reason, "length", "max_tokens=5: finish length")
    T.eq(r.usage.completion_tokens, 5, "max_tokens=5: 5 completion tokens")
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_completion_tokens=5, temperature=0)
    T.eq(r.choices[0].finish_reason, "length", "chat max_completion_tokens=5: finish length")
    T.eq(r.usage.completion_tokens, 5, "chat max_completion_tokens=5: 5 completion tokens")
    _, finish, usage, _, _ = stream_chat(messages=HELLO, max_tokens=5, temperature=0,
                                         stream_options={"include_usage": True})
    T.eq(finish, "length", "chat stream max_tokens=5: finish length")
    T.eq(usage.completion_tokens if usage else None, 5, "chat stream max_tokens=5: 5 completion tokens")
    # ignore_eos (vLLM / llama.cpp extension, used by load tests): a reply that
    # stops early by itself runs to max_tokens when asked to ignore EOS
    short = [{"role": "user", "content": "Say hi."}]
    r = client.chat.completions.create(model=MODEL, messages=short, max_tokens=60, temperature=0)
    T.eq(r.choices[0].finish_reason, "stop", "short greedy reply ends by itself")
    r = client.chat.completions.create(model=MODEL, messages=short, max_tokens=60, temperature=0,
                                       extra_body={"ignore_eos": True})
    T.eq((r.choices[0].finish_reason, r.usage.completion_tokens), ("length", 60),
         "ignore_eos: runs to max_tokens")


def pick_stop(text):
    """A stop string that occurs in text after its start: the third word."""
    words = text.split()
    for w in words[2:]:
        if len(w) >= 3 and text.find(w) > 0:
            return w
    return None


def test_stop():
    full = client.completions.create(model=MODEL, prompt=STORY, max_tokens=32, temperature=0).choices[0].text
    stop = pick_stop(full)
    if not T.ok(stop is not None, "stop: found a stop string in the greedy text", repr(full)):
        return
    want = full[: full.find(stop)]
    r = client.completions.create(model=MODEL, prompt=STORY, max_tokens=32, temperature=0, stop=[stop, "zzzz"])
    got = r.choices[0].text
    T.ok(stop not in got, f"stop {stop!r}: text does not contain it", repr(got))
    T.eq(got, want, f"stop {stop!r}: text is the greedy text up to the stop string")
    T.eq(r.choices[0].finish_reason, "stop", "stop: finish_reason stop")
    text, finish, _ = stream_completion(prompt=STORY, max_tokens=32, temperature=0, stop=stop)
    T.eq(text, want, f"stop {stop!r} (string, streamed): same text")
    T.eq(finish, "stop", "stop streamed: finish_reason stop")
    # chat, streamed: the stop string never leaks into a delta, even split across tokens
    reply = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=32, temperature=0)
    cstop = pick_stop(reply.choices[0].message.content)
    if cstop:
        text, finish, _, _, _ = stream_chat(messages=HELLO, max_tokens=32, temperature=0, stop=[cstop])
        T.ok(cstop not in text, f"chat stop {cstop!r}: stream does not contain it", repr(text))
        T.eq(text, reply.choices[0].message.content.split(cstop)[0], "chat stop: text up to the stop string")
        T.eq(finish, "stop", "chat stop: finish_reason stop")


def test_seed():
    kw = dict(model=MODEL, prompt=STORY, max_tokens=24, temperature=0.9)
    a = client.completions.create(seed=1234, **kw).choices[0].text
    b = client.completions.create(seed=1234, **kw).choices[0].text
    T.eq(b, a, "seed 1234 at temperature 0.9: same text twice")
    others = [client.completions.create(seed=s, **kw).choices[0].text for s in (1, 2, 3)]
    T.ok(any(o != a for o in others), "other seeds give other texts", repr(others))
    msgs = [{"role": "user", "content": "Tell me a short story about a cat."}]
    c1 = client.chat.completions.create(model=MODEL, messages=msgs, max_tokens=24, temperature=0.9, seed=7)
    c2, _, _, _, _ = stream_chat(messages=msgs, max_tokens=24, temperature=0.9, seed=7)
    T.eq(c2, c1.choices[0].message.content, "chat seed 7: streamed and non-streamed texts equal")


def test_logprobs():
    r = client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0,
                                       logprobs=True, top_logprobs=3)
    lp = r.choices[0].logprobs
    if not T.ok(lp is not None and lp.content is not None, "chat logprobs: present"):
        return
    n = r.usage.completion_tokens - (1 if r.choices[0].finish_reason == "stop" else 0)  # EOS may count
    T.ok(len(lp.content) in (n, r.usage.completion_tokens), "chat logprobs: one entry per generated token",
         f"{len(lp.content)} entries, usage {r.usage.completion_tokens}")
    T.eq("".join(e.token for e in lp.content), r.choices[0].message.content,
         "chat logprobs: tokens spell the reply")
    good = True
    for e in lp.content:
        tops = e.top_logprobs
        good &= isinstance(e.token, str) and e.logprob <= 1e-6 and len(tops) == 3
        good &= all(tops[i].logprob >= tops[i + 1].logprob for i in range(len(tops) - 1))
        # greedy: the chosen token is the most likely one
        good &= bool(tops) and abs(tops[0].logprob - e.logprob) < 1e-3
    T.ok(good, "chat logprobs: logprob <= 0, 3 sorted top_logprobs, greedy token is the top one",
         json.dumps([e.model_dump() for e in lp.content])[:600])
    # streamed: each content chunk carries its token's logprobs
    entries = []
    for ch in client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=8, temperature=0,
                                             logprobs=True, top_logprobs=2, stream=True):
        for c in ch.choices:
            if c.logprobs and c.logprobs.content:
                entries += c.logprobs.content
    T.ok(len(entries) in (n, r.usage.completion_tokens), "chat stream logprobs: one entry per token",
         f"{len(entries)} entries")
    T.ok(entries and all(len(e.top_logprobs) == 2 for e in entries), "chat stream logprobs: 2 top entries each")
    # legacy completions: logprobs is the number of alternatives
    r = client.completions.create(model=MODEL, prompt=STORY, max_tokens=6, temperature=0, logprobs=2)
    lp = r.choices[0].logprobs
    if T.ok(lp is not None and lp.tokens is not None, "completion logprobs: present"):
        n = r.usage.completion_tokens
        T.ok(len(lp.tokens) == n and len(lp.token_logprobs) == n and len(lp.top_logprobs) == n,
             "completion logprobs: tokens/token_logprobs/top_logprobs per token",
             f"{len(lp.tokens)} {len(lp.token_logprobs)} {len(lp.top_logprobs)} vs {n}")
        T.ok(all(len(t) == 2 for t in lp.top_logprobs), "completion logprobs: 2 alternatives each")
        T.eq("".join(lp.tokens), r.choices[0].text, "completion logprobs: tokens spell the text")


def test_errors():
    r = request(URL, "POST", "/v1/chat/completions", body=b'{"messages": [', headers={"Content-Type": "application/json"})
    T.eq(r.status, 400, "malformed JSON: 400")
    try:
        e = r.json().get("error", {})
        T.ok(isinstance(e.get("message"), str) and e["message"] and isinstance(e.get("type"), str),
             "malformed JSON: OpenAI error shape {error: {message, type}}", r.body[:200])
    except ValueError:
        T.ok(False, "malformed JSON: error body is JSON", r.body[:200])
    T.ok((r.header("Content-Type") or "").startswith("application/json"), "error: Content-Type json")
    try:
        client.chat.completions.create(model=MODEL, messages="not a list", max_tokens=4)
        T.ok(False, "messages not a list: BadRequestError")
    except openai.BadRequestError as e:
        T.ok(e.status_code == 400 and e.message, "messages not a list: BadRequestError 400")
    try:
        client.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature="hot")
        T.ok(False, "temperature 'hot': BadRequestError")
    except openai.BadRequestError:
        T.ok(True, "temperature 'hot': BadRequestError")
    # a prompt that can never fit the context: 400 before any work
    try:
        client.completions.create(model=MODEL, prompt="hello " * 6000, max_tokens=4)
        T.ok(False, "prompt longer than the context: BadRequestError")
    except openai.BadRequestError as e:
        T.ok(True, "prompt longer than the context: BadRequestError", str(e))
    r = request(URL, "GET", "/v1/no-such-thing")
    T.eq(r.status, 404, "unknown path: 404")
    r = request(URL, "DELETE", "/v1/chat/completions")
    T.ok(r.status in (404, 405), "DELETE /v1/chat/completions: 404/405", str(r.status))
    # the model name: any name is accepted (one model is served) or rejected with 404 + error body
    r = request(URL, "POST", "/v1/chat/completions",
                body={"model": "no-such-model", "messages": HELLO, "max_tokens": 2})
    T.ok(r.status == 200 or (r.status in (400, 404) and "error" in r.json()),
         "unknown model name: served or a clean error", f"{r.status} {r.body[:200]!r}")


def test_api_key():
    if not KEYED:
        return
    r = request(KEYED, "POST", "/v1/chat/completions", body={"messages": HELLO, "max_tokens": 2})
    T.eq(r.status, 401, "api key: no Authorization -> 401")
    T.ok("error" in r.json(), "api key: 401 has an error body", r.body[:200])
    r = request(KEYED, "GET", "/v1/models", headers={"Authorization": "Bearer wrong"})
    T.eq(r.status, 401, "api key: wrong key -> 401")
    bad = openai.OpenAI(base_url=KEYED + "/v1", api_key="wrong", max_retries=0)
    try:
        bad.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=2)
        T.ok(False, "api key: client with a wrong key raises AuthenticationError")
    except openai.AuthenticationError:
        T.ok(True, "api key: client with a wrong key raises AuthenticationError")
    good = openai.OpenAI(base_url=KEYED + "/v1", api_key=KEY, max_retries=0, timeout=300)
    r = good.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=0)
    T.ok(r.choices[0].message.content is not None and r.usage.completion_tokens > 0, "api key: right key -> 200")
    text = ""
    for ch in good.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=4, temperature=0, stream=True):
        for c in ch.choices:
            text += c.delta.content or ""
    T.eq(text, r.choices[0].message.content, "api key: streaming with the right key")


def test_admission_timeout():
    """--parallel 1 --queue 1: of 6 simultaneous requests one runs, one waits,
    the rest get 429 + Retry-After at once; --timeout 2 ends a long one."""
    if not SMALL:
        return
    out, barrier = [None] * 6, threading.Barrier(6)

    def go(i):
        barrier.wait()
        t0 = time.monotonic()
        r = request(SMALL, "POST", "/v1/completions", body={"prompt": f"Story number {i}:", "max_tokens": 48,
                                                            "temperature": 0})
        out[i] = (r, time.monotonic() - t0)

    ths = [threading.Thread(target=go, args=(i,)) for i in range(6)]
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    codes = sorted(r.status for r, _ in out)
    print(f"     admission: statuses {codes}, seconds {[round(t, 2) for _, t in out]}")
    T.ok(codes.count(200) >= 2 and set(codes) <= {200, 429, 503}, "admission: >= 2 served, the rest 429/503", str(codes))
    busy = [(r, t) for r, t in out if r.status in (429, 503)]
    T.ok(busy, "admission: a full queue rejects (429/503)", str(codes))
    T.ok(all(r.header("Retry-After") for r, _ in busy), "admission: Retry-After on every rejection")
    T.ok(all("error" in r.json() for r, _ in busy), "admission: rejections carry an OpenAI error body")
    # the timeout: a long request is cut off after about 2 s with what it has
    t0 = time.monotonic()
    r = request(SMALL, "POST", "/v1/completions", body={"prompt": STORY, "max_tokens": 900, "temperature": 0,
                                                        "ignore_eos": True})
    dt = time.monotonic() - t0
    j = r.json() if r.status == 200 else {}
    print(f"     timeout: status {r.status} after {dt:.1f} s, {j.get('usage')}")
    T.ok(r.status in (200, 408, 504) and dt < 60, "timeout: a request longer than --timeout 2 ends early",
         f"{r.status} after {dt:.1f} s")
    if r.status == 200:
        T.ok(j["usage"]["completion_tokens"] < 900, "timeout: fewer tokens than asked", str(j.get("usage")))


def curl(*args):
    p = subprocess.run(["curl", "-sS", "--max-time", "300", *args], capture_output=True, timeout=310)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def test_curl():
    body = json.dumps({"messages": HELLO, "max_tokens": 16, "temperature": 0, "stream": True})
    rc, out, err = curl("-N", "-H", "Content-Type: application/json", "-d", body, URL + "/v1/chat/completions")
    T.eq(rc, 0, "curl -N stream: exit 0")
    datas = [ln[5:].strip() for ln in out.splitlines() if ln.startswith("data:")]
    T.ok(datas and datas[-1] == "[DONE]", "curl -N stream: ends with data: [DONE]", out[-200:])
    text, finish = "", None
    for d in datas[:-1]:
        ch = json.loads(d)
        for c in ch.get("choices", []):
            text += (c.get("delta") or {}).get("content") or ""
            finish = c.get("finish_reason") or finish
    T.ok(text.strip() and finish in ("stop", "length"), "curl -N stream: text and finish_reason", repr(text))
    rc, out, err = curl("-H", "Content-Type: application/json", "-d",
                        json.dumps({"prompt": STORY, "max_tokens": 4, "temperature": 0}), URL + "/v1/completions")
    j = json.loads(out) if rc == 0 else {}
    T.ok(j.get("choices") and j["choices"][0].get("text"), "curl completion: text", out[:200])
    # raw SSE framing: content type and blank-line separated events
    status, payloads, _ = sse_payloads(URL, "/v1/completions",
                                       {"prompt": STORY, "max_tokens": 4, "temperature": 0, "stream": True})
    T.eq(status, 200, "raw SSE: 200")
    T.ok(payloads and payloads[-1] == "[DONE]" and all(json.loads(p) for p in payloads[:-1]),
         "raw SSE: JSON data events then [DONE]", str(payloads)[:300])


for fn in (test_models, test_chat, test_completions, test_max_tokens, test_stop, test_seed, test_logprobs,
           test_errors, test_api_key, test_curl, test_admission_timeout):
    T.run(fn)
T.finish()
