#!/usr/bin/env python3
"""loadtest.py: a bounded loopback load test of an OpenAI-compatible server
(`beast serve`, llama.cpp's llama-server, ...): for each concurrency level N,
N streaming clients each send R requests one after another (fixed prompts,
greedy, max_tokens), and the run reports aggregate generated tok/s, per-user
decode tok/s, p50/p99 time to first token and inter-token latency, as
markdown table rows and CSV. Standard library only.

  bench/loadtest.py --url http://127.0.0.1:8080 [--clients 1,8,32] [-n 128] [-r 2]
  bench/loadtest.py --serve "build/beast serve -m M.gguf --parallel 32" --clients 1,8,32
  bench/loadtest.py --url http://127.0.0.1:8081 --label llama-server   # same for the peer

Tokens per request: usage.completion_tokens when the server sends it
(stream_options.include_usage), else the number of content chunks. TTFT:
request sent -> first content chunk. ITL: gaps between content chunks of one
stream. Per-user tok/s: (tokens - 1) / (last chunk - first chunk), mean over
requests. Aggregate: all generated tokens / wall time of the level.
"""
import argparse
import csv
import http.client
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "Write a detailed story about a lighthouse keeper who finds a message in a bottle.",
    "Explain step by step how a steam engine works, for a curious twelve-year-old.",
    "Describe a walk through a busy market in a city you invent, with all the sounds and smells.",
    "Write a long letter from a sailor to his sister about the storms he has seen.",
    "Explain the history of bread, from the first farmers to modern bakeries.",
    "Tell the story of a chess tournament between a robot and an old woman.",
    "Describe the life cycle of a star in as much detail as you can.",
    "Write a travel guide for a small mountain village in winter.",
]
COLS = ["label", "clients", "requests", "gen_tokens", "wall_s", "agg_tok_s", "user_tok_s", "ttft_p50_ms",
        "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms", "errors"]


def pct(xs, p):
    """Nearest-rank percentile; None for an empty list."""
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


def one_request(host, port, path, body, headers, timeout):
    """One streaming request. Returns dict: ok, tokens, t_send, t_first, times, error."""
    res = {"ok": False, "tokens": 0, "times": [], "error": None}
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        res["t_send"] = time.monotonic()
        conn.request("POST", path, body=json.dumps(body).encode(), headers=headers)
        r = conn.getresponse()
        if r.status != 200:
            res["error"] = f"HTTP {r.status}: {r.read(300)!r}"
            return res
        usage, chunks = None, 0
        while True:
            line = r.readline()
            if not line:
                break
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            ev = json.loads(data)
            if ev.get("usage"):
                usage = ev["usage"]
            for c in ev.get("choices") or []:
                piece = (c.get("delta") or {}).get("content") if "delta" in c else c.get("text")
                if piece:
                    res["times"].append(time.monotonic())
                    chunks += 1
        res["tokens"] = (usage or {}).get("completion_tokens") or chunks
        res["ok"] = chunks > 0
        if not chunks:
            res["error"] = "no content"
    except (OSError, ValueError, http.client.HTTPException) as e:
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    return res


def run_level(args, host, port, n):
    headers = {"Content-Type": "application/json"}
    if args.api_key:
        headers["Authorization"] = "Bearer " + args.api_key
    path = "/v1/completions" if args.completions else "/v1/chat/completions"
    results = [[] for _ in range(n)]
    barrier = threading.Barrier(n)

    def client(i):
        barrier.wait()
        for r in range(args.requests):
            prompt = PROMPTS[(i * args.requests + r) % len(PROMPTS)]
            body = {"max_tokens": args.max_tokens, "temperature": 0, "stream": True,
                    "stream_options": {"include_usage": True}}
            if args.model:
                body["model"] = args.model
            if args.ignore_eos:
                body["ignore_eos"] = True
            if args.completions:
                body["prompt"] = prompt
            else:
                body["messages"] = [{"role": "user", "content": prompt}]
            results[i].append(one_request(host, port, path, body, headers, args.timeout))

    ths = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    t0 = time.monotonic()
    for t in ths:
        t.start()
    for t in ths:
        t.join()
    wall = time.monotonic() - t0
    flat = [x for rs in results for x in rs]
    good = [x for x in flat if x["ok"]]
    ttft = [(x["times"][0] - x["t_send"]) * 1e3 for x in good]
    itl = [(b - a) * 1e3 for x in good for a, b in zip(x["times"], x["times"][1:])]
    user = [(x["tokens"] - 1) / (x["times"][-1] - x["times"][0]) for x in good
            if len(x["times"]) > 1 and x["times"][-1] > x["times"][0]]
    gen = sum(x["tokens"] for x in good)
    errs = [x["error"] for x in flat if not x["ok"]]
    for e in errs[:3]:
        print(f"loadtest: error: {e}", file=sys.stderr)
    f = lambda v, d=1: "" if v is None else round(v, d)  # noqa: E731
    return {"label": args.label, "clients": n, "requests": len(flat), "gen_tokens": gen, "wall_s": f(wall, 2),
            "agg_tok_s": f(gen / wall if wall > 0 else None), "user_tok_s": f(statistics.mean(user) if user else None),
            "ttft_p50_ms": f(pct(ttft, 50)), "ttft_p99_ms": f(pct(ttft, 99)), "itl_p50_ms": f(pct(itl, 50), 2),
            "itl_p99_ms": f(pct(itl, 99), 2), "errors": len(errs)}


def start_server(cmd):
    """Starts a server command with --port 0 added and waits for a line with
    its http:// URL (beast serve prints one when ready)."""
    argv = shlex.split(cmd) + ["--port", "0"]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    t_end = time.monotonic() + 300
    while time.monotonic() < t_end:
        line = p.stdout.readline()
        if not line:
            break
        if "http://" in line:
            url = line[line.index("http://"):].split()[0].rstrip("/")
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()  # drain
            return p, url
    p.kill()
    sys.exit("loadtest: the server printed no URL")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--url", help="base URL of an OpenAI-compatible server (http://127.0.0.1:PORT)")
    ap.add_argument("--serve", help="start this server command (with --port 0 added) instead of --url")
    ap.add_argument("--clients", default="1,8,32", help="concurrency levels, comma separated (default 1,8,32)")
    ap.add_argument("-n", "--max-tokens", type=int, default=128, help="max_tokens per request (default 128)")
    ap.add_argument("-r", "--requests", type=int, default=2, help="requests per client per level (default 2)")
    ap.add_argument("--completions", action="store_true", help="use /v1/completions (default: chat)")
    ap.add_argument("--ignore-eos", action="store_true", help="send ignore_eos:true (llama-server, beast)")
    ap.add_argument("--model", help="model field to send (some servers need it)")
    ap.add_argument("--api-key")
    ap.add_argument("--label", help="name in the table (default: the server's first model id)")
    ap.add_argument("--csv", help="append CSV rows to this file")
    ap.add_argument("--timeout", type=float, default=600, help="per-request timeout in seconds")
    ap.add_argument("--max-requests", type=int, default=1000, help="refuse levels that would send more")
    ap.add_argument("--allow-remote", action="store_true", help="allow a non-loopback URL")
    args = ap.parse_args()
    levels = [int(x) for x in args.clients.split(",") if x.strip()]
    if any(n * args.requests > args.max_requests for n in levels):
        sys.exit(f"loadtest: more than --max-requests {args.max_requests} requests in a level")
    proc = None
    if args.serve:
        proc, url = start_server(args.serve)
    elif args.url:
        url = args.url.rstrip("/")
    else:
        sys.exit("loadtest: --url or --serve is required")
    u = urllib.parse.urlparse(url)
    host, port = u.hostname, u.port or 80
    if host not in ("127.0.0.1", "localhost", "::1") and not args.allow_remote:
        sys.exit(f"loadtest: {host} is not loopback (--allow-remote to insist)")
    try:
        if not args.label:
            try:
                c = http.client.HTTPConnection(host, port, timeout=30)
                c.request("GET", "/v1/models", headers={"Authorization": "Bearer " + args.api_key} if args.api_key else {})
                args.label = json.loads(c.getresponse().read())["data"][0]["id"]
            except (OSError, ValueError, KeyError, IndexError):
                args.label = url
        # warm-up (not measured): loads pages, fills caches
        w = argparse.Namespace(**vars(args))
        w.requests, w.max_tokens = 1, 8
        run_level(w, host, port, 1)
        print(f"loadtest: {url} ({args.label}), max_tokens {args.max_tokens}, {args.requests} requests per client",
              file=sys.stderr)
        print("| " + " | ".join(COLS) + " |")
        print("|" + "---|" * len(COLS))
        rows = []
        for n in levels:
            row = run_level(args, host, port, n)
            rows.append(row)
            print("| " + " | ".join(str(row[c]) for c in COLS) + " |", flush=True)
        base = rows[0]["agg_tok_s"] if rows and rows[0]["clients"] == 1 else None
        if base:
            print("scaling vs 1 client: " + ", ".join(f"{r['clients']}: {r['agg_tok_s'] / base:.2f}x"
                                                      for r in rows if r["agg_tok_s"]), file=sys.stderr)
        if args.csv:
            new = not os.path.exists(args.csv) or os.path.getsize(args.csv) == 0
            with open(args.csv, "a", newline="") as fh:
                wr = csv.DictWriter(fh, fieldnames=COLS)
                if new:
                    wr.writeheader()
                wr.writerows(rows)
        return 0 if all(r["errors"] == 0 for r in rows) else 1
    finally:
        if proc:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())
