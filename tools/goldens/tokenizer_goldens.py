#!/usr/bin/env python3
"""tokenizer_goldens.py: golden token ids for tests/test_tokenizer.c.

For each model GGUF under models/, tokenizes a fixed corpus of ~475 strings
with two references and writes tests/data/tokenizer/<name>.txt:

  * llama.cpp (llama-cpp-python, vocab_only=True): the target. Lines "L<f>".
  * Hugging Face `tokenizers`, built from the GGUF's own vocabulary by
    transformers' GGUF converter (no torch needed: we read the metadata with
    the `gguf` package and call convert_gguf_tokenizer directly). Lines "H<f>",
    written only where they differ from the llama.cpp line.
    For pre=smollm the converter has no split rule (it falls back to plain
    ByteLevel); we give it SmolLM2's tokenizer.json pre-tokenizer
    (Digits(individual_digits) + ByteLevel) and report how many strings the
    unfixed converter gets wrong.

SmolLM2's vocabulary is also re-labelled with the other pre-tokenizer ids we
support (gpt-2, llama-bpe, qwen2, default) and tokenized by llama.cpp:
tests/data/tokenizer/smollm2-pre-<pre>.txt (L lines only, plus "pre <id>").

tests/data/tokenizer/<name>.pieces: llama.cpp's token_to_piece for every id
as a checksum, explicit pieces for non-normal ids and a sample, and the EOG set.

<f> is the tok_encode flag set: 1 = add BOS/EOS per metadata, 2 = parse
special-token text. Flags 0 and 2 are recorded for every string, 1 and 3 for
the first 60.

File format (plain text, no JSON needed to read it):
  model <gguf file name>
  T <hex of the UTF-8 text>      starts a case
  L<f> <id> <id> ...             llama.cpp ids (may be empty)
  H<f> <id> <id> ...             HF ids, only when they differ from L<f>
Lines starting with '#' are comments.

Usage: python3 tools/goldens/tokenizer_goldens.py [--models DIR] [--out DIR]
"""
import argparse
import os
import random
import sys

MODELS = [
    ("smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
    ("gemma3", "gemma-3-270m-q4_k_m.gguf"),
]


def corpus():
    s = []
    # --- edge cases
    s += ["", " ", "  ", "\n", "\t", "a", "A", ".", "0", "\u200b", "\ufffd", "\u00a0", "\u3000",
          "\u2028", "\ufeff", "\ufeffHello", "\U0010ffff", "\ue000 private use", "\x00", "a\x00b",
          "\x01\x02\x7f", "\x1c\x1d\x1e\x1f", "\r", "\r\n", "\x0b\x0c", "\u0085", "\u180e",
          "\u2009thin\u2009space", "\u202f", "\u205f", "zero\u200bwidth\u200cjoin\u200dx",
          "\u2060word\u2060joiner", "\ufe0f", "\u00ad soft hyphen"]
    # --- English prose
    s += [
        "Hello world", "Hello, world!", "hello world", "HELLO WORLD", " Hello world",
        "Hello world ", "  Hello  world  ", "The quick brown fox jumps over the lazy dog.",
        "I'm sure they'll say it's fine, don't you think? We've seen it. He'd go; she's ready.",
        "IT'S DON'T WE'LL YOU'RE THEY'VE I'M HE'D", "rock 'n' roll", "'s 't 're",
        "Once upon a time, in a land far, far away, there lived a curious little robot named Beep.",
        "The mitochondria is the powerhouse of the cell. Photosynthesis converts light energy "
        "into chemical energy stored in glucose.",
        "Mr. Smith went to Washington D.C. on Jan. 5th, 2024 -- at 3:45 p.m. -- to testify.",
        "Well... I don't know!!! Are you serious??? (Maybe.) [Probably.] {Definitely?}",
        "She said, \"Don't do that,\" and left.", "\u201cSmart quotes\u201d and \u2018single ones\u2019 \u2014 em dash \u2013 en dash",
        "Supercalifragilisticexpialidocious", "antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
        "e-mail co-operate re-enter state-of-the-art", "naïve café résumé façade Ångström coöperate",
        "Ünïcödé wörds ärë fün", "The year 1984 and the number 3.14159 and -42 and +7 and 1e-10.",
        "Dear Sir or Madam,\n\nI am writing to inform you...\n\nSincerely,\nJohn",
        "Line one\nLine two\nLine three\n", "Tabs\tbetween\twords", "trailing spaces   ",
        "   leading spaces", "\n\nleading newlines", "trailing newlines\n\n\n",
        "A" * 50, "ab" * 40, "The " * 30, "lorem ipsum dolor sit amet " * 8,
        "What is 2+2? It's 4. What about 10*10? That's 100!",
        "user: hi\nassistant: hello! how can I help?\nuser: tell me a joke",
    ]
    # --- code
    s += [
        "def foo(x):\n    return x * 2\n",
        "def fib(n):\n\tif n < 2:\n\t\treturn n\n\treturn fib(n-1) + fib(n-2)\n",
        "class A(object):\n    def __init__(self, a, b=None, *args, **kwargs):\n        self.a = a  # comment\n        super().__init__()\n",
        "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(f\"{x.shape=}\")\n",
        "for i in range(10):\n    if i % 2 == 0:\n        print(i)\n    else:\n        continue\n",
        "lambda x: x**2 if x>=0 else -x",
        "#include <stdio.h>\n\nint main(int argc, char **argv) {\n    printf(\"Hello, %s!\\n\", argv[0]);\n    return 0;\n}\n",
        "static inline uint32_t rotl(uint32_t x, int k) { return (x << k) | (x >> (32 - k)); }",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i] * b[i];\n}",
        "if (p != NULL && *p == '\\0') { p++; } else if (x >= 0x7fffffff) { abort(); }",
        "#define MAX(a, b) ((a) > (b) ? (a) : (b))\n#ifndef FOO_H\n#define FOO_H\n#endif",
        "std::vector<std::pair<int, std::string>> v; v.emplace_back(1, \"x\");",
        "{\"name\": \"beast\", \"version\": 1, \"tags\": [\"llm\", \"c11\"], \"nested\": {\"a\": null, \"b\": true, \"c\": 3.5e-3}}",
        "{\n  \"key\": \"value\",\n  \"list\": [\n    1,\n    2,\n    3\n  ]\n}",
        "[{\"id\":1},{\"id\":2},{\"id\":3}]",
        "const f = async (x) => { await fetch(`/api/${x}`); return x ?? 0; };",
        "function add(a, b) {\n  return a + b;\n}\nconsole.log(add(1, 2));",
        "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
        "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\" | wc -c; done 2>&1 | tee log",
        "<html>\n<head><title>Test</title></head>\n<body>\n<div class=\"x\"><p>Hi <b>there</b></p></div>\n</body>\n</html>",
        "<table><tr><td>1</td><td>2</td></tr></table>", "<s>struck</s> <u>under</u> <i>it</i> <em>em</em>",
        "<code>x = 1</code> <strong>bold</strong> <h1>Title</h1> <blockquote>q</blockquote>",
        "# Title\n\n## Section\n\n- item 1\n- item 2\n\n```python\nprint('hi')\n```\n",
        "| a | b |\n|---|---|\n| 1 | 2 |", "fn main() { let v: Vec<u8> = vec![1, 2, 3]; println!(\"{:?}\", v); }",
        "package main\n\nimport \"fmt\"\n\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n",
        "x=1;y=2;z=x+y;", "a&&b||!c", "i++; j--; k+=2; l-=3; m*=4; n/=5; o%=6; p<<=1; q>>=2;",
        "0x1F 0b1010 0o777 1_000_000 3.0f 2.5e+10 .5 5.",
        "    indented four\n        indented eight\n\t\ttabbed twice\n  \t mixed",
        "def f():\n" + "    " * 6 + "deep\n", "\t" * 12 + "tabs", " " * 33 + "spaces",
        "if x:\n\n\n\n    y\n", "a\r\nb\r\nc\r\n", "key: value\nlist:\n  - a\n  - b\n",
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><root attr='1'/>",
        "regex: ^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\\.[a-zA-Z]{2,}$",
        "C:\\Users\\Admin\\Documents\\file.txt", "/usr/local/bin/python3 -m pip install --upgrade pip",
    ]
    # --- scripts and languages
    s += [
        "你好，世界！这是一个测试。", "我爱北京天安门。", "中文和English混合text。", "日本語のテキストとカタカナ ー",
        "こんにちは、世界！", "東京都渋谷区", "한국어 텍스트입니다", "안녕하세요 세계", "繁體中文與簡體中文",
        "ｆｕｌｌｗｉｄｔｈ　ｌｅｔｔｅｒｓ　１２３", "半角ｶﾀｶﾅ", "Привет, мир! Как дела?", "Съешь же ещё этих мягких французских булок",
        "Γειά σου Κόσμε", "Ελληνικά με τόνους: άέήίόύώ", "مرحبا بالعالم", "السلام عليكم ورحمة الله",
        "العربية ١٢٣٤٥٦٧٨٩٠", "שלום עולם", "नमस्ते दुनिया", "हिन्दी में लिखा गया वाक्य।", "মাতৃভাষা বাংলা",
        "தமிழ் மொழி", "తెలుగు", "ภาษาไทยไม่มีช่องว่าง", "Tiếng Việt có dấu: ạ ả ã ấ ầ ẩ ẫ ậ",
        "Türkçe: ğüşıöç İstanbul", "Polski: zażółć gęślą jaźń", "Čeština: příliš žluťoučký kůň",
        "Deutsch: Größe, Maß, Fußgängerübergänge", "Español: ¿Dónde está la biblioteca? ¡Aquí!",
        "Français : « guillemets » et l’apostrophe", "Português: ação, coração, não",
        "ქართული ენა", "Հայերեն", "አማርኛ", "ᚠᚢᚦᚨᚱᚲ runes", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉", "∀x∈ℝ: x²≥0 ∑∫∂√∞≠≤≥",
        "ℌ𝔢𝔩𝔩𝔬 ⅓ ½ ¾ ² ³ ⁴", "Ⅻ ⅻ ① ② ③ ⑴ ⒈", "𠜎𠜱𠝹𠱓 (CJK extension B)", "ꦗꦮ Javanese", "𓀀𓀁 hieroglyphs",
    ]
    # --- emoji
    s += [
        "😀", "😀😃😄😁", "Hello 👋 world 🌍!", "👍🏻👍🏼👍🏽👍🏾👍🏿", "👨‍👩‍👧‍👦", "👩🏽‍💻 coding",
        "🤷🏽‍♀️", "🏳️‍🌈 🏴‍☠️", "🇺🇸🇬🇧🇯🇵🇩🇪", "#️⃣ 1️⃣ *️⃣", "❤️ ♥ ❤", "🧑‍🤝‍🧑", "🫠🫡🫶 new ones",
        "emoji at end 🎉", "🎉 emoji at start", "🙂" * 10, "a😀b😀c", "🐍 Python and 🦀 Rust",
        "☺ ☻ ✌ ✍ ☝ ✊", "🏻 lone modifier", "\u200d lone zwj \u200d",
    ]
    # --- combining marks
    s += [
        "e\u0301", "cafe\u0301", "n\u0303o", "a\u0300\u0301\u0302\u0303\u0304", "Z̴̡̪̫͖̥̔̿̃̈̏̎a̸̢̧̛̫̹l̷̰̈́g̵̡̈́o̴͔͒",
        "\u0301 leading combining", "Å vs A\u030a", "ﬁ ligature ﬂ", "Ǆ ǅ ǆ", "ḁ̴̵̶",
        "क्षत्रिय", "ﷺ ﷻ", "\u0e01\u0e49\u0e33",
    ]
    # --- whitespace runs
    for k in (2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 32, 40):
        s.append(" " * k)
        s.append("x" + " " * k + "y")
    for k in (2, 3, 4, 10, 31, 32, 40):
        s.append("\n" * k)
        s.append("a" + "\n" * k + "b")
    for k in (2, 3, 8, 31, 33):
        s.append("\t" * k)
        s.append("{\n" + "\t" * k + "x;\n}")
    s += [" \n \n ", "\n \n", " \t \t", "\t \t ", "\r\n\r\n", "\n\r", " \r\n ", "a \n b",
          "a\n\n\tb", "  \n\n  x", "x  \n", "x\n  ", "\u00a0\u00a0nbsp", "a\u3000b", "end with nbsp\u00a0"]
    # --- digits, numbers
    s += ["0123456789", "1234567890123456789012345678901234567890", "3.14159265358979",
          "1,000,000", "1.000.000,00", "$1,234.56", "€99", "£5 ¥1000", "100%", "-273.15°C",
          "2024-01-15T10:30:00Z", "192.168.1.1", "+1 (555) 123-4567", "ISBN 978-3-16-148410-0",
          "1st 2nd 3rd 4th", "x1 y22 z333 w4444", "12abc34def", "٣٤٥ Arabic-Indic", "१२३ Devanagari",
          "①②③ circled", "¹²³ superscript", "½ ⅓ ¼", "0.0001 1e100 6.022e23", "007", "9" * 25,
          "3 + 4 = 7", "2^10=1024", "v1.2.3-beta+build.5"]
    # --- punctuation
    s += ["!!!", "???", "...", "…", "?!?!", "---", "___", "***", "###", "@@@", "$$$", "%%%",
          "^^^", "&&&", "(((", ")))", "[[[]]]", "{{{}}}", "<<<>>>", "|||", "~~~", "```", "'''",
          '"""', ";;;", ":::", ",,,", "//", "/* */", "<!-- -->", "->", "=>", "::", "!=", "==",
          "===", "<=>", "...!?", "¡¿", "«»", "“”‘’", "—–-", "•·", "§¶†‡", "©®™", "←↑→↓",
          "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"]
    # --- URLs
    s += ["https://www.example.com/path/to/page?query=1&other=two#frag",
          "http://localhost:8080/api/v1/users/42", "ftp://files.example.org/pub/file.tar.gz",
          "mailto:someone@example.com", "user.name+tag@sub.domain.co.uk",
          "Visit https://github.com/ggml-org/llama.cpp for more.",
          "www.google.com", "https://例え.jp/パス", "file:///home/user/notes.md",
          "https://en.wikipedia.org/wiki/Byte_pair_encoding",
          "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="]
    # --- special-token text
    s += ["<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n",
          "<|im_start|>system\nYou are a helpful AI assistant named SmolLM<|im_end|>\n",
          "<|im_start|>", "<|im_end|>", "<|endoftext|>", "text<|endoftext|>more text",
          "<|im_start|><|im_end|>", "<|im_start", "im_start|>", "<<|im_start|>>", "<|im_start|>|>",
          "<repo_name>x<file_sep>y<filename>z", "<jupyter_code>print(1)<jupyter_output>1",
          "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
          "<start_of_turn>", "<end_of_turn>", "<bos>", "<eos>", "<pad>", "<unk>", "<mask>",
          "<bos>Hello<eos>", "<start_of_image>", "<start_of_image><end_of_image>", "[multimodal]",
          "<unused0>", "<unused99>", "<unused6241>", "</s>", "<s>", "<s>x</s>", "a</s>b",
          "<0x41>", "<0x0A>", "<b></b>", "<table>\n<tr>", "<start_of_turn", "start_of_turn>",
          "<|eot_id|>", "<end_of_turn><end_of_turn>", " <start_of_turn> ", "\n<start_of_turn>\n",
          "<|im_start|>user\n<start_of_turn>mixed<end_of_turn><|im_end|>"]
    # --- generated mixes (deterministic)
    rng = random.Random(1234)
    pool = [x for x in s if x]
    atoms = [" ", "  ", "\n", "\t", "the", "The", "42", "3.5", "é", "日本", "🙂", "👍🏽", "<|im_end|>",
             "<end_of_turn>", "<b>", "</s>", "'s", "\u200b", "\u00a0", "ab", "XYZ", "?!", "()", "{}",
             "\r\n", "    ", "\t\t", "\ufffd", "ß", "ﬁ", "١٢", "नम", "é", "<", ">", "|", "_", "-"]
    for _ in range(60):
        k = rng.randint(2, 12)
        s.append("".join(rng.choice(atoms) for _ in range(k)))
    for _ in range(30):
        a, b = rng.choice(pool), rng.choice(pool)
        s.append(a + rng.choice(["", " ", "\n", "  "]) + b)
    for _ in range(4):
        s.append("\n".join(rng.choice(pool) for _ in range(40)))
    # de-duplicate, keep order
    seen, out = set(), []
    for x in s:
        if x not in seen:
            seen.add(x)
            out.append(x)
    return out


# Pre-tokenizer variants: SmolLM2's vocabulary and merges re-labelled with
# another tokenizer.ggml.pre, so the other split rules get checked against
# llama.cpp too (the C test builds the same re-labelled vocabulary).
PRE_VARIANTS = ["gpt-2", "llama-bpe", "qwen2", "default"]


def write_variant(src, pre, dst):
    from gguf import GGUFReader, GGUFValueType, GGUFWriter
    r = GGUFReader(src)
    w = GGUFWriter(dst, arch=r.fields["general.architecture"].contents())
    for k, f in r.fields.items():
        if k.startswith("GGUF.") or k == "general.architecture":
            continue
        v = pre if k == "tokenizer.ggml.pre" else f.contents()
        if f.types[0] == GGUFValueType.ARRAY:
            w.add_key_value(k, v, f.types[0], sub_type=f.types[-1])
        else:
            w.add_key_value(k, v, f.types[0])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def variant_goldens(llama_cpp, src, fname, texts, out_dir, version):
    import tempfile
    for pre in PRE_VARIANTS:
        with tempfile.TemporaryDirectory() as td:
            path = os.path.join(td, "variant.gguf")
            write_variant(src, pre, path)
            llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
            lines = [f"# {fname} with tokenizer.ggml.pre = {pre}: llama.cpp ids "
                     f"(llama-cpp-python {version}), generated by tools/goldens/tokenizer_goldens.py",
                     f"model {fname}", f"pre {pre}"]
            for i, text in enumerate(texts):
                lines.append("T " + text.encode("utf-8").hex())
                for f in ((0, 1) if i < 20 else (0,)):
                    ids = llm.tokenize(text.encode("utf-8"), add_bos=bool(f & 1), special=False)
                    lines.append(f"L{f} " + " ".join(map(str, ids)))
            del llm
        name = "smollm2-pre-" + pre + ".txt"
        with open(os.path.join(out_dir, name), "w", encoding="ascii") as fp:
            fp.write("\n".join(lines) + "\n")
        print(f"{name}: {len(texts)} strings")


def fnv1a64(h, data):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def piece_goldens(llama_cpp, llm, name, n_vocab, out_dir, version):
    """llama_token_to_piece for every id: a checksum over all of them (FNV-1a 64
    over each piece as 4-byte little-endian length + bytes, in id order) and
    explicit pieces for the special/byte ids and a deterministic sample."""
    import ctypes
    vocab = llama_cpp.llama_model_get_vocab(llm.model)
    buf = ctypes.create_string_buffer(1 << 16)
    lines = [f"# llama.cpp token pieces (llama-cpp-python {version}) for {name}; "
             f"generated by tools/goldens/tokenizer_goldens.py",
             "# hash <render_special> <n_vocab> <fnv1a64 hex>   P <render_special> <id> <hex piece>"]
    rng = random.Random(99)
    sample = set(rng.randrange(n_vocab) for _ in range(600))
    for sp in (0, 1):
        h = 0xCBF29CE484222325
        for i in range(n_vocab):
            k = llama_cpp.llama_token_to_piece(vocab, i, buf, len(buf), 0, bool(sp))
            piece = buf.raw[:k]
            h = fnv1a64(h, len(piece).to_bytes(4, "little") + piece)
            attr = llama_cpp.llama_vocab_get_attr(vocab, i)
            if i in sample or attr != 4:  # 4 = LLAMA_TOKEN_ATTR_NORMAL
                lines.append(f"P {sp} {i} {piece.hex()}")
        lines.append(f"hash {sp} {n_vocab} {h:016x}")
    eog = [i for i in range(n_vocab) if llama_cpp.llama_vocab_is_eog(vocab, i)]
    lines.append("eog " + " ".join(map(str, eog)))
    with open(os.path.join(out_dir, name + ".pieces"), "w", encoding="ascii") as fp:
        fp.write("\n".join(lines) + "\n")


def read_gguf(path):
    from gguf import GGUFReader
    r = GGUFReader(path)
    md = {}
    for k, f in r.fields.items():
        if k.startswith("tokenizer.") or k == "general.architecture":
            md[k] = f.contents()
    return md


def hf_tokenizer(md, fix_smollm=True):
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        GGUF_TOKENIZER_MAPPING, convert_gguf_tokenizer)
    td = {name: md["tokenizer." + key] for key, name in GGUF_TOKENIZER_MAPPING["tokenizer"].items()
          if "tokenizer." + key in md}
    tok, _ = convert_gguf_tokenizer(md["general.architecture"], td)
    if fix_smollm and md.get("tokenizer.ggml.pre") == "smollm":
        from tokenizers import pre_tokenizers
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    return tok


def hf_encode(tok, text, flags):
    tok.encode_special_tokens = not (flags & 2)
    return tok.encode(text, add_special_tokens=False).ids


def main():
    ap = argparse.ArgumentParser()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap.add_argument("--models", default=os.environ.get("BEAST_MODELS_DIR", os.path.join(root, "models")))
    ap.add_argument("--out", default=os.path.join(root, "tests", "data", "tokenizer"))
    ap.add_argument("--no-llama", action="store_true", help="HF only (no llama-cpp-python)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    texts = corpus()
    try:
        if args.no_llama:
            raise ImportError
        import llama_cpp
        llama_version = getattr(llama_cpp, "__version__", "?")
    except ImportError:
        llama_cpp = None
        llama_version = None
    import tokenizers
    import transformers
    for name, fname in MODELS:
        path = os.path.join(args.models, fname)
        if not os.path.exists(path):
            print(f"{fname}: missing, skipped", file=sys.stderr)
            continue
        md = read_gguf(path)
        hf = hf_tokenizer(md)
        hf_raw = hf_tokenizer(md, fix_smollm=False) if md.get("tokenizer.ggml.pre") == "smollm" else None
        llm = None
        if llama_cpp is not None:
            llm = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        lines = [
            f"# tokenizer goldens for {fname}, generated by tools/goldens/tokenizer_goldens.py",
            f"# references: llama.cpp via llama-cpp-python {llama_version} (L lines); "
            f"HF tokenizers {tokenizers.__version__} via transformers {transformers.__version__} "
            f"GGUF conversion (H lines, only where they differ from L)",
            f"model {fname}",
        ]
        stats = {"cases": 0, "l_vs_h_diff": 0, "raw_hf_diff": 0}
        for i, text in enumerate(texts):
            lines.append("T " + text.encode("utf-8").hex())
            flag_set = (0, 2, 1, 3) if i < 60 else (0, 2)
            for f in flag_set:
                h = hf_encode(hf, text, f) if f in (0, 2) else None
                if llm is not None:
                    l = llm.tokenize(text.encode("utf-8"), add_bos=bool(f & 1), special=bool(f & 2))
                    lines.append(f"L{f} " + " ".join(map(str, l)))
                    if h is not None and h != l:
                        lines.append(f"H{f} " + " ".join(map(str, h)))
                        stats["l_vs_h_diff"] += 1
                    if hf_raw is not None and f in (0, 2) and hf_encode(hf_raw, text, f) != l:
                        stats["raw_hf_diff"] += 1
                elif h is not None:
                    lines.append(f"H{f} " + " ".join(map(str, h)))
                stats["cases"] += 1
        with open(os.path.join(args.out, name + ".txt"), "w", encoding="ascii") as fp:
            fp.write("\n".join(lines) + "\n")
        if llm is not None:
            piece_goldens(llama_cpp, llm, name, len(md["tokenizer.ggml.tokens"]), args.out,
                          llama_version)
        if llama_cpp is not None and md.get("tokenizer.ggml.pre") == "smollm":
            variant_goldens(llama_cpp, path, fname, texts, args.out, llama_version)
        print(f"{name}: {len(texts)} strings, {stats['cases']} id sequences; "
              f"HF differs from llama.cpp in {stats['l_vs_h_diff']}"
              + (f"; unfixed transformers converter differs in {stats['raw_hf_diff']}" if hf_raw else ""))


if __name__ == "__main__":
    main()
