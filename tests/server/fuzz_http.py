"""fuzz_http.py: a seeded, time-bounded request fuzzer for `beast serve`.

Sends malformed JSON, wrong types for every request field, huge and negative
numbers, NaN/Infinity literals, deep nesting, huge arrays, invalid UTF-8,
oversized bodies, wrong methods, unknown and overlong paths, broken HTTP
framing, slow clients that trickle their headers and stall, clients that
disconnect mid-stream, and many connections at once, from several threads,
mixed with valid requests whose replies are checked.

Pass/fail: the process stays up and /health answers 200 afterwards; every
response has a sane status: 2xx/4xx, or 501/503/505 (not implemented,
overloaded, bad HTTP version). A 500 is an internal error (a bug), so it
fails, as does any other 5xx. Error answers on /v1 and /api paths must be
JSON with an "error" member. Valid requests sent during the noise must still
work (and, on a --deterministic server, give the same text as before). After
the noise the active-sequence gauge in /metrics must return to 0 (cancelled
and disconnected clients free their sequences). Policy findings (a wrongly
typed field accepted with 200) are reported, not failed.

usage: fuzz_http.py URL [--seconds S] [--seed N] [--deterministic]
env: BEAST_FUZZ_SECONDS, BEAST_FUZZ_SEED
"""
import argparse
import json
import os
import random
import socket
import struct
import threading
import time
from collections import Counter

from e2e import QUICK, Checks, host_port, parse_prometheus, request

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("--seconds", type=float, default=float(os.environ.get("BEAST_FUZZ_SECONDS", 30 if QUICK else 60)))
ap.add_argument("--seed", type=int, default=int(os.environ.get("BEAST_FUZZ_SEED", "20250101")))
ap.add_argument("--threads", type=int, default=4)
ap.add_argument("--deterministic", action="store_true")
args = ap.parse_args()
URL = args.url.rstrip("/")
HOST, PORT = host_port(URL)
T = Checks("fuzz_http")
SANE = {200, 201, 204, 400, 401, 403, 404, 405, 406, 408, 409, 411, 413, 414, 415, 422, 429, 431, 501, 503, 505}
POST_PATHS = ["/v1/chat/completions", "/v1/completions", "/api/generate", "/api/chat", "/api/show"]
GET_PATHS = ["/", "/health", "/metrics", "/v1/models", "/api/tags", "/api/version"]
lock = threading.Lock()
stats = Counter()  # (kind, status) -> n
bad = []           # insane responses
lenient = Counter()  # wrongly typed field accepted with 200: field -> n


def record(kind, status, detail=""):
    with lock:
        stats[(kind, status)] += 1
        if isinstance(status, int) and status not in SANE:
            bad.append(f"{kind}: status {status} {detail[:300]}")


def exchange(raw, timeout=30.0, read_body=True, body_cap=1 << 20):
    """Sends raw bytes on a fresh connection, reads one response. Returns
    (status, headers, body); status None when the server closed without an
    answer. Errors writing (the server refused the rest) are not failures."""
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    try:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return read_response(s, timeout, read_body, body_cap)
    finally:
        s.close()


def read_response(s, timeout, read_body=True, body_cap=1 << 20):
    t_end = time.monotonic() + timeout
    buf = b""
    try:
        while b"\r\n\r\n" not in buf:
            s.settimeout(max(0.1, t_end - time.monotonic()))
            d = s.recv(65536)
            if not d:
                break
            buf += d
    except (ConnectionResetError, socket.timeout, OSError):
        pass
    if b"\r\n\r\n" not in buf:
        return None, {}, buf
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return -1, {}, buf
    hdrs = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    if not read_body:
        return status, hdrs, body
    want = int(hdrs.get("content-length", -1)) if hdrs.get("content-length", "").isdigit() else -1
    try:
        while (want < 0 or len(body) < want) and len(body) < body_cap and time.monotonic() < t_end:
            if want < 0 and hdrs.get("transfer-encoding") == "chunked" and body.endswith(b"0\r\n\r\n"):
                break
            s.settimeout(max(0.1, t_end - time.monotonic()))
            d = s.recv(65536)
            if not d:
                break
            body += d
    except (ConnectionResetError, socket.timeout, OSError):
        pass
    if hdrs.get("transfer-encoding") == "chunked":
        body = dechunk(body)
    return status, hdrs, body


def dechunk(b):
    out, pos = b"", 0
    while True:
        end = b.find(b"\r\n", pos)
        if end < 0:
            return out
        try:
            n = int(b[pos:end].split(b";")[0], 16)
        except ValueError:
            return out
        if n == 0:
            return out
        out += b[end + 2:end + 2 + n]
        pos = end + 2 + n + 2


def http_req(method, path, body=b"", headers=None, content_length=None):
    h = {"Host": f"{HOST}:{PORT}", "Connection": "close"}
    if body or method in ("POST", "PUT", "PATCH"):
        h["Content-Type"] = "application/json"
        h["Content-Length"] = str(len(body) if content_length is None else content_length)
    h.update(headers or {})
    return (f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in h.items()) + "\r\n").encode(
        "latin-1") + body


def check_error_body(kind, path, status, body):
    """4xx answers of the JSON APIs must be JSON errors (framing-level errors
    from the HTTP library before routing are exempt: 413/414/431/505)."""
    if status is None or status < 400 or status in (413, 414, 431, 501, 505):
        return
    if not (path.startswith("/v1/") or path.startswith("/api/")):
        return
    try:
        ok = "error" in json.loads(body)
    except ValueError:
        ok = False
    if not ok:
        with lock:
            bad.append(f"{kind}: {status} on {path} without a JSON error body: {body[:200]!r}")


# ---------------------------------------------------------------- generators
def valid_body(rng, path):
    msgs = [{"role": "user", "content": rng.choice(["Hi", "Say one word.", "Count to three."])}]
    if path in ("/v1/chat/completions", "/api/chat"):
        b = {"messages": msgs}
    elif path == "/api/show":
        return {"model": "x"}
    else:
        b = {"prompt": rng.choice(["Hello", "The sky is", "1, 2, 3,"])}
    if path.startswith("/api/"):
        b.update(stream=rng.random() < 0.5, options={"num_predict": rng.randint(1, 4), "temperature": 0})
    else:
        b.update(max_tokens=rng.randint(1, 4), stream=rng.random() < 0.5, temperature=0)
    return b


FIELDS = ["model", "messages", "prompt", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
          "min_p", "stop", "seed", "presence_penalty", "frequency_penalty", "logit_bias", "logprobs",
          "top_logprobs", "stream", "stream_options", "n", "options", "system", "raw", "format", "keep_alive",
          "user", "response_format", "tools", "repeat_penalty"]
NUMERIC = {"max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "min_p", "seed",
           "presence_penalty", "frequency_penalty", "top_logprobs", "n", "repeat_penalty"}


def weird_value(rng, depth=0):
    c = rng.randrange(16)
    if c == 0:
        return None
    if c == 1:
        return rng.choice([True, False])
    if c == 2:
        return rng.choice([0, -1, 1, 2**31 - 1, 2**31, -2**31 - 1, 2**63 - 1, 2**63, -2**63, 2**64, 10**30, -10**30])
    if c == 3:
        return rng.choice([0.0, -0.0, 1e308, -1e308, 5e-324, 1e-30, -0.5, 3.5, 1e10])
    if c == 4:
        return rng.choice(["", "x", "0.5", "-1", "\u0000", "\ud83d\ude00", "a" * 10000, "\u202e\u200b"])
    if c == 5 and depth < 3:
        return [weird_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    if c == 6 and depth < 3:
        return {rng.choice(["role", "content", "0", "include_usage", "", "x"]): weird_value(rng, depth + 1)
                for _ in range(rng.randint(0, 3))}
    if c == 7:
        return [{"role": rng.choice(["user", "system", "assistant", "tool", "", "x" * 300]),
                 "content": weird_value(rng, depth + 2) if rng.random() < 0.5 else "hi"}]
    if c == 8:
        return {str(rng.choice([-1, 0, 1, 49151, 49152, 10**12])): weird_value(rng, depth + 2)}
    if c == 9:
        return list(range(rng.choice([100, 5000])))
    return rng.choice(["hi", 1, 0.5, [], {}, ["x"], [{"role": "user", "content": "hi"}]])


def raw_literal(rng):
    return rng.choice([b"NaN", b"-NaN", b"Infinity", b"-Infinity", b"1e999", b"-1e999", b"0x10", b"01", b"1.",
                       b".5", b"+1", b"1e", b"99999999999999999999999999999999", b"true1", b"nul", b"'x'"])


def case_wrong_type(rng):
    path = rng.choice(POST_PATHS[:4])
    body = valid_body(rng, path)
    field = rng.choice(FIELDS)
    target = body["options"] if path.startswith("/api/") and field in NUMERIC and rng.random() < 0.5 else body
    v = weird_value(rng)
    target[field] = v
    if "max_tokens" not in body and "options" not in body:
        body["max_tokens"] = 4
    raw = json.dumps(body).encode()
    st, _, rb = exchange(http_req("POST", path, raw))
    record("wrong_type", st, f"{field}={str(v)[:80]} on {path}")
    check_error_body("wrong_type", path, st, rb)
    # Ollama endpoints read their numbers from "options" and ignore unknown top-level fields
    definitely_wrong = field in NUMERIC and (isinstance(v, (str, list, dict)) or isinstance(v, bool)) and (
        path.startswith("/v1/") or target is not body)
    if st == 200 and definitely_wrong:
        with lock:
            lenient[f"{path} {'options.' if target is not body else ''}{field}:{type(v).__name__}"] += 1


def case_literal(rng):
    path = rng.choice(POST_PATHS[:4])
    field = rng.choice(sorted(NUMERIC))
    raw = b'{"prompt": "hi", "messages": [{"role": "user", "content": "hi"}], "%s": %s, "max_tokens": 2}' % (
        field.encode(), raw_literal(rng))
    st, _, rb = exchange(http_req("POST", path, raw))
    record("literal", st, raw.decode("latin-1")[:100])
    check_error_body("literal", path, st, rb)


def case_malformed(rng):
    path = rng.choice(POST_PATHS)
    good = json.dumps(valid_body(rng, path)).encode()
    c = rng.randrange(6)
    if c == 0:
        raw = good[: rng.randrange(len(good))]
    elif c == 1:
        b = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        raw = bytes(b)
    elif c == 2:
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))
    elif c == 3:
        raw = rng.choice([b"", b"null", b"[]", b"42", b'"str"', b"{}", b"{,}", b'{"a":1,}', b"\xef\xbb\xbf{}",
                          good + b"garbage", good + good, b'{"messages": [] "x": 1}'])
    elif c == 4:  # invalid UTF-8 inside strings
        bad_utf8 = rng.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\x80"])
        raw = (b'{"prompt": "a' + bad_utf8 + b'b", "messages": [{"role": "user", "content": "x' + bad_utf8 +
               b'"}], "max_tokens": 2, "stop": ["' + bad_utf8 + b'"]}')
    else:  # escaped lone surrogates and NUL
        raw = rb'{"prompt": "\ud800 \udfff \u0000 x", "messages": [{"role": "user", "content": "\udc00\u0000"}], "max_tokens": 2}'
    st, _, rb = exchange(http_req("POST", path, raw))
    record("malformed", st, repr(raw[:80]))
    check_error_body("malformed", path, st, rb)


def case_deep(rng):
    path = rng.choice(POST_PATHS[:4])
    n = rng.choice([64, 1000, 100000])
    c = rng.randrange(3)
    if c == 0:
        raw = b'{"messages": ' + b"[" * n + b"]" * n + b', "max_tokens": 2}'
    elif c == 1:
        raw = b'{"prompt": "x", "x": ' + b'{"a":' * n + b"1" + b"}" * n + b"}"
    else:
        raw = b"[" * n  # unterminated
    st, _, rb = exchange(http_req("POST", path, raw))
    record("deep", st, f"depth {n}")
    check_error_body("deep", path, st, rb)


def case_huge_array(rng):
    path = rng.choice(POST_PATHS[:4])
    n = rng.choice([1000, 50000, 200000])
    c = rng.randrange(4)
    if c == 0:
        body = {"messages": [{"role": "user", "content": "hi"}] * n, "max_tokens": 2}
    elif c == 1:
        body = {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}], "stop": ["x"] * n, "max_tokens": 2}
    elif c == 2:
        body = {"prompt": "hi", "messages": [{"role": "user", "content": "hi"}],
                "logit_bias": {str(i): 1 for i in range(n)}, "max_tokens": 2}
    else:
        body = {"prompt": [1] * n, "max_tokens": 2}
    st, _, rb = exchange(http_req("POST", path, json.dumps(body).encode()), timeout=60)
    record("huge_array", st, f"kind {c} n {n}")
    check_error_body("huge_array", path, st, rb)


def case_method_path(rng):
    c = rng.randrange(5)
    if c == 0:
        method, path = rng.choice(["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"]), rng.choice(POST_PATHS)
    elif c == 1:
        method, path = rng.choice(["POST", "PUT", "DELETE"]), rng.choice(GET_PATHS)
    elif c == 2:
        method = "GET"
        path = rng.choice(["/nope", "/v1", "/v1/", "/api", "/../../etc/passwd", "/%00", "/%ff%fe", "//health",
                           "/health?x=1", "/v1/models/../models", "/" + "a" * rng.choice([100, 5000, 100000])])
    elif c == 3:
        method, path = rng.choice(["FOO", "get", "P0ST", "X" * 100]), rng.choice(POST_PATHS + GET_PATHS)
    else:
        method, path = "GET", rng.choice(GET_PATHS)
    st, _, rb = exchange(http_req(method, path, b"{}" if method in ("POST", "PUT", "PATCH") else b""))
    record("method_path", st, f"{method} {path[:60]}")
    if method == "GET" and path in GET_PATHS and st != 200:
        with lock:
            bad.append(f"GET {path} gave {st}")


def case_framing(rng):
    c = rng.randrange(8)
    if c == 0:
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) + b"\r\n\r\n"
    elif c == 1:
        raw = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}"
    elif c == 2:
        raw = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}"
    elif c == 3:
        raw = (b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
               + rng.choice([b"zz\r\n{}\r\n0\r\n\r\n", b"ffffffffffffffff\r\n{}", b"2\r\n{}\r\n0\r\n\r\n"]))
    elif c == 4:
        raw = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * rng.choice([10000, 100000]) + b"\r\n\r\n"
    elif c == 5:
        raw = b"GET /health HTTP/1.1\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n"
    elif c == 6:
        raw = rng.choice([b"GET /health HTTP/9.9\r\n\r\n", b"GET /health\r\n\r\n", b"GET\r\n\r\n",
                          b"GET /health HTTP/1.1\r\nHost x\r\n\r\n", b"\r\n\r\n\r\n"])
    else:  # Content-Length larger than what is sent, then close
        raw = b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"prompt\":"
        s = socket.create_connection((HOST, PORT), timeout=5)
        s.sendall(raw)
        s.close()
        record("framing", "closed")
        return
    st, _, _ = exchange(raw, timeout=15)
    record("framing", st, repr(raw[:60]))


def case_valid(rng, reference):
    """A valid greedy request; its text must match the reference."""
    path = "/v1/completions"
    body = {"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}
    st, _, rb = exchange(http_req("POST", path, json.dumps(body).encode()), timeout=120)
    record("valid", st)
    if st == 200:
        try:
            text = json.loads(rb)["choices"][0]["text"]
        except (ValueError, KeyError, IndexError, TypeError):
            with lock:
                bad.append(f"valid request: unreadable body {rb[:200]!r}")
            return
        with lock:
            stats[("valid_text_same", text == reference)] += 1
    elif st not in (429, 503):
        with lock:
            bad.append(f"valid request got {st}: {rb[:200]!r}")


def case_disconnect(rng):
    """Starts a long streaming request and drops the connection mid-stream
    (sometimes with a TCP reset)."""
    path = rng.choice(["/v1/chat/completions", "/api/generate", "/v1/completions"])
    body = {"messages": [{"role": "user", "content": "Tell me a long story."}], "prompt": "Once upon a time",
            "max_tokens": 200, "stream": True, "temperature": 0.8, "options": {"num_predict": 200}}
    if path == "/api/generate":
        body["stream"] = rng.random() < 0.8
    s = socket.create_connection((HOST, PORT), timeout=30)
    try:
        s.sendall(http_req("POST", path, json.dumps(body).encode()))
        want = rng.choice([0, 1, 200, 2000])
        got = b""
        while len(got) < want:
            d = s.recv(4096)
            if not d:
                break
            got += d
        if rng.random() < 0.5:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close
        record("disconnect", int(got.split(b" ")[1]) if got.startswith(b"HTTP/") else "early")
    finally:
        s.close()


def case_slow(rng, stop_evt):
    """Trickles a request's header bytes slowly, then stalls; meanwhile other
    clients must still be served (checked by the caller)."""
    req = http_req("POST", "/v1/completions", json.dumps({"prompt": "hi", "max_tokens": 2}).encode())
    cut = rng.randrange(len(req))
    try:
        s = socket.create_connection((HOST, PORT), timeout=10)
    except OSError as e:
        record("slow", f"connect {e.__class__.__name__}")
        return
    try:
        for i in range(cut):
            if stop_evt.is_set():
                break
            s.sendall(req[i:i + 1])
            time.sleep(0.05)
        stop_evt.wait(rng.uniform(2, 8))  # stall
        record("slow", "stalled")
    except OSError:
        record("slow", "closed by server")
    finally:
        s.close()


def case_many(rng):
    """Opens many connections at once; some send a request, all are closed."""
    n = rng.choice([50, 200])
    socks = []
    try:
        for _ in range(n):
            try:
                socks.append(socket.create_connection((HOST, PORT), timeout=2))
            except OSError:
                break
        for k, s in enumerate(socks):
            if k % 2 == 0:
                try:
                    s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                except OSError:
                    pass
        answered, t_end = 0, time.monotonic() + 20
        for k, s in enumerate(socks):
            if k % 2 == 0:
                st, _, _ = read_response(s, max(0.1, t_end - time.monotonic()), read_body=False)
                answered += st == 200
                if st is not None and st not in SANE:
                    record("many", st)
        record("many", f"{len(socks)} open, {answered} answered")
    finally:
        for s in socks:
            s.close()


def oversized():
    """A body over any sane limit (64 MiB declared, streamed): 413."""
    n = 64 << 20
    s = socket.create_connection((HOST, PORT), timeout=30)
    sent = 0
    try:
        s.sendall(http_req("POST", "/v1/chat/completions", b"", content_length=n))
        chunk = b'{"messages": [' + b" " * 65522
        try:
            while sent < n:
                s.sendall(chunk[: min(len(chunk), n - sent)])
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        st, _, body = read_response(s, 30)
    finally:
        s.close()
    T.ok(st == 413 or (st is None and sent < n), "oversized body (64 MiB): 413 (or refused before the end)",
         f"status {st}, sent {sent >> 20} MiB: {body[:200]!r}")
    print(f"     oversized: status {st} after {sent >> 10} KiB sent")


def gauge(names):
    r = request(URL, "GET", "/metrics", timeout=30)
    samples, types, _ = parse_prometheus(r.body.decode("utf-8", "replace"))
    fam = [f for f, t in types.items() if t == "gauge" and any(w in f for w in names)]
    if not fam:
        return None, None
    return fam[0], sum(v for (n, _), v in samples.items() if n == fam[0])


def main():
    rng0 = random.Random(args.seed)
    print(f"     seed {args.seed}, {args.seconds:.0f} s, {args.threads} threads")
    T.ok(request(URL, "GET", "/health").status == 200, "health before")
    ref = request(URL, "POST", "/v1/completions",
                  body={"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}).json()
    reference = ref["choices"][0]["text"]
    oversized()
    kinds = [case_wrong_type] * 6 + [case_literal, case_malformed, case_malformed, case_malformed, case_deep,
                                     case_huge_array, case_method_path, case_method_path, case_framing,
                                     case_framing, case_disconnect, case_disconnect, case_many]
    t_end = time.monotonic() + args.seconds
    stop_evt = threading.Event()
    errors = []

    def worker(seed):
        rng = random.Random(seed)
        n = 0
        while time.monotonic() < t_end:
            n += 1
            fn = rng.choice(kinds) if n % 10 else (lambda r: case_valid(r, reference))
            try:
                fn(rng)
            except (OSError, socket.timeout) as e:
                record(getattr(fn, "__name__", "valid"), f"client {e.__class__.__name__}")
            except Exception as e:  # noqa: BLE001 - a bug in the fuzzer itself
                with lock:
                    errors.append(f"{fn}: {e!r}")

    def slow_worker(seed):
        rng = random.Random(seed)
        while time.monotonic() < t_end:
            case_slow(rng, stop_evt)

    ths = [threading.Thread(target=worker, args=(rng0.randrange(2**32),)) for _ in range(args.threads)]
    ths += [threading.Thread(target=slow_worker, args=(rng0.randrange(2**32),)) for _ in range(2)]
    for t in ths:
        t.start()
    # while the noise runs, a well-behaved client keeps getting answers
    worst = 0.0
    while time.monotonic() < t_end:
        t0 = time.monotonic()
        try:
            st = request(URL, "GET", "/health", timeout=30).status
        except OSError:
            st = None
        worst = max(worst, time.monotonic() - t0)
        if st != 200:
            with lock:
                bad.append(f"/health during the fuzz: {st}")
        time.sleep(1)
    stop_evt.set()
    for t in ths:
        t.join()
    T.ok(not errors, "fuzzer ran without internal errors", "; ".join(errors[:5]))
    print(f"     /health during the fuzz: slowest answer {worst:.2f} s")
    total = sum(stats.values())
    by_kind = Counter()
    for (k, st), n in stats.items():
        by_kind[k] += n
    print(f"     {total} cases: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    print("     statuses: " + ", ".join(f"{k}/{st}: {n}" for (k, st), n in sorted(stats.items(), key=str)))
    if lenient:
        print("     policy: wrongly typed numeric fields accepted with 200: "
              + ", ".join(f"{k} x{n}" for k, n in lenient.most_common()))
    T.ok(not bad, "every response had a sane status and error shape", "\n       ".join(bad[:15]))
    T.ok(stats[("valid", 200)] > 0, "valid requests were served during the fuzz")
    if args.deterministic:
        T.eq(stats[("valid_text_same", False)], 0, "--deterministic: valid requests gave the reference text")
    elif stats[("valid_text_same", False)]:
        print(f"     note: {stats[('valid_text_same', False)]} valid replies differed from the reference "
              "(batching near-tie; not a failure without --deterministic)")
    ok = False
    name, v = None, None
    for _ in range(100):
        try:
            name, v = gauge(["active", "running"])
        except OSError:
            name, v = None, None
        if v == 0 or name is None:
            ok = v == 0
            break
        time.sleep(0.2)
    T.ok(ok, f"active sequences back to 0 after the fuzz ({name})", f"{name} = {v}")
    try:
        st = request(URL, "GET", "/health", timeout=30).status
    except OSError as e:
        st = str(e)
    T.eq(st, 200, "health after the fuzz")
    r = request(URL, "POST", "/v1/completions",
                body={"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0})
    T.ok(r.status == 200 and r.json()["choices"][0]["text"].strip(), "a valid request still works after the fuzz")


T.run(main)
T.finish()
