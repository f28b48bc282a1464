#!/usr/bin/env python3
"""template_goldens.py: golden outputs for src/template (Jinja interpreter and
chat templates), rendered by Python's jinja2 configured exactly as HF
transformers does for apply_chat_template.

Writes into tests/data/templates/:
  smollm2.jinja   the chat template stored in models/SmolLM2-135M-Instruct.Q4_1.gguf
  gemma3.jinja    the official Gemma 3 chat template (the GGUF in models/ has none)
  chatml.jinja    a plain ChatML template (our built-in "chatml")
  chat.golden     conversations rendered with those templates through
                  transformers.utils.chat_template_utils.render_jinja_template
  snippets.golden small templates + JSON contexts exercising the interpreter

Golden file format (no JSON needed to read it): a sequence of fields
    <key> <byte length>\n<bytes>\n
A record ends with the field "end" (length 0). Keys:
  chat.golden:     name, template (file name), add_generation_prompt (0/1),
                   bos, eos, then role/content pairs, then expect or error
  snippets.golden: name, opts ("TLK": trim_blocks, lstrip_blocks,
                   keep_trailing_newline as 0/1), template, context (JSON
                   object), then expect or error
An "error" field holds jinja2's message; the C side must fail (-1).

Usage: python3 tools/goldens/template_goldens.py  (from the repository root)
Needs: jinja2 >= 3.1.6, transformers, gguf.
"""
import json
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "data", "templates")

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
import jinja2  # noqa: E402
from gguf import GGUFReader  # noqa: E402
from transformers.utils import chat_template_utils as ctu  # noqa: E402

# The Gemma 3 chat template as published in google/gemma-3-*-it
# tokenizer_config.json ("chat_template"), byte for byte.
GEMMA3_JSON = (
    r'"{{ bos_token }}\n{%- if messages[0][\'role\'] == \'system\' -%}\n    {%- if messages[0]'
    r'[\'content\'] is string -%}\n        {%- set first_user_prefix = messages[0][\'content\']'
    r' + \'\\n\\n\' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]'
    r'[\'content\'][0][\'text\'] + \'\\n\\n\' -%}\n    {%- endif -%}\n    {%- set loop_messages'
    r' = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set '
    r'loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    '
    r'{%- if (message[\'role\'] == \'user\') != (loop.index0 % 2 == 0) -%}\n        {{ raise_'
    r'exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n'
    r'    {%- endif -%}\n    {%- if (message[\'role\'] == \'assistant\') -%}\n        {%- set '
    r'role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message[\'role\'] -%}\n  '
    r'  {%- endif -%}\n    {{ \'<start_of_turn>\' + role + \'\\n\' + (first_user_prefix if '
    r'loop.first else \"\") }}\n    {%- if message[\'content\'] is string -%}\n        {{ '
    r'message[\'content\'] | trim }}\n    {%- elif message[\'content\'] is iterable -%}\n     '
    r'   {%- for item in message[\'content\'] -%}\n            {%- if item[\'type\'] == \'image'
    r'\' -%}\n                {{ \'<start_of_image>\' }}\n            {%- elif item[\'type\'] '
    r'== \'text\' -%}\n                {{ item[\'text\'] | trim }}\n            {%- endif -%}\n'
    r'        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content '
    r'type\") }}\n    {%- endif -%}\n    {{ \'<end_of_turn>\\n\' }}\n{%- endfor -%}\n{%- if '
    r'add_generation_prompt -%}\n    {{\'<start_of_turn>model\\n\'}}\n{%- endif -%}\n"'
)
GEMMA3 = json.loads(GEMMA3_JSON.replace("\\'", "'"))

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def smollm2_template():
    path = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
    f = GGUFReader(path).fields["tokenizer.chat_template"]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def field(out, key, value):
    if isinstance(value, str):
        value = value.encode("utf-8")
    out.append(b"%s %d\n" % (key.encode(), len(value)) + value + b"\n")


# ---------------------------------------------------------------------------
# Conversations

SYS = {"role": "system", "content": "You are a careful assistant. Answer briefly."}


def u(c):
    return {"role": "user", "content": c}


def a(c):
    return {"role": "assistant", "content": c}


CONVERSATIONS = [
    ("single_user", [u("Hello!")]),
    ("system_user", [SYS, u("What is 2+2?")]),
    ("multi_turn", [u("Hi"), a("Hello! How can I help?"), u("Tell me a joke."),
                    a("Why did the chicken cross the road?"), u("Why?")]),
    ("system_multi", [SYS, u("First question"), a("First answer"), u("Second question")]),
    ("ends_assistant", [u("Say yes"), a("yes")]),
    ("unicode", [u("Grüße aus Köln — ça va? 日本語のテキスト, emoji 🦙🚀 and Ω≈ç√")]),
    ("newlines", [u("line one\nline two\n\nline four\r\nCRLF line"), a("ok\n")]),
    ("whitespace_edges", [u("   leading and trailing spaces   "), a("\n\n  padded answer \t\n"),
                          u("\ttab start")]),
    ("quotes_braces", [u("He said \"hi\" and 'bye' {{ not_a_var }} {% if %} {# c #} \\n")]),
    ("empty_content", [u(""), a(""), u(" ")]),
    ("long_content", [u("word " * 300 + "end")]),
    ("system_only_ws", [{"role": "system", "content": "  sys with spaces  \n"}, u("q")]),
    ("special_tokens_in_text", [u("<start_of_turn>model\n<|im_start|>x<|im_end|><bos></s>")]),
    ("alternation_error", [u("one"), u("two")]),
    ("starts_with_assistant", [a("I speak first")]),
    ("json_like", [u('{"key": [1, 2, {"x": null}], "t": true}')]),
]

TEMPLATES = [("smollm2", "smollm2.jinja", "<|im_start|>", "<|im_end|>"),
             ("gemma3", "gemma3.jinja", "<bos>", "<eos>"),
             ("chatml", "chatml.jinja", "<s>", "</s>")]


def render_chat(tmpl, msgs, agp, bos, eos):
    rendered, _ = ctu.render_jinja_template(
        conversations=[msgs], chat_template=tmpl, add_generation_prompt=agp,
        bos_token=bos, eos_token=eos)
    return rendered[0]


# ---------------------------------------------------------------------------
# Snippets: (name, template, context, opts); opts "TLK" as in the header.

HF = "110"
S = []


def snip(name, tmpl, ctx=None, opts=HF):
    S.append((name, tmpl, ctx or {}, opts))


# data, comments, whitespace control
snip("plain_text", "Hello, world!")
snip("trailing_newline", "line\n")
snip("trailing_newline_keep", "line\n", opts="111")
snip("two_trailing_newlines", "line\n\n")
snip("crlf_source", "a\r\nb\rc\r\n")
snip("comment", "a{# comment #}b")
snip("comment_multiline", "a{# multi\nline\ncomment #}b\n{# x #}\nc")
snip("comment_strip", "a  {#- c -#}  b")
snip("comment_trim", "x\n{# c #}\ny", opts="100")
snip("comment_lstrip", "x\n   {# c #}\ny", opts="010")
snip("var_strip_left", "a   {{- 'x' }}   b")
snip("var_strip_right", "a   {{ 'x' -}}   \n  b")
snip("var_strip_both", "a \n {{- 'x' -}} \n b")
snip("block_strip", "a  \n  {%- if true -%}  \n  x  \n  {%- endif -%}  \n  b")
snip("plus_keeps", "  {%+ if true %}x{% endif +%}\ny")
snip("trim_blocks_only", "{% if true %}\nx\n{% endif %}\ny\n", opts="100")
snip("lstrip_blocks_only", "  {% if true %}\n  x\n  {% endif %}\ny", opts="010")
snip("both_off", "  {% if true %}\n  x\n  {% endif %}\ny", opts="000")
snip("both_on", "  {% if true %}\n  x\n  {% endif %}\ny")
snip("lstrip_not_for_vars", "  {{ 'v' }}\n  {% if true %}t{% endif %}")
snip("lstrip_mid_line", "text  {% if true %}x{% endif %}")
snip("lstrip_tabs", "\t\t{% if true %}x\n\t{% endif %}")
snip("trim_only_one_newline", "{% if true %}\n\nx{% endif %}")
snip("raw_block", "{% raw %}{{ not rendered }} {% if %}{% endraw %}")
snip("raw_block_ws", "a\n  {% raw -%}  \n {{ x }}  {%- endraw %}\nb")
snip("unicode_data", "Ünïcödé ✓ 🦙 — {{ '日本' }}")
snip("unicode_ws_strip", "a\u3000\u00a0 {{- 'x' -}} \u2003b")
snip("dict_literal_in_var", "{{ {'a': {'b': 1}} }}")

# literals and printing
snip("print_none_bool", "{{ none }} {{ None }} {{ true }} {{ False }}")
snip("print_numbers", "{{ 42 }} {{ -7 }} {{ 3.5 }} {{ 1e3 }} {{ 1_000 }} {{ 0x1F }} {{ 0o17 }} {{ 0b101 }} {{ 2.5e-3 }}")
snip("print_floats", "{{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ 1/3 }} {{ -0.0 }} {{ 0.1 + 0.2 }} {{ 123456789.125 }} {{ 1e100 }} {{ 5e-324 }}")
snip("print_list", "{{ [1, 'a', none, true, 1.5, [2], {'k': 'v'}] }}")
snip("print_tuple", "{{ (1, 2) }} {{ (1,) }} {{ () }}")
snip("print_dict", "{{ {'a': 1, 'b': 'x', 3: none} }}")
snip("repr_quotes", "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', 'back\\\\slash', 'nl\\n', 'tab\\t', '\\x01'] }}")
snip("repr_unicode", "{{ ['é', '日本', '🦙', '\\u00a0', '\\u2028', '\\x7f'] }}")
snip("string_escapes", "{{ 'a\\nb\\tc\\\\d\\'e\\\"f\\x41\\u00e9\\U0001F600\\101\\d' }}")
snip("string_concat_adjacent", "{{ 'a' \"b\" 'c' }}")
snip("multiline_string", "{{ 'line1\nline2' }}")
snip("print_tuple_expr", "{{ 1, 2 }}")

# variables and context
snip("ctx_vars", "{{ name }} is {{ age }} ({{ score }}) {{ ok }} {{ nothing }}",
     {"name": "Ann", "age": 31, "score": 9.5, "ok": True, "nothing": None})
snip("ctx_nested", "{{ user.name }}/{{ user['tags'][1] }}/{{ user.tags|length }}",
     {"user": {"name": "Bo", "tags": ["a", "b", "c"]}})
snip("ctx_unicode", "{{ s }}|{{ s|length }}", {"s": "héllo wörld 🦙"})
snip("undefined_prints_empty", "[{{ missing }}]")
snip("undefined_attr_error", "{{ missing.attr }}")
snip("undefined_item_error", "{{ missing['k'] }}")
snip("missing_key_is_undefined", "[{{ d.nokey }}][{{ d['nokey'] }}]", {"d": {"a": 1}})
snip("none_attr_undefined", "[{{ n.x }}]", {"n": None})
snip("list_out_of_range", "[{{ l[10] }}][{{ l[-1] }}][{{ l[-10] }}]", {"l": [1, 2, 3]})
snip("dict_method_vs_key", "{{ d['items'] }} {{ d.get('items') }} {{ d.values()|list }}", {"d": {"items": 5, "b": 2}})
snip("attr_int_index", "{{ l.0 }}{{ l.1 }}", {"l": ["x", "y"]})

# operators
snip("arith_int", "{{ 7 + 3 }} {{ 7 - 10 }} {{ 6 * 7 }} {{ 7 / 2 }} {{ 8 / 2 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 % -3 }} {{ 2 ** 10 }} {{ 2 ** -1 }}")
snip("arith_float", "{{ 1.5 + 2 }} {{ 7.5 // 2 }} {{ -7.5 // 2 }} {{ 7.5 % 2 }} {{ -7.5 % 2 }} {{ 2 ** 0.5 }} {{ 10 / 4 }}")
snip("arith_precedence", "{{ 2 + 3 * 4 }} {{ (2 + 3) * 4 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 10 - 2 - 3 }} {{ 100 / 10 / 5 }}")
snip("arith_bool", "{{ true + 1 }} {{ false * 3 }} {{ true / 2 }}")
snip("string_ops", "{{ 'ab' + 'cd' }} {{ 'ab' * 3 }} {{ 3 * 'x' }} {{ 'a' ~ 1 ~ none ~ true ~ [1] }}")
snip("concat_undefined", "{{ 'a' ~ missing ~ 'b' }}")
snip("concat_precedence_error", "{{ 1 + 2 ~ 3 }}")
snip("list_ops", "{{ [1, 2] + [3] }} {{ [0] * 3 }} {{ (1,) + (2,) }}")
snip("compare", "{{ 1 < 2 }} {{ 2 <= 2 }} {{ 3 > 4 }} {{ 'a' < 'b' }} {{ 'B' < 'a' }} {{ [1, 2] < [1, 3] }} {{ 1 == 1.0 }} {{ 1 != 1 }} {{ true == 1 }}")
snip("compare_chain", "{{ 1 < 2 < 3 }} {{ 1 < 3 < 2 }} {{ 3 > 2 == 2 }}")
snip("compare_types_error", "{{ 1 < 'a' }}")
snip("equality_types", "{{ 'a' == 'a' }} {{ [1] == [1] }} {{ {'a': 1} == {'a': 1} }} {{ none == none }} {{ '1' == 1 }} {{ [1] == (1,) }}")
snip("in_operator", "{{ 'a' in 'cat' }} {{ 'x' in 'cat' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 3 not in [1, 2] }} {{ '' in 'abc' }} {{ 'a' in missing }}")
snip("in_none_error", "{{ 'a' in none }}")
snip("in_int_str_error", "{{ 1 in 'abc' }}")
snip("logic", "{{ true and false }} {{ true or false }} {{ not true }} {{ not 0 }} {{ 0 or 'x' }} {{ 'a' and 'b' }} {{ '' and 'b' }} {{ none or [] }}")
snip("logic_precedence", "{{ not 1 == 2 }} {{ true or false and false }} {{ not true or true }}")
snip("ternary", "{{ 'yes' if 1 > 0 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'x' if false }}] {{ 'a' if false else 'b' if true else 'c' }}")
snip("unary", "{{ -x }} {{ +x }} {{ -(-3) }} {{ - 2.5 }}", {"x": 4})
snip("truthiness", "{% for v in [0, 1, '', 'a', [], [0], {}, none, 0.0] %}{{ 'T' if v else 'F' }}{% endfor %}")
snip("div_zero_error", "{{ 1 / 0 }}")
snip("mod_zero_error", "{{ 1 % 0 }}")
snip("add_str_int_error", "{{ 'a' + 1 }}")
snip("add_undefined_error", "{{ 'a' + missing }}")

# subscripts and slices
snip("slices_list", "{{ l[1:] }} {{ l[:2] }} {{ l[::2] }} {{ l[::-1] }} {{ l[-2:] }} {{ l[1:-1] }} {{ l[5:] }} {{ l[-100:2] }} {{ l[3:1:-1] }}", {"l": [0, 1, 2, 3, 4]})
snip("slices_str", "{{ s[1:3] }}|{{ s[::-1] }}|{{ s[-3:] }}|{{ s[0] }}|{{ s[-1] }}|{{ s[::2] }}", {"s": "héllo🦙"})
snip("slice_step_zero_error", "{{ [1,2][::0] }}")
snip("messages_slice", "{% for m in messages[1:] %}{{ m.role }};{% endfor %}", {"messages": [{"role": "system"}, {"role": "user"}, {"role": "assistant"}]})

# if / for
snip("if_elif_else", "{% for x in [1, 2, 3, 4] %}{% if x == 1 %}one{% elif x == 2 %}two{% elif x == 3 %}three{% else %}many{% endif %} {% endfor %}")
snip("nested_if", "{% if a %}{% if b %}ab{% else %}a{% endif %}{% endif %}", {"a": True, "b": False})
snip("for_loop_vars", "{% for x in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }};{% endfor %}")
snip("for_prev_next", "{% for x in [1, 2, 3] %}({{ loop.previtem }},{{ loop.nextitem }}){% endfor %}")
snip("for_cycle", "{% for x in range(5) %}{{ loop.cycle('a', 'b', 'c') }}{% endfor %}")
snip("for_else", "{% for x in [] %}x{% else %}empty{% endfor %}|{% for x in [1] %}{{ x }}{% else %}empty{% endfor %}")
snip("for_else_undefined", "{% for x in missing %}x{% else %}none here{% endfor %}")
snip("for_filter", "{% for x in range(10) if x is odd %}{{ x }}{{ loop.length }},{% endfor %}")
snip("for_dict", "{% for k in d %}{{ k }}={{ d[k] }};{% endfor %}", {"d": {"z": 1, "a": 2, "m": 3}})
snip("for_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}", {"d": {"z": 1, "a": 2}})
snip("for_unpack_tuple", "{% for (a, b) in [[1, 2], [3, 4]] %}{{ a + b }} {% endfor %}")
snip("for_unpack_error", "{% for a, b in [[1, 2, 3]] %}{% endfor %}")
snip("for_nested_loop", "{% for i in range(3) %}{% for j in range(i) %}{{ i }}{{ j }}{{ loop.index }} {% endfor %}{{ loop.index }}|{% endfor %}")
snip("for_break_continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}")
snip("for_string", "{% for c in 'h🦙é' %}[{{ c }}]{% endfor %}")
snip("for_none_error", "{% for x in none %}{% endfor %}")
snip("for_int_error", "{% for x in 5 %}{% endfor %}")
snip("for_scope", "{% set x = 1 %}{% for i in [1, 2] %}{{ x }}{% set x = i * 10 %}{{ x }};{% endfor %}{{ x }}")
snip("for_scope_no_leak", "{% for i in [1] %}{% set y = 5 %}{% endfor %}[{{ y }}][{{ i }}]")
snip("if_scope_leaks", "{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}")
snip("loop_in_loop_outer", "{% for a in [1, 2] %}{% set outer = loop %}{% for b in [3, 4] %}{{ outer.index }}{{ loop.index }} {% endfor %}{% endfor %}")
snip("range_variants", "{{ range(3)|list }} {{ range(2, 5)|list }} {{ range(10, 0, -3)|list }} {{ range(0)|list }} {{ range(5, 2)|list }}")
snip("range_too_big_error", "{% for i in range(1000000) %}{% endfor %}")

# set, namespace, with
snip("set_basic", "{% set a = 1 %}{% set b = a + 1 %}{{ a }}{{ b }}")
snip("set_tuple", "{% set a, b = 1, 2 %}{{ a }}{{ b }}{% set c, d = [3, 4] %}{{ c }}{{ d }}")
snip("set_tuple_value", "{% set t = 1, 2 %}{{ t }}")
snip("set_block", "{% set block %}  hello {{ name }}  {% endset %}[{{ block }}]", {"name": "X"})
snip("set_block_filter", "{% set block | upper | trim %}  hello  {% endset %}[{{ block }}]")
snip("namespace", "{% set ns = namespace(count=0, found=false) %}{% for i in range(5) %}{% set ns.count = ns.count + i %}{% if i == 3 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.count }} {{ ns.found }} {{ ns['count'] }}")
snip("namespace_new_attr", "{% set ns = namespace() %}{% set ns.x = 'v' %}{{ ns.x }}{{ ns.y }}")
snip("namespace_underscore_error", "{% set ns = namespace() %}{% set ns._x = 1 %}")
snip("setattr_non_namespace_error", "{% set d = {} %}{% set d.x = 1 %}")
snip("namespace_from_dict", "{% set ns = namespace({'a': 1}, b=2) %}{{ ns.a }}{{ ns.b }}")
snip("with_block", "{% set x = 1 %}{% with x = 2, y = x %}{{ x }}{{ y }}{% endwith %}{{ x }}")
snip("generation_block", "{% generation %}gen {{ 1 }}{% endgeneration %}!")

# macros
snip("macro_basic", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', 'Hi') }} {{ greet(greeting='Yo', name='Cy') }}")
snip("macro_missing_arg", "{% macro m(a, b) %}[{{ a }}|{{ b }}]{% endmacro %}{{ m(1) }}")
snip("macro_too_many_error", "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(1, 2) }}")
snip("macro_bad_kwarg_error", "{% macro m(a) %}{{ a }}{% endmacro %}{{ m(b=2) }}")
snip("macro_varargs", "{% macro m(a) %}{{ a }}{{ varargs }}{{ kwargs }}{% endmacro %}{{ m(1, 2, 3, k=4) }}")
snip("macro_scope", "{% set x = 1 %}{% macro m() %}{{ x }}{% set x = 5 %}{{ x }}{% endmacro %}{% set x = 2 %}{{ m() }}{{ x }}")
snip("macro_recursive", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(6) }}")
snip("macro_default_uses_arg", "{% macro m(a, b=a * 2) %}{{ a }},{{ b }}{% endmacro %}{{ m(3) }}")
snip("macro_in_expression", "{% macro tag(x) %}<{{ x }}>{% endmacro %}{{ tag('a') ~ tag('b') }}{{ tag('c')|length }}")
snip("filter_block", "{% filter upper %}hello {{ 'world' }}{% endfilter %}")
snip("filter_block_chain", "{% filter trim|replace('a', 'o') %}   banana   {% endfilter %}.")

# filters
snip("f_trim", "[{{ '  x y  '|trim }}][{{ 'xxaxx'|trim('x') }}][{{ '\\u3000\\tz\\n'|trim }}][{{ none|trim }}][{{ missing|trim }}]")
snip("f_case", "{{ 'Hello World'|upper }} {{ 'Hello World'|lower }} {{ 'hello wORLD'|capitalize }} {{ 'hello world-foo (bar [baz <q'|title }} {{ 'ÉCOLE ß'|lower }} {{ 'straße'|upper }}")
snip("f_length", "{{ 'héllo'|length }} {{ [1, 2]|length }} {{ {'a': 1}|length }} {{ missing|length }} {{ 'x'|count }}")
snip("f_length_int_error", "{{ 5|length }}")
snip("f_tojson", "{{ data|tojson }}", {"data": {"s": "é\"\\\n\t\u0001<>&'", "n": [1, 2.5, None, True, False], "e": {}, "l": [], "u": "🦙"}})
snip("f_tojson_indent", "{{ data|tojson(indent=2) }}|{{ data|tojson(indent=0) }}|{{ [1, [2, {}], []]|tojson(indent=1) }}", {"data": {"a": 1, "b": [1, {"c": None}]}})
snip("f_tojson_opts", "{{ d|tojson(sort_keys=true) }} {{ d|tojson(ensure_ascii=true) }} {{ d|tojson(separators=(',', ':')) }}", {"d": {"z": "é🦙", "a": [1, 2]}})
snip("f_tojson_literals", "{{ 'x'|tojson }} {{ 1.0|tojson }} {{ none|tojson }} {{ {1: 'a', true: 'b', none: 'c', 2.5: 'd'}|tojson }} {{ (1, 2)|tojson }}")
snip("f_tojson_undefined_error", "{{ missing|tojson }}")
snip("f_string_int_float", "{{ 5|string }}{{ none|string }}{{ [1]|string }} {{ '42'|int }} {{ 3.9|int }} {{ '3.9'|int }} {{ ' 12 '|int }} {{ '1_000'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ none|int }} {{ '0x1A'|int(0, 16) }} {{ '1e3'|int }} {{ true|int }}")
snip("f_float", "{{ '1.5'|float }} {{ 2|float }} {{ 'x'|float }} {{ 'inf'|float }} {{ ' -2e-3 '|float }} {{ none|float(1.5) }}")
snip("f_join", "{{ [1, 'a', none]|join }} {{ ['a', 'b']|join(', ') }} {{ users|join('/', attribute='name') }} {{ 'abc'|join('-') }}", {"users": [{"name": "x"}, {"name": "y"}]})
snip("f_replace", "{{ 'aaa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 2) }} {{ 'abc'|replace('', '-') }} {{ 'héé'|replace('é', 'e') }}")
snip("f_default", "{{ missing|default('dflt') }} {{ none|default('dflt') }} {{ ''|default('dflt') }} {{ ''|default('dflt', true) }} {{ 0|d('z', boolean=true) }} [{{ missing|default }}]")
snip("f_first_last", "{{ [1, 2, 3]|first }} {{ [1, 2, 3]|last }} {{ 'abc'|first }} {{ 'abc'|last }} [{{ []|first }}] {{ {'a': 1, 'b': 2}|first }} {{ {'a': 1, 'b': 2}|last }}")
snip("f_items_list", "{{ {'a': 1, 'b': [2]}|items|list }} {{ 'ab'|list }} {{ {'a': 1}|list }} {{ (1, 2)|list }}")
snip("f_items_error", "{{ [1]|items|list }}")
snip("f_selectattr", "{{ msgs|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }}|{{ msgs|rejectattr('role', '==', 'user')|list|length }}|{{ msgs|selectattr('tool')|list|length }}",
     {"msgs": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "tool": 1}, {"role": "user", "content": "c"}]})
snip("f_select_reject", "{{ range(10)|select('odd')|list }} {{ range(10)|reject('even')|list }} {{ [0, 1, '', 'a']|select|list }} {{ range(10)|select('divisibleby', 3)|list }} {{ [1, 5, 9]|select('>', 4)|list }}")
snip("f_map", "{{ ['a', 'b']|map('upper')|list }} {{ users|map(attribute='name')|list }} {{ users|map(attribute='age', default=0)|list }} {{ [1.5, 2.5]|map('int')|list }} {{ ['a,b', 'c']|map('replace', ',', ';')|list }}",
     {"users": [{"name": "x", "age": 3}, {"name": "y"}]})
snip("f_map_nested_attr", "{{ items|map(attribute='a.b')|list }} {{ items|map(attribute='l.0')|list }}", {"items": [{"a": {"b": 1}, "l": [9]}, {"a": {"b": 2}, "l": [8]}]})
snip("f_sort", "{{ [3, 1, 2]|sort }} {{ ['b', 'A', 'c']|sort }} {{ ['b', 'A', 'c']|sort(case_sensitive=true) }} {{ [3, 1, 2]|sort(reverse=true) }} {{ users|sort(attribute='age')|map(attribute='n')|join }} {{ users|sort(attribute='age,n')|map(attribute='n')|join }}",
     {"users": [{"n": "a", "age": 3}, {"n": "b", "age": 1}, {"n": "c", "age": 3}, {"n": "d", "age": 1}]})
snip("f_sort_mixed_error", "{{ [1, 'a']|sort }}")
snip("f_unique_minmax_sum", "{{ ['a', 'A', 'b', 'a']|unique|list }} {{ [3, 1, 2]|min }} {{ [3, 1, 2]|max }} {{ ['b', 'A', 'c']|max }} {{ [1, 2, 3]|sum }} {{ users|sum(attribute='x') }} {{ [[1], [2]]|sum(start=[]) }} [{{ []|max }}]",
     {"users": [{"x": 1}, {"x": 2.5}]})
snip("f_reverse", "{{ 'abc'|reverse }} {{ [1, 2, 3]|reverse|list }} {{ 'h🦙é'|reverse }}")
snip("f_round_abs", "{{ 2.5|round }} {{ 3.5|round }} {{ 2.675|round(2) }} {{ 3|round }} {{ 2.1|round(0, 'ceil') }} {{ 2.9|round(1, 'floor') }} {{ -3|abs }} {{ -2.5|abs }} {{ -1234.5678|round(-2) }}")
snip("f_indent", "{{ 'a\\nb\\n\\nc'|indent }}|{{ 'a\\nb'|indent(2, true) }}|{{ 'a\\n\\nb'|indent(2, blank=true) }}|{{ 'x\\ny'|indent('> ') }}")
snip("f_center_wordcount", "[{{ 'abc'|center(9) }}][{{ 'abc'|center(8) }}] {{ 'hello big_world, foo-bar 42'|wordcount }}")
snip("f_escape", "{{ '<a href=\"x\">&\\'</a>'|e }} {{ 'plain'|escape }}")
snip("f_dictsort", "{{ {'b': 1, 'A': 3, 'c': 2}|dictsort }} {{ {'b': 1, 'a': 3, 'c': 2}|dictsort(by='value') }} {{ {'b': 1, 'a': 3}|dictsort(reverse=true) }}")
snip("f_attr", "{% set ns = namespace(x=5) %}{{ ns|attr('x') }} [{{ {'x': 1}|attr('x') }}] {{ {'x': 1}|attr('items') is defined }}")
snip("f_unknown_error", "{{ 'x'|no_such_filter }}")
snip("f_unknown_in_if_not_run", "{% if x %}{{ x|no_such_filter }}{% endif %}ok", {"x": False})
snip("f_unknown_in_if_run_error", "{% if x %}{{ x|no_such_filter }}{% endif %}ok", {"x": True})
snip("f_unknown_in_ternary", "{{ x|nope if false else 'a' }}{{ 'b' if x is nope else 'c' }}", {"x": 0})
snip("f_unknown_in_ternary_run_error", "{{ 'a' if false else x|nope }}")
snip("f_unknown_in_if_loop_error", "{% if false %}{% for i in [1] %}{{ i|nope }}{% endfor %}{% endif %}")
snip("f_unknown_in_if_macro_error", "{% if false %}{% macro m() %}{{ 1|nope }}{% endmacro %}{% endif %}")
snip("f_unknown_in_loop_iter", "{% if false %}{% for i in x|nope %}{% endfor %}{% endif %}ok")
snip("t_unknown_in_if", "{% if x is nope %}y{% endif %}")
snip("filter_chain_args", "{{ '  Hello World  '|trim|lower|replace('world', 'there')|upper }}")
snip("filter_on_expression", "{{ (1 + 2)|string ~ '!' }} {{ -1|abs }} {{ [3, 1]|sort|first }}")

# tests
snip("t_defined", "{{ x is defined }} {{ missing is defined }} {{ missing is undefined }} {{ n is none }} {{ n is not none }} {{ x is not defined }}", {"x": 1, "n": None})
snip("t_types", "{{ 'a' is string }} {{ 1 is string }} {{ 1 is number }} {{ 1.5 is number }} {{ true is number }} {{ 1 is integer }} {{ true is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ 0 is boolean }}")
snip("t_containers", "{{ {} is mapping }} {{ [] is mapping }} {{ [] is iterable }} {{ 'a' is iterable }} {{ 1 is iterable }} {{ {} is iterable }} {{ [] is sequence }} {{ 'a' is sequence }} {{ 1 is sequence }} {{ missing is iterable }}")
snip("t_true_false", "{{ true is true }} {{ 1 is true }} {{ false is false }} {{ 0 is false }} {{ '' is false }} {{ none is false }}")
snip("t_numbers", "{{ 3 is odd }} {{ 3 is even }} {{ 9 is divisibleby 3 }} {{ 10 is divisibleby(3) }} {{ 2 is eq 2 }} {{ 2 is ne 2 }} {{ 1 is lt 2 }} {{ 3 is gt 2 }} {{ 3 is ge 3 }} {{ 3 is le 2 }} {{ 2 is in [1, 2] }} {{ 'a' is in 'xyz' }}")
snip("t_strings", "{{ 'abc' is lower }} {{ 'aBc' is lower }} {{ 'ABC' is upper }} {{ 'upper' is filter }} {{ 'nope' is filter }} {{ 'odd' is test }} {{ f is callable }}", {"f": 1})
snip("t_sameas", "{{ none is sameas none }} {{ true is sameas true }} {{ 1 is sameas true }}")
snip("t_in_conditions", "{% if messages[0]['role'] == 'system' and messages[0]['content'] is string %}S{% endif %}{% if x is defined and x %}X{% endif %}{{ 'a' if y is defined else 'b' }}", {"messages": [{"role": "system", "content": "c"}], "x": 0})
snip("t_unknown_error", "{{ 1 is no_such_test }}")

# methods
snip("m_strip", "[{{ '  a  '.strip() }}][{{ '  a  '.lstrip() }}][{{ '  a  '.rstrip() }}][{{ 'xxaxx'.strip('x') }}][{{ '\\n\\ta\\u3000'.strip() }}]")
snip("m_split", "{{ 'a,b,,c'.split(',') }} {{ ' a  b \\n c '.split() }} {{ 'a b c'.split(none, 1) }} {{ 'a,b,c'.split(',', 1) }} {{ 'a,b,c'.rsplit(',', 1) }} {{ ' a b c '.rsplit(none, 1) }} {{ ''.split() }} {{ ''.split(',') }}")
snip("m_split_empty_sep_error", "{{ 'abc'.split('') }}")
snip("m_startswith", "{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }} {{ 'hello'.endswith('x') }} {{ ''.startswith('') }}")
snip("m_case", "{{ 'hello world'.upper() }} {{ 'HeLLo'.lower() }} {{ \"they're bill's friends\".title() }} {{ 'hELLO wORLD'.capitalize() }} {{ 'AbC'.swapcase() }} {{ '1st place'.title() }}")
snip("m_replace_find", "{{ 'aaa'.replace('a', 'b', 2) }} {{ 'hello'.find('l') }} {{ 'hello'.rfind('l') }} {{ 'hello'.find('z') }} {{ 'héllo'.find('l') }} {{ 'a-b-c'.count('-') }} {{ 'hello'.index('e') }}")
snip("m_misc_str", "{{ '-'.join(['a', 'b']) }} {{ 'ab'.center(6, '*') }} {{ 'ab'.ljust(4, '.') }}| {{ 'ab'.rjust(4) }} {{ 'prefix_x'.removeprefix('prefix_') }} {{ 'x.txt'.removesuffix('.txt') }} {{ '123'.isdigit() }} {{ 'abc'.isalpha() }} {{ ' '.isspace() }} {{ 'a\\nb\\r\\nc'.splitlines() }}")
snip("m_dict", "{{ d.get('a') }} {{ d.get('zz') }} {{ d.get('zz', 'dflt') }} {{ d.keys()|list }} {{ d.values()|list }} {{ d.items()|list }}", {"d": {"a": 1, "b": 2}})
snip("m_list", "{{ l.count(1) }} {{ l.index(2) }}", {"l": [1, 2, 1]})
snip("m_unsafe_attr", "[{{ l.append }}][{{ d.update }}]{% if l.append %}T{% else %}F{% endif %}", {"l": [1], "d": {}})
snip("m_unsafe_call_error", "{{ l.append(2) }}", {"l": [1]})
snip("m_on_undefined_error", "{{ missing.strip() }}")
snip("call_undefined_error", "{{ nofunc() }}")
snip("call_non_callable_error", "{{ x() }}", {"x": 1})

# call blocks, argument expansion
snip("call_block", "{% macro box(title) %}[{{ title }}: {{ caller() }}]{% endmacro %}{% call box('T') %}inner {{ 1 + 1 }}{% endcall %}")
snip("call_block_args", "{% macro each(items) %}{% for i in items %}{{ caller(i, loop.index) }}{% endfor %}{% endmacro %}{% call(x, n) each(['a', 'b']) %}{{ n }}={{ x }};{% endcall %}")
snip("call_block_scope", "{% set outer = 'O' %}{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% for v in [1, 2] %}{% call wrap() %}{{ outer }}{{ v }}{% endcall %}{% endfor %}")
snip("caller_undefined", "{% macro m() %}[{{ caller is defined }}]{% endmacro %}{{ m() }}")
snip("call_block_no_caller_error", "{% macro m() %}x{% endmacro %}{% call m() %}body{% endcall %}")
snip("call_star_args", "{% macro m(a, b, c='z') %}{{ a }}{{ b }}{{ c }}{% endmacro %}{{ m(*[1, 2]) }} {{ m(1, *[2, 3]) }} {{ m(**{'a': 'x', 'b': 'y'}) }} {{ m(1, **{'c': 'w', 'b': 2}) }} {{ range(*[1, 4])|list }}")
snip("call_kwargs_dup_error", "{% macro m(a) %}{% endmacro %}{{ m(a=1, **{'a': 2}) }}")

# printf-style formatting
snip("percent_format", "{{ '%s and %s' % ('a', 1) }}|{{ '%d%%' % 50 }}|{{ '%5.2f|%-6s|%05d|%x|%#o|%+d|%e|%g' % (3.14159, 'ab', 42, 255, 8, 7, 12345.678, 0.0001) }}|{{ '%(name)s is %(age)d' % {'name': 'Ann', 'age': 30} }}|{{ '%r %c %c' % ('q', 65, 'z') }}|{{ '%*d|%.*f' % (5, 42, 2, 2.5) }}")
snip("percent_single_values", "{{ '%s' % [1, 2] }}|{{ '%s' % none }}|{{ 'x' % [] }}|{{ 'x' % {} }}|{{ '%.3s' % 'abcdef' }}|{{ '%d' % 3.9 }}|{{ '%d' % 1e20 }}")
snip("percent_too_many_error", "{{ '%s' % (1, 2) }}")
snip("percent_too_few_error", "{{ '%s %s' % ('a',) }}")
snip("percent_bad_type_error", "{{ '%d' % 'x' }}")
snip("f_format", "{{ '%s-%s'|format('a', 'b') }} {{ '%(x)s!'|format(x=5) }} {{ '%.1f'|format(2.25) }}")

# more str methods
snip("m_more_str", "{{ '42'.zfill(5) }} {{ '-42'.zfill(5) }} {{ 'a=b=c'.partition('=') }} {{ 'a=b=c'.rpartition('=') }} {{ 'abc'.partition('x') }} {{ 'Straße'.casefold() }} {{ 'a\tbc\td'.expandtabs(4) }} {{ 'Hello World'.istitle() }} {{ 'hello World'.istitle() }} {{ 'x_1'.isidentifier() }} {{ '1x'.isidentifier() }} {{ 'ab\n'.isprintable() }}")

# more loops and containers
snip("for_filter_unpack", "{% for k, v in [[1, 2], [3, 4], [5, 6]] if k > 1 %}{{ loop.previtem }}|{{ k }}{{ v }};{% endfor %}")
snip("in_dict_unhashable_error", "{{ [1] in {'a': 1} }}")
snip("comment_at_eof", "text {#")
snip("comment_at_eof_strip", "text  \n  {#-")
snip("raw_at_eof", "x{% raw %}")
snip("f_center_nonstring", "[{{ 5|center(5) }}][{{ none|center(6) }}][{{ [1]|center(5) }}]")
snip("f_sort_undefined_keys", "{{ 'cab'|sort(attribute='nope')|join }} {{ [{'a': 2}, {'b': 1}, {'a': 1}]|sort(attribute='x')|list|length }}")

# globals
snip("raise_exception", "{{ raise_exception('Custom failure: ' ~ 42) }}")
snip("raise_exception_in_branch", "{% if x > 1 %}{{ raise_exception('too big') }}{% endif %}ok", {"x": 1})
snip("dict_global", "{{ dict(a=1, b='x') }} {{ dict([['k', 'v']]) }}")

# syntax errors
snip("err_unclosed_if", "{% if true %}x")
snip("err_unclosed_for", "{% for x in y %}x{% else %}")
snip("err_unclosed_var", "{{ x ")
snip("err_unclosed_comment", "a {# comment")
snip("err_unknown_tag", "{% frobnicate %}")
snip("err_endfor_without_for", "{% endfor %}")
snip("err_bad_expr", "{{ 1 + }}")
snip("err_unbalanced", "{{ (1 + 2 }}")
snip("err_unexpected_close", "{{ 1 ) }}")
snip("err_break_outside_loop", "{% break %}")
snip("err_empty_var", "{{ }}")
snip("err_trailing_tokens", "{% if true false %}{% endif %}")
snip("err_unterminated_string", "{{ 'abc }}")
snip("err_set_no_value", "{% set %}")
snip("err_elif_after_else", "{% if a %}{% else %}{% elif b %}{% endif %}")
snip("err_macro_default_order", "{% macro m(a=1, b) %}{% endmacro %}")
snip("err_bad_escape", "{{ '\\x4' }}")
snip("err_tag_name_missing", "{% 1 %}")
snip("err_slice_in_tuple_subscript", "{{ l[1:2, 0] }}", {"l": [1, 2, 3]})
snip("tuple_subscript", "[{{ d[1, 2] }}][{{ l[0, 1] }}]", {"d": {}, "l": [1, 2]})

# realistic chat-template-like programs
LLAMA3_LIKE = """{{- bos_token }}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Tools:\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- for message in messages %}
    {%- if message.role in ['user', 'assistant'] %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif message.role == 'tool' %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable and message.content is not string %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""
QWEN_LIKE = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(last_user=-1) %}
{%- for m in messages %}{% if m.role == 'user' %}{% set ns.last_user = loop.index0 %}{% endif %}{% endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{{- 'last user at ' ~ ns.last_user ~ '\\n' }}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""
MISTRAL_LIKE = """{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{- raise_exception('After the optional system message, conversation roles must alternate user/assistant/user/assistant/...') }}
    {%- endif %}
    {%- if message['role'] == 'user' %}
        {%- if loop.first and system_message is defined %}
            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + ' [/INST]' }}
        {%- else %}
            {{- ' [INST] ' + message['content'] + ' [/INST]' }}
        {%- endif %}
    {%- elif message['role'] == 'assistant' %}
        {{- ' ' + message['content'] + eos_token}}
    {%- else %}
        {{- raise_exception('Only user and assistant roles are supported, with the exception of an initial optional system message!') }}
    {%- endif %}
{%- endfor %}
"""
TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather for a city, in °C",
          "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer", "default": 1}},
                         "required": ["city"]}}}]
CHAT_CTX = {"bos_token": "<s>", "eos_token": "</s>", "add_generation_prompt": True, "tools": None,
            "messages": [{"role": "system", "content": "  Be nice.  "}, {"role": "user", "content": "Hi 🦙"},
                         {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Weather?"}]}
snip("prog_llama3_like", LLAMA3_LIKE, CHAT_CTX)
snip("prog_llama3_like_tools", LLAMA3_LIKE, dict(CHAT_CTX, tools=TOOLS))
snip("prog_qwen_like", QWEN_LIKE, dict(CHAT_CTX, tools=TOOLS, messages=CHAT_CTX["messages"] + [
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Köln"}}}]},
    {"role": "tool", "content": "{\"temp\": 21}"}, {"role": "tool", "content": "second"}]))
snip("prog_qwen_like_notools", QWEN_LIKE, dict(CHAT_CTX, tools=None, messages=CHAT_CTX["messages"] + [
    {"role": "assistant", "content": "x", "tool_calls": []}]))
snip("prog_mistral_like", MISTRAL_LIKE, CHAT_CTX)
snip("prog_mistral_like_error", MISTRAL_LIKE, dict(CHAT_CTX, messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]))
snip("prog_llama3_like_plain_opts", LLAMA3_LIKE, CHAT_CTX, opts="000")


# ---------------------------------------------------------------------------

def hf_env():
    return ctu._compile_jinja_template("x").environment


def render_snippet(env, src, ctx, opts):
    if opts == HF:
        tmpl = ctu._cached_compile_jinja_template(src)
    else:
        e = env.overlay(trim_blocks=opts[0] == "1", lstrip_blocks=opts[1] == "1",
                        keep_trailing_newline=opts[2] == "1")
        tmpl = e.from_string(src)
    return tmpl.render(**ctx)


def main():
    if tuple(int(x) for x in jinja2.__version__.split(".")[:3]) < (3, 1, 6):
        sys.exit("need jinja2 >= 3.1.6 (as transformers does)")
    os.makedirs(OUT, exist_ok=True)
    files = {"smollm2.jinja": smollm2_template(), "gemma3.jinja": GEMMA3, "chatml.jinja": CHATML}
    for name, text in files.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(text.encode("utf-8"))

    out, n_ok, n_err = [], 0, 0
    for tname, tfile, bos, eos in TEMPLATES:
        for cname, msgs in CONVERSATIONS:
            for agp in (False, True):
                field(out, "name", f"{tname}/{cname}/agp{int(agp)}")
                field(out, "template", tfile)
                field(out, "add_generation_prompt", "1" if agp else "0")
                field(out, "bos", bos)
                field(out, "eos", eos)
                for m in msgs:
                    field(out, "role", m["role"])
                    field(out, "content", m["content"])
                try:
                    field(out, "expect", render_chat(files[tfile], msgs, agp, bos, eos))
                    n_ok += 1
                except Exception as e:  # jinja2 raised: the C side must fail too
                    field(out, "error", f"{type(e).__name__}: {e}")
                    n_err += 1
                field(out, "end", "")
    with open(os.path.join(OUT, "chat.golden"), "wb") as f:
        f.write(b"".join(out))
    print(f"chat.golden: {n_ok} renders, {n_err} errors")

    env = hf_env()
    out, n_ok, n_err, names = [], 0, 0, set()
    for name, src, ctx, opts in S:
        assert name not in names, name
        names.add(name)
        field(out, "name", name)
        field(out, "opts", opts)
        field(out, "template", src)
        field(out, "context", json.dumps(ctx, ensure_ascii=False))
        try:
            field(out, "expect", render_snippet(env, src, ctx, opts))
            n_ok += 1
        except Exception as e:
            field(out, "error", f"{type(e).__name__}: {e}")
            n_err += 1
        field(out, "end", "")
    with open(os.path.join(OUT, "snippets.golden"), "wb") as f:
        f.write(b"".join(out))
    print(f"snippets.golden: {n_ok} renders, {n_err} errors")


if __name__ == "__main__":
    main()
