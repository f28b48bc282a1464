/* test_srv_http.c: the HTTP front end of `beast serve` (src/server/http.c,
 * api_openai.c, api_ollama.c, request.c, json_util.c, metrics.c):
 *   - body checks: nesting depth and container sizes before parsing,
 *     jansson's UTF-8 checks, UTF-8 repair of output strings (random bytes)
 *   - OpenAI and Ollama request parsing: fields, defaults, every error
 *   - response formatting from synthetic scheduler events: SSE chunks,
 *     NDJSON lines and whole objects parsed back and checked
 *   - the Prometheus page from random counters
 *   - with the SmolLM2 model: prompt tokens, and a real server on a free
 *     port spoken to over sockets (status codes, auth, limits, streaming vs
 *     not, client disconnect freeing the sequence). */
#include "check.h"
#include "server/server.h"
#include "util/util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng = 0x1234abcd9876ull;
static uint32_t rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}

static json_t *parse(const char *s) {
    srv_err e;
    return srv_json_parse(s, strlen(s), &e);
}

/* ---- body checks ---- */

static void test_prescan(void) {
    srv_err e;
    char buf[512];
    for (int d = 1; d <= 70; d++) {
        int n = 0;
        for (int i = 0; i < d; i++) buf[n++] = (i & 1) ? '{' : '[';
        /* close in reverse: objects need keys, so only check the prescan */
        for (int i = d - 1; i >= 0; i--) buf[n++] = (i & 1) ? '}' : ']';
        bool ok = srv_json_prescan(buf, (size_t)n, 64, 1000, &e);
        CHECK(ok == (d <= 64), "depth %d: prescan %d", d, ok);
        if (!ok) CHECK(e.status == 400, "depth error is 400");
    }
    /* brackets and commas inside strings do not count, escaped quotes too */
    const char *s = "{\"a\":\"[[[[[[[[[[,,,,,,,\\\"[[[[[\",\"b\":[1,2]}";
    CHECK(srv_json_prescan(s, strlen(s), 2, 3, &e), "strings are skipped");
    /* element counts: max_elems entries pass, one more fails */
    for (int trial = 0; trial < 20; trial++) {
        int max = 2 + (int)(rnd() % 50), k = max + (int)(rnd() % 2);
        int n = 0;
        buf[n++] = '[';
        for (int i = 0; i < k; i++)
            n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%u", i ? "," : "", rnd() % 10);
        buf[n++] = ']';
        CHECK(srv_json_prescan(buf, (size_t)n, 64, max, &e) == (k <= max), "%d entries, max %d", k,
              max);
    }
    /* the real limits through srv_json_parse */
    json_t *j = parse("[1,2]");
    CHECK(!j, "a top-level array is rejected");
    j = parse("{\"a\":1}");
    CHECK(j && json_integer_value(json_object_get(j, "a")) == 1, "object parses");
    json_decref(j);
    /* invalid UTF-8 and NULs never get past jansson */
    const char *bad[] = {"{\"a\":\"\xff\"}",
                         "{\"a\":\"\xc0\x80\"}",
                         "{\"a\":\"\xed\xa0\x80\"}",
                         "{\"a\":\"\xe2\x82\"}",
                         "{\"a\":\"\\ud800\"}",
                         "{\"a\":\"x\\u0000y\"}",
                         "{\"a\":\"\xf4\x90\x80\x80\"}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        j = srv_json_parse(bad[i], strlen(bad[i]), &e);
        CHECK(!j && e.status == 400, "bad string %zu rejected", i);
        json_decref(j);
    }
    j = parse("{\"a\":\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \\u00e9\"}");
    CHECK(j && !strcmp(json_string_value(json_object_get(j, "a")),
                       "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80 \xc3\xa9"),
          "valid UTF-8 and escapes parse");
    json_decref(j);
    j = parse("{\"a\":1e999}");
    CHECK(!j, "a number that overflows is rejected");
}

static void test_utf8(void) {
    int repaired = 0;
    for (int trial = 0; trial < 2000; trial++) {
        unsigned char s[24];
        int n = (int)(rnd() % sizeof s);
        for (int i = 0; i < n; i++) {
            uint32_t r = rnd();
            /* mostly ASCII and UTF-8 lead/continuation bytes */
            s[i] = (unsigned char)(r % 4 == 0   ? 0x80 + (r >> 8) % 64
                                   : r % 4 == 1 ? 0xc0 + (r >> 8) % 64
                                                : 0x20 + (r >> 8) % 0x60);
        }
        bool valid = srv_utf8_valid((const char *)s, (size_t)n);
        json_t *j = srv_json_str((const char *)s, (size_t)n);
        CHECK(j != NULL, "srv_json_str never fails on bad bytes");
        if (!j) continue;
        const char *o = json_string_value(j);
        size_t on = json_string_length(j);
        CHECK(srv_utf8_valid(o, on), "repaired output is valid UTF-8");
        if (valid)
            CHECK(on == (size_t)n && !memcmp(o, s, on), "valid input kept as is");
        else {
            repaired++;
            CHECK(strstr(o, "\xef\xbf\xbd") != NULL, "bad bytes become U+FFFD");
        }
        json_decref(j);
    }
    CHECK(repaired > 100, "the random inputs exercised the repair (%d)", repaired);
    /* reference points */
    CHECK(srv_utf8_valid("\xf4\x8f\xbf\xbf", 4), "U+10FFFF valid");
    CHECK(!srv_utf8_valid("\xf4\x90\x80\x80", 4), "above U+10FFFF invalid");
    CHECK(!srv_utf8_valid("\xe0\x80\xaf", 3), "overlong invalid");
    CHECK(!srv_utf8_valid("\xed\xbf\xbf", 3), "surrogate invalid");
    json_t *r = srv_json_real(-INFINITY);
    CHECK(r && json_real_value(r) == -9999.0, "-inf logprob becomes -9999");
    json_decref(r);
}

/* ---- request parsing ---- */

static int oai(const char *body, int api, srv_gen *g, srv_err *e) {
    json_t *j = srv_json_parse(body, strlen(body), e);
    if (!j) return -1;
    int r = srv_openai_parse(j, api, g, e);
    json_decref(j);
    return r;
}

static int oll(const char *body, int api, srv_gen *g, srv_err *e) {
    json_t *j = srv_json_parse(body, strlen(body), e);
    if (!j) return -1;
    int r = srv_ollama_parse(j, api, g, e);
    json_decref(j);
    return r;
}

static void expect_err(int api, const char *body, const char *param, bool ollama) {
    srv_gen g;
    srv_err e = {0};
    int r = ollama ? oll(body, api, &g, &e) : oai(body, api, &g, &e);
    CHECK(r < 0 && e.status == 400, "rejected (400): %s -> %d %s", body, e.status, e.message);
    if (param && r < 0)
        CHECK(!strcmp(e.param, param), "param '%s' for %s (got '%s')", param, body, e.param);
    srv_gen_free(&g);
}

static void test_openai_parse(void) {
    srv_gen g;
    srv_err e;
    /* fresh random sampling values round-trip */
    for (int trial = 0; trial < 20; trial++) {
        double t = (rnd() % 2001) / 1000.0, tp = (rnd() % 1001) / 1000.0;
        int tk = (int)(rnd() % 100), mt = 1 + (int)(rnd() % 500);
        long long seed = (long long)rnd() * 977 - 1000000;
        char body[1024];
        snprintf(
            body, sizeof body,
            "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"sys %u\"},"
            "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a\"},{\"type\":"
            "\"text\",\"text\":\"b%u\"}]},{\"role\":\"assistant\",\"content\":null}],"
            "\"temperature\":%.3f,\"top_p\":%.3f,\"top_k\":%d,\"max_tokens\":%d,\"seed\":%lld,"
            "\"stop\":[\"x\",\"\",\"yz\"],\"stream\":true,\"stream_options\":{\"include_usage\":"
            "true},\"logit_bias\":{\"17\":-100,\"5\":2.5},\"logprobs\":true,\"top_logprobs\":3,"
            "\"presence_penalty\":-1.5,\"frequency_penalty\":0.25,\"min_p\":0.1,\"user\":\"u\"}",
            (unsigned)trial, (unsigned)trial * 7, t, tp, tk, mt, seed);
        int r = oai(body, SRV_API_CHAT, &g, &e);
        CHECK(r == 0, "chat parse: %s", r ? e.message : "");
        if (r) continue;
        char want[32];
        snprintf(want, sizeof want, "a\nb%u", (unsigned)trial * 7);
        CHECK(g.n_msgs == 3 && !strcmp(g.msgs[0].role, "system") &&
                  !strcmp(g.msgs[1].content, want) && !strcmp(g.msgs[2].role, "assistant") &&
                  !strcmp(g.msgs[2].content, ""),
              "messages: developer->system, parts joined, null content");
        CHECK(fabsf(g.sp.temperature - (float)t) < 1e-6f && fabsf(g.sp.top_p - (float)tp) < 1e-6f &&
                  g.sp.top_k == tk && g.max_tokens == mt && g.sp.seed == (uint64_t)seed &&
                  g.seed_given,
              "sampling fields");
        CHECK(g.n_stop == 2 && !strcmp(g.stops[0], "x") && !strcmp(g.stops[1], "yz"),
              "stops (empty one dropped)");
        CHECK(g.stream && g.include_usage && g.logprobs == 3, "stream, usage, logprobs");
        CHECK(g.sp.n_bias == 2 && g.sp.bias == g.bias, "two biases");
        bool ban = false, plus = false;
        for (int i = 0; i < g.sp.n_bias; i++) {
            if (g.bias[i].token == 17 && isinf(g.bias[i].bias) && g.bias[i].bias < 0) ban = true;
            if (g.bias[i].token == 5 && g.bias[i].bias == 2.5f) plus = true;
        }
        CHECK(ban && plus, "-100 bans, 2.5 adds");
        CHECK(g.sp.presence_penalty == -1.5f && g.sp.frequency_penalty == 0.25f &&
                  fabsf(g.sp.min_p - 0.1f) < 1e-7f,
              "penalties, min_p");
        srv_gen_free(&g);
    }
    /* defaults */
    CHECK(oai("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", SRV_API_CHAT, &g, &e) == 0,
          "minimal chat");
    sampler_params d = sampler_default_params();
    CHECK(g.max_tokens <= 0 && !g.stream && g.logprobs == -1 && g.sp.temperature == d.temperature &&
              g.sp.top_k == d.top_k && !g.seed_given,
          "chat defaults");
    srv_gen_free(&g);
    srv_gen g2;
    oai("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", SRV_API_CHAT, &g, &e);
    oai("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", SRV_API_CHAT, &g2, &e);
    CHECK(g.sp.seed != g2.sp.seed, "no seed: a fresh one per request");
    srv_gen_free(&g);
    srv_gen_free(&g2);
    CHECK(oai("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":5,"
              "\"max_completion_tokens\":7,\"temperature\":null,\"stop\":\"s\"}",
              SRV_API_CHAT, &g, &e) == 0 &&
              g.max_tokens == 7 && g.sp.temperature == d.temperature && g.n_stop == 1,
          "max_completion_tokens wins, null means absent, stop string");
    srv_gen_free(&g);

    /* completions: prompt forms */
    CHECK(oai("{\"prompt\":\"abc\"}", SRV_API_COMPLETION, &g, &e) == 0 &&
              !strcmp(g.prompt, "abc") && g.max_tokens == 16,
          "string prompt, default max_tokens 16");
    srv_gen_free(&g);
    CHECK(oai("{\"prompt\":[\"xyz\"],\"logprobs\":2}", SRV_API_COMPLETION, &g, &e) == 0 &&
              !strcmp(g.prompt, "xyz") && g.logprobs == 2,
          "[string] prompt, logprobs int");
    srv_gen_free(&g);
    CHECK(oai("{\"prompt\":[5,6,7]}", SRV_API_COMPLETION, &g, &e) == 0 && g.n_tokens == 3 &&
              g.tokens[2] == 7,
          "token prompt");
    srv_gen_free(&g);
    CHECK(oai("{\"prompt\":[[9,8]]}", SRV_API_COMPLETION, &g, &e) == 0 && g.n_tokens == 2 &&
              g.tokens[0] == 9,
          "[[tokens]] prompt");
    srv_gen_free(&g);

    /* errors */
    expect_err(SRV_API_CHAT, "{}", "messages", false);
    expect_err(SRV_API_CHAT, "{\"messages\":[]}", "messages", false);
    expect_err(SRV_API_CHAT, "{\"messages\":\"hi\"}", "messages", false);
    expect_err(SRV_API_CHAT, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages",
               false);
    expect_err(SRV_API_CHAT, "{\"messages\":[{\"content\":\"x\"}]}", "messages", false);
    expect_err(SRV_API_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages",
               false);
    expect_err(SRV_API_CHAT,
               "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\"}]}]}",
               "messages", false);
    const char *M = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],";
    struct {
        const char *rest, *param;
    } bad[] = {{"\"temperature\":\"hot\"}", "temperature"},
               {"\"temperature\":2.5}", "temperature"},
               {"\"top_p\":-0.1}", "top_p"},
               {"\"max_tokens\":0}", "max_tokens"},
               {"\"max_tokens\":1.5}", "max_tokens"},
               {"\"max_tokens\":99999999999999}", "max_tokens"},
               {"\"n\":2}", "n"},
               {"\"stream\":\"yes\"}", "stream"},
               {"\"stop\":[1]}", "stop"},
               {"\"stop\":[\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\",\"10\",\"11\","
                "\"12\",\"13\",\"14\",\"15\",\"16\",\"17\"]}",
                "stop"},
               {"\"logit_bias\":{\"abc\":1}}", "logit_bias"},
               {"\"logit_bias\":{\"5\":101}}", "logit_bias"},
               {"\"logit_bias\":[1]}", "logit_bias"},
               {"\"top_logprobs\":2}", "top_logprobs"},
               {"\"logprobs\":true,\"top_logprobs\":21}", "top_logprobs"},
               {"\"presence_penalty\":3}", "presence_penalty"},
               {"\"seed\":\"x\"}", "seed"},
               {"\"tools\":[{\"type\":\"function\"}]}", "tools"},
               {"\"response_format\":{\"type\":\"json_object\"}}", "response_format"},
               {"\"stream_options\":5}", "stream_options"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char body[512];
        snprintf(body, sizeof body, "%s%s", M, bad[i].rest);
        expect_err(SRV_API_CHAT, body, bad[i].param, false);
    }
    expect_err(SRV_API_COMPLETION, "{\"prompt\":[\"a\",\"b\"]}", "prompt", false);
    expect_err(SRV_API_COMPLETION, "{\"prompt\":[]}", "prompt", false);
    expect_err(SRV_API_COMPLETION, "{\"prompt\":5}", "prompt", false);
    expect_err(SRV_API_COMPLETION, "{\"prompt\":[1,-2]}", "prompt", false);
    expect_err(SRV_API_COMPLETION, "{\"prompt\":[1,\"a\"]}", "prompt", false);
    expect_err(SRV_API_COMPLETION, "{\"prompt\":\"a\",\"echo\":true}", "echo", false);
    expect_err(SRV_API_COMPLETION, "{\"prompt\":\"a\",\"logprobs\":true}", "logprobs", false);
    /* a stop string longer than the limit */
    char body[1024];
    int n = snprintf(body, sizeof body, "{\"prompt\":\"a\",\"stop\":\"");
    for (int i = 0; i < SRV_MAX_STOP_LEN + 1; i++) body[n++] = 'q';
    snprintf(body + n, sizeof body - (size_t)n, "\"}");
    expect_err(SRV_API_COMPLETION, body, "stop", false);
}

static void test_ollama_parse(void) {
    srv_gen g;
    srv_err e;
    CHECK(oll("{\"model\":\"m\",\"prompt\":\"why\",\"system\":\"be brief\",\"options\":{"
              "\"temperature\":0,\"num_predict\":9,\"top_k\":3,\"seed\":-5,\"stop\":[\"\\n\"],"
              "\"repeat_penalty\":1.1,\"num_ctx\":999}}",
              SRV_API_OLLAMA_GENERATE, &g, &e) == 0,
          "generate parse");
    CHECK(g.stream && g.n_msgs == 2 && !strcmp(g.msgs[0].role, "system") &&
              !strcmp(g.msgs[1].content, "why") && g.sp.temperature == 0 && g.max_tokens == 9 &&
              g.sp.top_k == 3 && g.sp.seed == (uint64_t)-5 && g.n_stop == 1 &&
              fabsf(g.sp.repeat_penalty - 1.1f) < 1e-6f,
          "generate fields (stream by default, system + user messages)");
    srv_gen_free(&g);
    CHECK(oll("{\"prompt\":\"<x>raw\",\"raw\":true,\"stream\":false,\"options\":{\"num_predict\":-"
              "1}}",
              SRV_API_OLLAMA_GENERATE, &g, &e) == 0 &&
              g.prompt && !strcmp(g.prompt, "<x>raw") && !g.n_msgs && !g.stream &&
              g.max_tokens <= 0,
          "raw prompt, stream false, num_predict -1");
    srv_gen_free(&g);
    CHECK(oll("{\"model\":\"m\"}", SRV_API_OLLAMA_GENERATE, &g, &e) == 0 && g.load_only,
          "empty generate: load only");
    srv_gen_free(&g);
    CHECK(oll("{\"model\":\"m\",\"messages\":[]}", SRV_API_OLLAMA_CHAT, &g, &e) == 0 && g.load_only,
          "empty chat: load only");
    srv_gen_free(&g);
    CHECK(oll("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"assistant\","
              "\"content\":\"b\"},{\"role\":\"user\",\"content\":\"c\",\"images\":[]}],\"format\":"
              "\"\"}",
              SRV_API_OLLAMA_CHAT, &g, &e) == 0 &&
              g.n_msgs == 3 && !strcmp(g.msgs[2].content, "c"),
          "chat messages");
    srv_gen_free(&g);
    expect_err(SRV_API_OLLAMA_GENERATE, "{\"prompt\":\"a\",\"format\":\"json\"}", "format", true);
    expect_err(SRV_API_OLLAMA_GENERATE, "{\"prompt\":\"a\",\"images\":[\"AAAA\"]}", "images", true);
    expect_err(SRV_API_OLLAMA_GENERATE, "{\"prompt\":7}", "prompt", true);
    expect_err(SRV_API_OLLAMA_GENERATE, "{\"prompt\":\"a\",\"options\":[]}", "options", true);
    expect_err(SRV_API_OLLAMA_GENERATE, "{\"prompt\":\"a\",\"options\":{\"top_p\":2}}", "top_p",
               true);
    expect_err(SRV_API_OLLAMA_CHAT, "{\"messages\":[{\"role\":\"x\",\"content\":\"a\"}]}",
               "messages", true);
    expect_err(SRV_API_OLLAMA_CHAT, "{\"messages\":{}}", "messages", true);
    expect_err(SRV_API_OLLAMA_CHAT, "{\"messages\":[{\"role\":\"user\",\"content\":[]}]}",
               "content", true);
}

/* ---- formatting ---- */

static srv_event tok_ev(const char *text) {
    srv_event ev = {0};
    ev.kind = SRV_EV_TOKEN;
    ev.token = (int32_t)(rnd() % 1000);
    ev.text = (char *)text;
    ev.text_len = (int)strlen(text);
    ev.logprob = -(float)(rnd() % 1000) / 100.0f;
    return ev;
}

static srv_event done_ev(const char *rest, int finish, int np, int ng) {
    srv_event ev = {0};
    ev.kind = SRV_EV_DONE;
    ev.text = (char *)rest;
    ev.text_len = (int)strlen(rest);
    ev.finish = finish;
    ev.n_prompt = np;
    ev.n_gen = ng;
    ev.n_cached = np / 2;
    ev.t_prompt = 0.25;
    ev.t_gen = 1.5;
    return ev;
}

/* Splits an SSE body into its JSON events; returns the count, -1 on a
 * malformed stream; *done says whether it ended with [DONE]. */
static int sse_events(const char *s, json_t **ev, int max, bool *done) {
    int n = 0;
    *done = false;
    while (*s) {
        if (*s == ':') { /* a comment (keep-alive) */
            const char *end = strstr(s, "\n\n");
            if (!end) return -1;
            s = end + 2;
            continue;
        }
        if (strncmp(s, "data: ", 6)) return -1;
        s += 6;
        const char *end = strstr(s, "\n\n");
        if (!end) return -1;
        if (!strncmp(s, "[DONE]", 6) && end == s + 6) {
            *done = true;
            return end[2] ? -1 : n;
        }
        json_error_t je;
        json_t *j = json_loadb(s, (size_t)(end - s), 0, &je);
        if (!j || n == max) {
            json_decref(j);
            return -1;
        }
        ev[n++] = j;
        s = end + 2;
    }
    return n;
}

static void test_format_openai(void) {
    /* a reply with multi-byte text split over tokens, one bad byte */
    const char *pieces[] = {"Hel", "lo \xc3\xa9", "", " w\xff", "orld"};
    int np = 11 + (int)(rnd() % 50);
    for (int api = SRV_API_CHAT; api <= SRV_API_COMPLETION; api++) {
        for (int stream = 0; stream < 2; stream++) {
            srv_gen g;
            srv_gen_init(&g, api);
            g.stream = stream;
            g.include_usage = true;
            g.logprobs = stream ? 0 : -1;
            srv_resp r;
            srv_resp_init(&r, api, &g, NULL, "my-model", 0);
            const char *prefix = api == SRV_API_CHAT ? "chatcmpl-" : "cmpl-";
            CHECK(!strncmp(r.id, prefix, strlen(prefix)) && strlen(r.id) == strlen(prefix) + 24,
                  "id %s", r.id);
            srv_buf out = {0};
            for (int i = 0; i < 5; i++) {
                srv_event ev = tok_ev(pieces[i]);
                srv_resp_token(&r, &ev, &out);
            }
            srv_event ev = done_ev("!", SRV_FINISH_STOP, np, 5);
            int status;
            srv_resp_done(&r, &ev, &out, &status);
            CHECK(status == 200 && !out.oom, "status 200");
            const char *want = "Hello \xc3\xa9 w\xef\xbf\xbdorld!";
            if (!stream) {
                json_error_t je;
                json_t *j = json_loads(out.p, 0, &je);
                CHECK(j != NULL, "non-stream body is JSON: %s", out.p);
                json_t *ch = json_array_get(json_object_get(j, "choices"), 0);
                const char *text = api == SRV_API_CHAT
                                       ? json_string_value(json_object_get(
                                             json_object_get(ch, "message"), "content"))
                                       : json_string_value(json_object_get(ch, "text"));
                CHECK(text && !strcmp(text, want), "reply text '%s'", text ? text : "(null)");
                CHECK(!strcmp(json_string_value(json_object_get(j, "object")),
                              api == SRV_API_CHAT ? "chat.completion" : "text_completion"),
                      "object name");
                CHECK(!strcmp(json_string_value(json_object_get(ch, "finish_reason")), "stop"),
                      "finish stop");
                json_t *u = json_object_get(j, "usage");
                CHECK(json_integer_value(json_object_get(u, "prompt_tokens")) == np &&
                          json_integer_value(json_object_get(u, "completion_tokens")) == 5 &&
                          json_integer_value(json_object_get(u, "total_tokens")) == np + 5,
                      "usage");
                CHECK(!strcmp(json_string_value(json_object_get(j, "model")), "my-model") &&
                          json_is_integer(json_object_get(j, "created")),
                      "model, created");
                json_decref(j);
            } else {
                json_t *evs[32];
                bool done;
                int n = sse_events(out.p, evs, 32, &done);
                CHECK(n >= 3 && done, "SSE stream well formed, ends with [DONE] (%d events)", n);
                srv_buf text = {0};
                int finishes = 0, usage_chunks = 0, lp_entries = 0;
                for (int i = 0; i < n; i++) {
                    json_t *j = evs[i];
                    CHECK(
                        !strcmp(json_string_value(json_object_get(j, "object")),
                                api == SRV_API_CHAT ? "chat.completion.chunk" : "text_completion"),
                        "chunk object name");
                    CHECK(!strcmp(json_string_value(json_object_get(j, "id")), r.id), "same id");
                    json_t *chs = json_object_get(j, "choices");
                    if (json_array_size(chs) == 0) {
                        usage_chunks++;
                        CHECK(i == n - 1 &&
                                  json_integer_value(json_object_get(json_object_get(j, "usage"),
                                                                     "completion_tokens")) == 5,
                              "usage chunk last, with counts");
                        continue;
                    }
                    CHECK(json_is_null(json_object_get(j, "usage")),
                          "usage null in content chunks");
                    json_t *ch = json_array_get(chs, 0);
                    const char *t = api == SRV_API_CHAT
                                        ? json_string_value(json_object_get(
                                              json_object_get(ch, "delta"), "content"))
                                        : json_string_value(json_object_get(ch, "text"));
                    if (t) srv_buf_puts(&text, t);
                    if (api == SRV_API_CHAT && i == 0)
                        CHECK(!strcmp(json_string_value(
                                          json_object_get(json_object_get(ch, "delta"), "role")),
                                      "assistant"),
                              "first delta has the role");
                    json_t *fr = json_object_get(ch, "finish_reason");
                    if (json_is_string(fr)) finishes++;
                    json_t *lp = json_object_get(ch, "logprobs");
                    if (json_is_object(lp)) lp_entries++;
                }
                CHECK(text.p && !strcmp(text.p, want), "streamed text '%s'", text.p ? text.p : "");
                CHECK(finishes == 1 && usage_chunks == 1, "one finish, one usage chunk");
                CHECK(lp_entries == 5, "logprobs on each of the 5 token chunks (%d)", lp_entries);
                srv_buf_free(&text);
                for (int i = 0; i < n; i++) json_decref(evs[i]);
            }
            srv_buf_free(&out);
            srv_resp_free(&r);
            srv_gen_free(&g);
        }
    }
    /* engine failure */
    srv_gen g;
    srv_gen_init(&g, SRV_API_CHAT);
    srv_resp r;
    srv_resp_init(&r, SRV_API_CHAT, &g, NULL, "m", 0);
    srv_buf out = {0};
    srv_event ev = done_ev("", SRV_FINISH_ERROR, 3, 0);
    snprintf(ev.error, sizeof ev.error, "kaboom");
    int status;
    srv_resp_done(&r, &ev, &out, &status);
    json_t *j = json_loads(out.p, 0, NULL);
    CHECK(status == 500 && j &&
              strstr(json_string_value(json_object_get(json_object_get(j, "error"), "message")),
                     "kaboom"),
          "engine error: 500 with the message");
    json_decref(j);
    srv_buf_free(&out);
    srv_resp_free(&r);
    /* cancel / timeout end as "length" */
    CHECK(!strcmp(srv_finish_name(SRV_FINISH_CANCELLED), "length") &&
              !strcmp(srv_finish_name(SRV_FINISH_TIMEOUT), "length") &&
              !strcmp(srv_finish_name(SRV_FINISH_STOP), "stop"),
          "finish names");
    /* error body shape */
    srv_err e;
    srv_err_set(&e, 429, NULL, "busy \xff");
    srv_openai_error_body(&e, &out);
    j = json_loads(out.p, 0, NULL);
    json_t *eo = json_object_get(j, "error");
    CHECK(eo && json_is_string(json_object_get(eo, "message")) &&
              json_is_string(json_object_get(eo, "type")) &&
              json_is_null(json_object_get(eo, "param")) &&
              json_is_null(json_object_get(eo, "code")),
          "OpenAI error shape: %s", out.p);
    json_decref(j);
    srv_buf_free(&out);
    srv_ollama_error_body(&e, &out);
    j = json_loads(out.p, 0, NULL);
    CHECK(j && json_is_string(json_object_get(j, "error")), "Ollama error shape");
    json_decref(j);
    srv_buf_free(&out);
}

static void test_format_ollama(void) {
    for (int api = SRV_API_OLLAMA_GENERATE; api <= SRV_API_OLLAMA_CHAT; api++) {
        for (int stream = 0; stream < 2; stream++) {
            srv_gen g;
            srv_gen_init(&g, api);
            g.stream = stream;
            srv_resp r;
            srv_resp_init(&r, api, &g, NULL, "m", 0);
            srv_buf out = {0};
            char words[6][16];
            srv_buf want = {0};
            for (int i = 0; i < 6; i++) {
                snprintf(words[i], sizeof words[i], " w%u", rnd() % 1000);
                srv_buf_puts(&want, words[i]);
                srv_event ev = tok_ev(words[i]);
                srv_resp_token(&r, &ev, &out);
            }
            srv_event ev = done_ev("", SRV_FINISH_LENGTH, 20, 6);
            int status;
            srv_resp_done(&r, &ev, &out, &status);
            srv_buf text = {0};
            int lines = 0;
            json_t *last = NULL;
            for (char *s = out.p; s && *s;) {
                char *nl = strchr(s, '\n');
                size_t len = nl ? (size_t)(nl - s) : strlen(s);
                json_t *j = json_loadb(s, len, 0, NULL);
                CHECK(j != NULL, "line %d is JSON", lines);
                if (!j) break;
                lines++;
                const char *t = api == SRV_API_OLLAMA_CHAT
                                    ? json_string_value(
                                          json_object_get(json_object_get(j, "message"), "content"))
                                    : json_string_value(json_object_get(j, "response"));
                if (t) srv_buf_puts(&text, t);
                json_decref(last);
                last = j;
                s = nl ? nl + 1 : s + len;
            }
            CHECK(lines == (stream ? 7 : 1), "%d lines", lines);
            CHECK(text.p && !strcmp(text.p, want.p), "text '%s'", text.p ? text.p : "");
            CHECK(last && json_is_true(json_object_get(last, "done")) &&
                      !strcmp(json_string_value(json_object_get(last, "done_reason")), "length") &&
                      json_integer_value(json_object_get(last, "eval_count")) == 6 &&
                      json_integer_value(json_object_get(last, "prompt_eval_count")) == 20 &&
                      json_integer_value(json_object_get(last, "eval_duration")) == 1500000000 &&
                      json_integer_value(json_object_get(last, "prompt_eval_duration")) ==
                          250000000 &&
                      json_is_integer(json_object_get(last, "total_duration")),
                  "final object: done, reason, counts, nanoseconds");
            json_decref(last);
            srv_buf_free(&text);
            srv_buf_free(&want);
            srv_buf_free(&out);
            srv_resp_free(&r);
            srv_gen_free(&g);
        }
    }
}

/* ---- metrics ---- */

static void test_metrics(void) {
    srv_stats st;
    memset(&st, 0, sizeof st);
    uint64_t count = 0;
    for (int i = 0; i < 16; i++) count += st.ttft_hist[i] = rnd() % 100;
    st.ttft_count = count;
    st.ttft_sum = 12.5;
    st.gen_tokens = rnd();
    st.n_waiting = 3;
    st.kv_blocks_total = 100, st.kv_blocks_used = 37;
    srv_http_counters c;
    memset(&c, 0, sizeof c);
    int n200 = 1 + (int)(rnd() % 20);
    for (int i = 0; i < n200; i++) srv_counters_add(&c, SRV_EP_CHAT, 200);
    srv_counters_add(&c, SRV_EP_OTHER, 404);
    srv_counters_add(&c, SRV_EP_CHAT, 418);
    srv_buf out = {0};
    srv_metrics_render(&st, &c, &out);
    CHECK(!out.oom && out.p, "rendered");
    char want[160];
    snprintf(want, sizeof want,
             "beast_http_requests_total{endpoint=\"/v1/chat/completions\",code=\"200\"} %d\n",
             n200);
    CHECK(strstr(out.p, want) != NULL, "request counter line");
    CHECK(strstr(out.p, "beast_http_requests_total{endpoint=\"other\",code=\"404\"} 1\n") &&
              strstr(out.p, "code=\"other\"} 1\n"),
          "404 and other codes");
    snprintf(want, sizeof want, "beast_generated_tokens_total %llu\n",
             (unsigned long long)st.gen_tokens);
    CHECK(strstr(out.p, want) != NULL, "generated tokens");
    CHECK(strstr(out.p, "beast_kv_blocks_free 63\n") && strstr(out.p, "beast_queue_depth 3\n"),
          "gauges");
    /* histogram: cumulative, +Inf == _count */
    uint64_t cum = 0;
    bool right = true;
    int buckets = 0;
    for (const char *s = out.p;
         (s = strstr(s, "beast_time_to_first_token_seconds_bucket{le=\""));) {
        const char *v = strstr(s, "} ") + 2;
        unsigned long long x = strtoull(v, NULL, 10);
        cum += st.ttft_hist[buckets < 16 ? buckets : 15];
        right &= x == cum;
        buckets++;
        s = v;
    }
    CHECK(buckets == 16 && right, "16 cumulative buckets");
    snprintf(want, sizeof want, "beast_time_to_first_token_seconds_bucket{le=\"+Inf\"} %llu\n",
             (unsigned long long)count);
    CHECK(strstr(out.p, want) != NULL, "+Inf bucket is the count");
    snprintf(want, sizeof want, "beast_time_to_first_token_seconds_count %llu\n",
             (unsigned long long)count);
    CHECK(strstr(out.p, want) != NULL, "_count");
    /* every sample line's metric has a TYPE line */
    int untyped = 0;
    for (char *s = out.p; *s;) {
        char *nl = strchr(s, '\n');
        if (!nl) break;
        if (*s != '#') {
            char name[96];
            size_t k = strcspn(s, "{ ");
            snprintf(name, sizeof name, "%.*s", (int)k, s);
            char *suffix = strstr(name, "_bucket");
            if (!suffix) suffix = strstr(name, "_sum");
            if (!suffix) suffix = strstr(name, "_count");
            if (suffix && strstr(name, "_seconds")) *suffix = 0;
            char type[128];
            snprintf(type, sizeof type, "# TYPE %s ", name);
            if (!strstr(out.p, type)) untyped++;
        }
        s = nl + 1;
    }
    CHECK(untyped == 0, "%d sample lines without a TYPE", untyped);
    srv_buf_free(&out);
}

/* ---- with the model: tokens and a live server ---- */

static char *http(int port, const char *req, double timeout_s) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) {
        close(fd);
        return NULL;
    }
    struct timeval tv = {(time_t)timeout_s, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    size_t n = strlen(req);
    for (size_t off = 0; off < n;) {
        ssize_t k = send(fd, req + off, n - off, MSG_NOSIGNAL);
        if (k <= 0) break;
        off += (size_t)k;
    }
    srv_buf b = {0};
    char buf[4096];
    ssize_t k;
    while ((k = recv(fd, buf, sizeof buf, 0)) > 0) srv_buf_add(&b, buf, (size_t)k);
    close(fd);
    if (!b.p) srv_buf_add(&b, "", 0);
    return b.p;
}

static char *post(int port, const char *path, const char *body, const char *auth) {
    char *req = malloc(strlen(body) + 512);
    sprintf(req,
            "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            "%s%s%sContent-Length: %zu\r\n\r\n%s",
            path, auth ? "Authorization: Bearer " : "", auth ? auth : "", auth ? "\r\n" : "",
            strlen(body), body);
    char *r = http(port, req, 60);
    free(req);
    return r;
}

static int status_of(const char *resp) {
    int s = 0;
    if (resp) sscanf(resp, "HTTP/1.%*d %d", &s);
    return s;
}

/* The body of a (possibly chunked) response, de-chunked. */
static char *body_of(const char *resp) {
    const char *b = resp ? strstr(resp, "\r\n\r\n") : NULL;
    if (!b) return strdup("");
    b += 4;
    bool chunked = strcasestr(resp, "transfer-encoding: chunked") != NULL &&
                   strcasestr(resp, "transfer-encoding: chunked") < b;
    if (!chunked) return strdup(b);
    srv_buf out = {0};
    while (*b) {
        char *end;
        unsigned long n = strtoul(b, &end, 16);
        const char *data = strstr(b, "\r\n");
        if (!data || n == 0) break;
        data += 2;
        srv_buf_add(&out, data, n);
        b = data + n;
        if (!strncmp(b, "\r\n", 2)) b += 2;
    }
    if (!out.p) srv_buf_add(&out, "", 0);
    return out.p;
}

static void test_live(beast_model *m) {
    /* prompt tokens */
    srv_gen g;
    srv_err e;
    CHECK(oai("{\"messages\":[{\"role\":\"user\",\"content\":\"Hi there\"}]}", SRV_API_CHAT, &g,
              &e) == 0,
          "chat parse");
    int32_t *toks = NULL;
    int n = srv_gen_tokens(m, &g, &toks, &e);
    char *rendered = NULL;
    beast_chat_render(m, g.msgs, g.n_msgs, true, &rendered);
    int32_t ref[512];
    int nref = rendered ? beast_tokenize(m, rendered, strlen(rendered), false, true, ref, 512) : -1;
    CHECK(n > 0 && n == nref && !memcmp(toks, ref, (size_t)n * 4),
          "chat prompt = the rendered template tokenized with control tokens (%d vs %d)", n, nref);
    free(rendered);
    free(toks);
    srv_gen_free(&g);
    char body[128];
    snprintf(body, sizeof body, "{\"prompt\":[1,%d]}", beast_n_vocab(m));
    oai(body, SRV_API_COMPLETION, &g, &e);
    CHECK(srv_gen_tokens(m, &g, &toks, &e) < 0 && e.status == 400, "token outside the vocabulary");
    srv_gen_free(&g);
    snprintf(body, sizeof body, "{\"prompt\":\"x\",\"logit_bias\":{\"%d\":1}}",
             beast_n_vocab(m) + 5);
    oai(body, SRV_API_COMPLETION, &g, &e);
    CHECK(srv_gen_tokens(m, &g, &toks, &e) < 0 && e.status == 400 && !strcmp(e.param, "logit_bias"),
          "bias outside the vocabulary");
    srv_gen_free(&g);

    /* a live server */
    srv_sched_params sp = srv_sched_default_params();
    sp.n_parallel = 2;
    sp.n_ctx = 256;
    sp.prefix_cache = false;
    srv_sched *s = srv_sched_new(m, &sp);
    CHECK(s != NULL, "scheduler: %s", s ? "" : beast_error());
    if (!s) return;
    srv_http_params hp = srv_http_default_params();
    hp.port = 0;
    hp.api_key = "sekret";
    hp.max_body = 4096;
    hp.model_name = "smol";
    hp.read_timeout_s = 1.5;
    srv_http *h = srv_http_start(s, &hp);
    CHECK(h != NULL, "server started: %s", h ? "" : beast_error());
    if (!h) {
        srv_sched_free(s);
        return;
    }
    int port = srv_http_port(h);
    CHECK(port > 0, "port 0 picked a port (%d)", port);
    char *r = http(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10);
    CHECK(status_of(r) == 200 && strstr(r, "{\"status\":\"ok\"}"), "health without a key");
    free(r);
    r = http(port, "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10);
    CHECK(status_of(r) == 401 && strstr(r, "invalid_api_key"), "models without a key: 401");
    free(r);
    r = http(port,
             "GET /v1/models HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\nConnection: "
             "close\r\n\r\n",
             10);
    CHECK(status_of(r) == 200 && strstr(r, "\"id\":\"smol\""), "models with the key");
    free(r);
    r = post(port, "/v1/completions", "{\"prompt\":\"a\"}", "wrong");
    CHECK(status_of(r) == 401, "wrong key: 401");
    free(r);
    r = http(port, "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 10);
    CHECK(status_of(r) == 404, "unknown path: 404");
    free(r);
    r = http(port,
             "PUT /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\n"
             "Content-Length: 0\r\nConnection: close\r\n\r\n",
             10);
    CHECK(status_of(r) == 405 && strcasestr(r, "Allow: POST"), "wrong method: 405 with Allow");
    free(r);
    r = http(port,
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\n"
             "Content-Length: 5000\r\nConnection: close\r\n\r\n{",
             10);
    CHECK(status_of(r) == 413, "declared body over the limit: 413");
    free(r);
    /* chunked body over the limit */
    srv_buf big = {0};
    srv_buf_puts(&big,
                 "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\n"
                 "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
    for (int i = 0; i < 5; i++) {
        srv_buf_puts(&big, "400\r\n");
        for (int k = 0; k < 1024; k++) srv_buf_add(&big, "x", 1);
        srv_buf_puts(&big, "\r\n");
    }
    srv_buf_puts(&big, "0\r\n\r\n");
    r = http(port, big.p, 10);
    CHECK(status_of(r) == 413, "chunked body over the limit: 413 (%d)", status_of(r));
    free(r);
    srv_buf_free(&big);
    r = post(port, "/api/generate", "{\"prompt\":", "sekret");
    CHECK(status_of(r) == 400 && strstr(r, "{\"error\":\""),
          "bad JSON on Ollama: 400, Ollama shape");
    free(r);
    /* too long for the context (256) */
    srv_buf lp = {0};
    srv_buf_puts(&lp, "{\"prompt\":\"");
    for (int i = 0; i < 300; i++) srv_buf_puts(&lp, "cat ");
    srv_buf_puts(&lp, "\"}");
    r = post(port, "/v1/completions", lp.p, "sekret");
    CHECK(status_of(r) == 400 && strstr(r, "context_length_exceeded"), "too long: 400");
    free(r);
    srv_buf_free(&lp);

    /* greedy: streamed text == non-streamed text */
    const char *q = "{\"prompt\":\"The capital of France is\",\"max_tokens\":6,\"temperature\":0";
    char qb[256];
    snprintf(qb, sizeof qb, "%s}", q);
    r = post(port, "/v1/completions", qb, "sekret");
    char *b = body_of(r);
    json_t *j = json_loads(b, 0, NULL);
    const char *t1 = json_string_value(
        json_object_get(json_array_get(json_object_get(j, "choices"), 0), "text"));
    CHECK(status_of(r) == 200 && t1 && *t1, "completion: %s", b);
    snprintf(qb, sizeof qb, "%s,\"stream\":true}", q);
    char *r2 = post(port, "/v1/completions", qb, "sekret");
    char *b2 = body_of(r2);
    json_t *evs[32];
    bool done;
    int ne = sse_events(b2, evs, 32, &done);
    srv_buf st = {0};
    for (int i = 0; i < ne; i++) {
        const char *t = json_string_value(
            json_object_get(json_array_get(json_object_get(evs[i], "choices"), 0), "text"));
        if (t) srv_buf_puts(&st, t);
        json_decref(evs[i]);
    }
    CHECK(status_of(r2) == 200 && strcasestr(r2, "content-type: text/event-stream") && done && t1 &&
              st.p && !strcmp(st.p, t1),
          "stream == non-stream: '%s' vs '%s'", st.p ? st.p : "", t1 ? t1 : "");
    srv_buf_free(&st);
    json_decref(j);
    free(b), free(r), free(b2), free(r2);

    /* a client that goes away mid-stream: its request is cancelled */
    srv_stats s0, s1;
    srv_sched_stats(s, &s0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    const char *lb = "{\"prompt\":\"Once upon a time\",\"max_tokens\":200,\"stream\":true}";
    char req[512];
    snprintf(req, sizeof req,
             "POST /v1/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             strlen(lb), lb);
    CHECK(send(fd, req, strlen(req), MSG_NOSIGNAL) == (ssize_t)strlen(req), "send");
    char buf[256];
    CHECK(recv(fd, buf, sizeof buf, 0) > 0, "first bytes of the stream");
    close(fd);
    bool cancelled = false;
    for (int i = 0; i < 1200 && !cancelled; i++) { /* 30 s: sanitizer builds are slow */
        srv_sched_stats(s, &s1);
        cancelled = s1.req_finished[SRV_FINISH_CANCELLED] > s0.req_finished[SRV_FINISH_CANCELLED];
        if (!cancelled) usleep(25000);
    }
    CHECK(cancelled && s1.gen_tokens - s0.gen_tokens < 200,
          "disconnect cancelled the request (%llu tokens made)",
          (unsigned long long)(s1.gen_tokens - s0.gen_tokens));
    r = http(port,
             "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sekret\r\nConnection: "
             "close\r\n\r\n",
             10);
    CHECK(status_of(r) == 200 && strstr(r, "beast_http_client_disconnects_total 1\n") &&
              strstr(r, "code=\"413\"} 2") && strstr(r, "code=\"401\"} 1"),
          "metrics count statuses and the disconnect");
    free(r);

    /* a client trickling its request is cut off after read_timeout_s */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect");
    double t0 = time_now();
    const char *slow = "POST /v1/completions HTTP/1.1\r\nHost: x\r\n";
    bool closed = false;
    for (size_t i = 0; i < strlen(slow) && !closed; i++) {
        if (send(fd, slow + i, 1, MSG_NOSIGNAL) != 1) closed = true;
        usleep(200000);
        char c1;
        ssize_t k = recv(fd, &c1, 1, MSG_DONTWAIT);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
    }
    double dt = time_now() - t0;
    CHECK(closed && dt > 1.2 && dt < 6, "slow client closed after %.1f s", dt);
    close(fd);
    srv_http_stop(h, 0);
    srv_http_free(h);
    srv_sched_free(s);
}

int main(void) {
    test_prescan();
    test_utf8();
    test_openai_parse();
    test_ollama_parse();
    test_format_openai();
    test_format_ollama();
    test_metrics();
    const char *dir = getenv("BEAST_MODELS_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/SmolLM2-135M-Instruct.Q4_1.gguf", dir ? dir : "../models");
    beast_model_params mp = beast_model_default_params();
    mp.n_threads = 2;
    beast_model *m = beast_model_load(path, &mp);
    if (m) {
        test_live(m);
        beast_model_free(m);
    } else {
        printf("skip live tests: %s\n", beast_error());
    }
    return check_done();
}
