"""test_webui.py: the web chat page of `beast serve`, driven in Debian's
headless Chromium over the DevTools protocol (a minimal WebSocket client
here; no Python packages needed). Opens the page, types a message, clicks
Send, waits for the streamed reply, checks it streamed in pieces and that
the conversation history goes with the next turn, stops a long reply with
the Stop button, and saves a screenshot.

usage: test_webui.py URL SCREENSHOT.png [KEYED_URL KEY]
  KEYED_URL: a server started with --api-key KEY: the page shows the 401,
  then works once the key is typed into the API key field (kept in
  localStorage across a reload).
"""
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

from e2e import Checks, base_url, request

URL = base_url()
SHOT = sys.argv[2] if len(sys.argv) > 2 else "webui.png"
KEYED, KEY = (sys.argv[3].rstrip("/"), sys.argv[4]) if len(sys.argv) > 4 else (None, None)
T = Checks("test_webui")


class WebSocket:
    """Just enough of RFC 6455 for the DevTools protocol: text frames,
    client-side masking, fragmented and large messages, ping/pong."""

    def __init__(self, url, timeout=30):
        assert url.startswith("ws://")
        hostport, _, path = url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        resp = b""
        while b"\r\n\r\n" not in resp:
            d = self.sock.recv(4096)
            if not d:
                raise ConnectionError("websocket handshake: connection closed")
            resp += d
        head, self.buf = resp.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n")[0]:
            raise ConnectionError(f"websocket handshake refused: {head[:200]!r}")

    def _exact(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(1 << 20)
            if not d:
                raise ConnectionError("websocket closed")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, text, opcode=1):
        data = text.encode() if isinstance(text, str) else text
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        msg = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._exact(8))[0]
            mask = self._exact(4) if b1 & 0x80 else None
            data = self._exact(n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            op = b0 & 0x0F
            if op == 9:  # ping
                self.send(data, opcode=10)
                continue
            if op == 8:
                raise ConnectionError("websocket closed by the browser")
            if op in (0, 1, 2):
                msg += data
                if b0 & 0x80:
                    return msg.decode()


class CDP:
    def __init__(self, ws_url):
        self.ws, self.next_id, self.events = WebSocket(ws_url), 0, []

    def call(self, method, **params):
        self.next_id += 1
        my = self.next_id
        self.ws.send(json.dumps({"id": my, "method": method, "params": params}))
        while True:
            m = json.loads(self.ws.recv())
            if m.get("id") == my:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m.get("result", {})
            self.events.append(m)

    def js(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"js {expr[:80]!r}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def wait(self, expr, timeout, what):
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            v = self.js(expr)
            if v:
                return v
            time.sleep(0.1)
        raise TimeoutError(f"timed out after {timeout} s waiting for {what}")

    def click(self, selector):
        r = self.js(f"JSON.stringify(document.querySelector({json.dumps(selector)}).getBoundingClientRect())")
        box = json.loads(r)
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)

    def type_into(self, selector, text):
        self.js(f"document.querySelector({json.dumps(selector)}).focus()")
        for ch in text:  # one key event per character, as a user types
            self.call("Input.dispatchKeyEvent", type="char", text=ch)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


def start_browser(tmp):
    exe = find_chromium()
    if not exe:
        print("FAIL: no chromium (apt-get install chromium; scripts/deps.sh does)")
        sys.exit(1)
    log = open(os.path.join(tmp, "chromium.log"), "wb")
    proc = subprocess.Popen([exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                             "--disable-background-networking", "--remote-debugging-port=0",
                             f"--user-data-dir={tmp}/profile", "--window-size=1000,760", "about:blank"],
                            stdout=log, stderr=subprocess.STDOUT)
    port_file = os.path.join(tmp, "profile", "DevToolsActivePort")
    t_end = time.monotonic() + 60
    while time.monotonic() < t_end and not os.path.exists(port_file):
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    port = None
    while time.monotonic() < t_end and proc.poll() is None:
        try:
            port = int(open(port_file).read().split()[0])
            break
        except (OSError, ValueError, IndexError):
            time.sleep(0.1)
    if port is None:
        proc.kill()
        log.close()
        print(open(os.path.join(tmp, "chromium.log"), errors="replace").read()[-3000:])
        raise RuntimeError("chromium did not open its DevTools port")
    return proc, port


def last_reply(cdp):
    return json.loads(cdp.js("""JSON.stringify((() => {
      const all = document.querySelectorAll('.msg.assistant');
      const m = all[all.length - 1];
      return { n: all.length, text: m ? m.querySelector('.text').textContent : null,
               done: m ? m.classList.contains('done') : false,
               stats: m && m.querySelector('.stats') ? m.querySelector('.stats').textContent : '',
               state: document.body.dataset.state,
               errors: [...document.querySelectorAll('.msg.error')].map(e => e.textContent) };
    })())"""))


def turn(cdp, text, timeout=300):
    """Types text, clicks Send, waits until the page is idle again (reply
    finished or error shown); returns the last reply and the lengths its text
    went through while streaming."""
    # every state the page goes through from here on, recorded as it
    # changes: a fast answer (a 401 from a local server) may have taken the
    # page back to idle before a separate look at the state could run
    cdp.js("""window.__lens = []; window.__states = [];
      new MutationObserver(() => window.__states.push(document.body.dataset.state))
        .observe(document.body, { attributes: true, attributeFilter: ['data-state'] })""")
    cdp.type_into("#input", text)
    cdp.click("#send")
    # the submit handler adds the reply bubble and sets the state synchronously
    states = cdp.js("window.__states")
    T.ok(states and states[0] == "streaming", "Send starts streaming at once", str(states))
    cdp.js("""(() => {
      const all = document.querySelectorAll('.msg.assistant');
      const t = all.length ? all[all.length - 1].querySelector('.text') : null;
      if (t) new MutationObserver(() => window.__lens.push(t.textContent.length))
        .observe(t, { childList: true, characterData: true, subtree: true });
    })()""")
    cdp.wait("document.body.dataset.state === 'idle'", timeout, "the reply to finish")
    return last_reply(cdp), cdp.js("window.__lens")


def check_api_key(cdp):
    cdp.call("Page.navigate", url=KEYED + "/")
    cdp.wait("document.readyState === 'complete' && !!document.getElementById('send')", 30, "the keyed page")
    cdp.js("document.getElementById('max_tokens').value = '8'")
    r, _ = turn(cdp, "Hello?", timeout=60)
    T.ok(any("401" in e for e in r["errors"]), "keyed server without a key: the page shows the 401", str(r))
    T.ok(not r["text"], "keyed server without a key: no reply text", str(r))
    cdp.type_into("#apikey", KEY)
    cdp.js("document.getElementById('apikey').dispatchEvent(new Event('change'))")
    r, _ = turn(cdp, "Hello?", timeout=120)
    T.ok(r["text"] and r["text"].strip() and r["n"] >= 1, "with the key typed in: a reply", str(r))
    T.eq(cdp.js(f"localStorage.getItem('beast.apikey')"), KEY, "the key is kept in localStorage")
    cdp.call("Page.reload")
    cdp.wait("document.readyState === 'complete' && !!document.getElementById('send') && "
             "document.querySelectorAll('.msg').length === 0", 30, "the reload")
    T.eq(cdp.js("document.getElementById('apikey').value"), KEY, "after a reload the key field is filled in")


def main():
    page = request(URL, "GET", "/")
    T.eq(page.status, 200, "GET / : 200")
    T.ok((page.header("Content-Type") or "").startswith("text/html"), "GET / : text/html", page.header("Content-Type"))
    html = page.body.decode("utf-8", "replace")
    ext = [w for w in ("src=\"http", "href=\"http", "src='http", "href='http", "@import", "url(http", "//cdn")
           if w in html]
    T.ok(not ext, "page has no external assets", str(ext))
    T.ok(all(f'id="{i}"' in html for i in ("messages", "input", "send", "stop", "apikey")), "page has the stable ids")

    tmp = tempfile.mkdtemp(prefix="beast-webui-")
    proc, port = start_browser(tmp)
    try:
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30).read())
        ws = next(t["webSocketDebuggerUrl"] for t in targets if t.get("type") == "page")
        cdp = CDP(ws)
        cdp.call("Runtime.enable")
        cdp.call("Page.enable")
        # record what the page sends, to check the conversation history
        cdp.call("Page.addScriptToEvaluateOnNewDocument", source="""
          window.__reqs = [];
          const realFetch = window.fetch.bind(window);
          window.fetch = (u, o) => { if (o && o.body) window.__reqs.push(String(o.body)); return realFetch(u, o); };""")
        cdp.call("Page.navigate", url=URL + "/")
        cdp.wait("document.readyState === 'complete' && !!document.getElementById('send')", 30, "the page to load")
        model = cdp.wait("document.getElementById('model').textContent", 15, "the model name from /v1/models")
        T.ok(bool(model), "page shows the model name", str(model))
        cdp.js("document.getElementById('temperature').value = '0'; document.getElementById('max_tokens').value = '48'")

        q1 = "What is the capital of France?"
        r1, lens = turn(cdp, q1)
        print(f"     reply 1: {r1['text']!r} [{r1['stats']}]")
        T.ok(r1["text"] and r1["text"].strip(), "a streamed reply appears", str(r1))
        T.ok(not r1["errors"], "no error message on the page", str(r1["errors"]))
        T.ok(len(set(lens)) >= 3 and lens == sorted(lens), "the reply grew piece by piece (streamed)", str(lens[:40]))
        T.ok("tok/s" in r1["stats"], "tokens/s shown after the reply", r1["stats"])
        T.eq(r1["state"], "idle", "page back to idle")
        T.eq(cdp.js("document.getElementById('input').value"), "", "input cleared after sending")
        # the reply equals the API's greedy answer to the same conversation
        api = request(URL, "POST", "/v1/chat/completions",
                      body={"messages": [{"role": "user", "content": q1}], "temperature": 0, "max_tokens": 48}).json()
        T.eq(r1["text"], api["choices"][0]["message"]["content"], "page reply equals the API's greedy reply")

        q2 = "And of Italy?"
        r2, _ = turn(cdp, q2)
        print(f"     reply 2: {r2['text']!r} [{r2['stats']}]")
        T.ok(r2["text"] and r2["text"].strip() and r2["n"] == 2, "second turn answered", str(r2))
        reqs = [json.loads(b) for b in cdp.js("window.__reqs")]
        msgs = reqs[-1]["messages"] if reqs else []
        T.eq([(m["role"], m["content"]) for m in msgs],
             [("user", q1), ("assistant", r1["text"]), ("user", q2)], "second request carries the history")
        T.ok(reqs and reqs[-1].get("stream") is True, "requests stream (stream: true)")

        # Stop: a long reply, stopped after its first piece arrives
        cdp.js("document.getElementById('max_tokens').value = '2000'")
        cdp.js("window.__lens = []")
        n0 = last_reply(cdp)["n"]
        cdp.type_into("#input", "Write a very long story about a dragon.")
        cdp.click("#send")
        cdp.wait(f"(() => {{ const a = document.querySelectorAll('.msg.assistant');"
                 f" return a.length > {n0} && a[a.length - 1].querySelector('.text').textContent.length > 0; }})()",
                 120, "the long reply to start")
        T.eq(cdp.js("document.getElementById('stop').disabled"), False, "Stop enabled while streaming")
        cdp.click("#stop")
        cdp.wait("document.body.dataset.state === 'idle'", 30, "the page to stop")
        r3 = last_reply(cdp)
        T.ok(r3["done"] and "stopped" in r3["stats"], "Stop ends the reply (marked stopped)", str(r3))
        time.sleep(0.5)
        t3 = last_reply(cdp)["text"]
        T.eq(t3, r3["text"], "no text arrives after Stop")
        T.ok(cdp.js("document.getElementById('send').disabled") is False, "Send enabled again after Stop")

        cdp.js("window.scrollTo(0, 0)")
        shot = base64.b64decode(cdp.call("Page.captureScreenshot", format="png")["data"])
        os.makedirs(os.path.dirname(os.path.abspath(SHOT)), exist_ok=True)
        with open(SHOT, "wb") as f:
            f.write(shot)
        T.ok(shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 5000, "screenshot saved", f"{len(shot)} bytes")
        print(f"     screenshot: {os.path.abspath(SHOT)}")
        if KEYED:
            check_api_key(cdp)
            cdp.call("Page.navigate", url=URL + "/")
            cdp.wait("document.readyState === 'complete' && document.querySelectorAll('.msg').length === 0 "
                     "&& !!document.getElementById('send')", 30, "the page to load again")
            cdp.js("document.getElementById('temperature').value = '0'; "
                   "document.getElementById('max_tokens').value = '48'")
            r, _ = turn(cdp, q1)
            T.eq(r["text"], r1["text"], "after a reload: same greedy reply, fresh conversation")
        exc = [e for e in cdp.events if e.get("method") == "Runtime.exceptionThrown"]
        T.ok(not exc, "no JavaScript exceptions", str(exc[:2])[:500])
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)


T.run(main)
T.finish()
