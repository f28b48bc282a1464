"""e2e.py: shared helpers of the end-to-end server tests (tests/server/*.py).

Each test script gets the server's base URL (http://127.0.0.1:PORT) as its
first argument, from the wrapper in tests/cli/server_*.sh that started
`beast serve`. Only the standard library here; the OpenAI client is imported
by the scripts that use it.
"""
import http.client
import json
import os
import re
import socket
import sys
import time
import urllib.parse

QUICK = os.environ.get("BEAST_TEST_QUICK") == "1"  # reduced sizes (sanitizer runs)


class Checks:
    """Counts named checks; every check prints one line; exit code at the end."""

    def __init__(self, name):
        self.name, self.passed, self.failed = name, 0, 0

    def ok(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print(f"ok   {what}")
        else:
            self.failed += 1
            print(f"FAIL {what}" + (f": {detail}" if detail else ""))
        sys.stdout.flush()
        return bool(cond)

    def eq(self, got, want, what):
        return self.ok(got == want, what, f"got {got!r}, want {want!r}")

    def run(self, fn, *args):
        """Runs one test function; an exception is one failure, not the end."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - report and go on
            import traceback
            traceback.print_exc()
            self.ok(False, f"{fn.__name__} raised", f"{type(e).__name__}: {e}")

    def finish(self):
        print(f"{self.name}: {self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)


def base_url():
    if len(sys.argv) < 2:
        sys.exit(f"usage: {sys.argv[0]} http://HOST:PORT")
    return sys.argv[1].rstrip("/")


def host_port(url):
    u = urllib.parse.urlparse(url)
    return u.hostname, u.port


class Resp:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def request(url, method, path, body=None, headers=None, timeout=120):
    """One HTTP request on a fresh connection. body: dict/list (sent as JSON),
    str or bytes. Returns Resp with the whole body read."""
    host, port = host_port(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    h = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    elif isinstance(body, str):
        body = body.encode()
    try:
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read()
        return Resp(r.status, r.getheaders(), data)
    finally:
        conn.close()


def stream_lines(url, path, body, headers=None, timeout=120):
    """POSTs body and yields (status, line) for each line of the response as
    it arrives (SSE or NDJSON); the first item is (status, None)."""
    host, port = host_port(url)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    try:
        conn.request("POST", path, body=json.dumps(body).encode(), headers=h)
        r = conn.getresponse()
        yield r.status, None
        while True:
            line = r.readline()
            if not line:
                break
            yield r.status, line.decode("utf-8", "strict").rstrip("\r\n")
    finally:
        conn.close()


def sse_payloads(url, path, body, headers=None, timeout=120):
    """Returns (status, [payload strings of 'data:' lines]) of one SSE request,
    plus the arrival time of each payload."""
    status, out, times = None, [], []
    for st, line in stream_lines(url, path, body, headers, timeout):
        status = st
        if line is not None and line.startswith("data:"):
            out.append(line[5:].lstrip(" "))
            times.append(time.monotonic())
    return status, out, times


_PROM_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$')
_PROM_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


def parse_prometheus(text):
    """Parses the Prometheus text format. Returns (samples, types, errors):
    samples maps (name, frozenset(labels.items())) -> float; types maps a
    metric family to its TYPE; errors lists lines that do not parse."""
    samples, types, errors = {}, {}, []
    for ln in text.splitlines():
        if not ln.strip():
            continue
        if ln.startswith("#"):
            parts = ln.split(None, 3)
            if len(parts) >= 4 and parts[1] == "TYPE":
                types[parts[2]] = parts[3].strip()
            continue
        m = _PROM_LINE.match(ln)
        if not m:
            errors.append(ln)
            continue
        labels = {}
        if m.group(3):
            rest = m.group(3)
            pos = 0
            while pos < len(rest):
                lm = _PROM_LABEL.match(rest, pos)
                if not lm:
                    errors.append(ln)
                    break
                labels[lm.group(1)] = lm.group(2)
                pos = lm.end()
        try:
            v = float(m.group(4))
        except ValueError:
            errors.append(ln)
            continue
        samples[(m.group(1), frozenset(labels.items()))] = v
    return samples, types, errors


def wait_health(url, seconds=30):
    t_end = time.monotonic() + seconds
    while time.monotonic() < t_end:
        try:
            if request(url, "GET", "/health", timeout=5).status == 200:
                return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def port_open(url):
    host, port = host_port(url)
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False
