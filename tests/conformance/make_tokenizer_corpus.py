#!/usr/bin/env python3
"""tests/conformance/make_tokenizer_corpus.py: writes tests/fixtures/tokenizer/corpus.jsonl, the
varied text corpus the tokenizer golden ids are generated from (one JSON string per line).
Hand-written cases by category, then seeded random strings drawn from tricky character pools.
Deterministic: re-running it rewrites the same file. Usage: make_tokenizer_corpus.py [OUT]"""
import json
import random
import sys

CAPTIONS = [
    "A man riding a wave on top of a surfboard.",
    "Two dogs playing with a frisbee in a grassy park.",
    "A plate of food with broccoli, rice and a fork.",
    "A red double-decker bus driving down a city street.",
    "A cat sitting on a laptop keyboard next to a cup of coffee.",
    "Several people standing around a kitchen island preparing dinner.",
    "An old black and white photo of a train station in 1920.",
    "A giraffe eating leaves from the top of a tall tree.",
    "The kitchen is clean and ready for us to see.",
    "a group of skiers  on a snowy mountain slope",
    "A BOWL OF FRUIT ON A WOODEN TABLE",
    "A woman's hand holding a smartphone showing a map.",
    "A stop sign that's been vandalized with stickers.",
    "Close-up of a pizza with pepperoni, olives & mushrooms!",
    "Is this a hot-dog? Yes... it's a hot-dog (with mustard).",
    "An aerial view of New York City's skyline at dusk — beautiful.",
    "A child flies a kite on the beach; the sky is blue.",
    "\"Welcome home\" written on a chalkboard by the door.",
    "A 3-year-old boy wearing a #23 jersey holds a baseball bat.",
    "Bananas, apples and oranges; 12 pieces in total.",
    "A close up of a sandwich on a plate ",
    " A sandwich with leading space.",
    "Motorcycle parked near the café on Rue de l'Église.",
    "The zebra (Equus quagga) grazes near a watering hole.",
    "Elephants walk through tall grass at 5:30 p.m.",
    "Snowboarder mid-air doing a 540° spin.",
    "Twenty-five cents ($0.25) for a cup of lemonade.",
    "A tennis player swinging his racket at the U.S. Open.",
    "Multiple   spaces   between   words   in this caption.",
    "Tab\tseparated\tcaption\twith\ttabs.",
]

CJK = [
    "一只猫坐在窗台上看着外面的雨。",
    "两个孩子在公园里放风筝，天空很蓝。",
    "这是一个测试：中文、English 和 数字123混合。",
    "東京タワーの夜景がとても綺麗です。",
    "ひらがなとカタカナ、そして漢字。",
    "ｶﾀｶﾅ半角とカタカナ全角。",
    "서울의 밤거리는 아름답다.",
    "한국어 문장과 English words 가 섞여 있습니다.",
    "𠀀𠀁𠀂 CJK Extension B characters 𪚥",
    "「引用」と『二重引用』と【括弧】。",
    "全角スペース　を含む　文章",
    "中文标点：，。！？；（）《》",
]

EMOJI = [
    "I love pizza 🍕🍕🍕!",
    "Family: 👨‍👩‍👧‍👦 and couple 👩‍❤️‍👨",
    "Skin tones: 👍🏻 👍🏼 👍🏽 👍🏾 👍🏿",
    "Flags: 🇺🇸🇯🇵🇫🇷 and 🏴‍☠️ and 🏳️‍🌈",
    "Keycaps: 1️⃣ 2️⃣ #️⃣ *️⃣",
    "Scotland 🏴󠁧󠁢󠁳󠁣󠁴󠁿 uses tag characters",
    "Text vs emoji style: ☺ ☺️ ❤ ❤️",
    "Astronaut 🧑🏽‍🚀 and firefighter 👩🏿‍🚒",
    "🎉🎊🥳",
    "emoji-only line with spaces 😀 😃 😄 😁",
    "A dog 🐕 chasing a ball ⚽ in the park 🌳.",
]

CODE = [
    "def tokenize(text: str) -> list[int]:\n    return [ord(c) for c in text]\n",
    "for (int i = 0; i < n; i++) {\n\tsum += a[i] * b[i];\n}\n",
    "#include <stdio.h>\nint main(void) { printf(\"hello\\n\"); return 0; }",
    "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}}",
    "if x == 1:\n        pass\n    elif x != 2:\n\t\treturn None",
    "$ ls -la /usr/local/bin | grep -E '^-rwx' && echo done",
    "const f = (a, b) => a ?? b; // nullish\nlet s = `template ${f(1, 2)}`;",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC;",
    "x = {'a':1,'b':2}\r\nprint(x['a'])\r\n",
    "<div class=\"caption\"><p>A&amp;B &lt;tag&gt;</p></div>",
    "https://example.com/path/to/image_001.jpg?size=640x480&q=95#frag",
    "user@example.org, first.last+tag@sub.domain.co.uk",
    "    indented line\n        more indented\n            deepest\n",
    "diff --git a/x.c b/x.c\n@@ -1,3 +1,4 @@\n-old line\n+new line\n",
    "$$\\sum_{i=1}^{n} x_i^2 = \\frac{a}{b}$$ and \\(\\alpha + \\beta\\)",
]

WHITESPACE = [
    " " * 1, " " * 2, " " * 7, " " * 64, " " * 1000, " " * 4096,
    "word" + " " * 300 + "word",
    "\t" * 50 + "tabs" + "\t" * 50,
    "\n", "\n\n\n\n", "\r\n\r\n", "\r", "line1\rline2",
    "trailing spaces   ", "   leading spaces", "   both   ",
    " \n \n \n", "\n  \n\t\n", "a\n\n\nb", "a \n b \n c",
    "x" + " " * 30 + "\n" + " " * 30 + "y",
    "Unicode spaces: a\u00a0b\u2003c\u3000d\u2009e\u202ff\u205fg\u1680h",
    "Line separators: a\u2028b\u2029c\u0085d",
    "Mongolian vowel separator: a\u180eb \u180e c",
    "Zero width: a\u200bb\u200cc\u200dd\ufeffe",
    "\u00a0\u00a0\u00a0leading nbsp",
    "\u3000\u3000ideographic spaces",
    "\x0b vertical tab \x0c form feed",
    "mixed \t \u00a0 \n \u2003 end",
    " " * 5 + "\n" + " " * 5,
]

DIGITS = [
    "1234567890", "3.14159265358979", "1,000,000.00", "-42", "+1 (555) 012-3456",
    "2026-11-24T07:10:00Z", "0x1F600 0b1010 0o777", "1e-10 6.02e23",
    "Arabic-Indic ٠١٢٣٤٥٦٧٨٩ and Persian ۰۱۲۳", "Fullwidth １２３４５", "Superscripts x²+y³=z⁴",
    "Roman Ⅻ Ⅳ ⅲ", "Fractions ½ ¾ ⅞", "Circled ①②③", "Devanagari digits १२३",
    "99 bottles, 100%, 50/50, 24/7, 3:2", "v1.2.3-rc4+build.5",
]

CONTRACTIONS = [
    "I'm sure you're right, they've gone and we'll see; he'd know it's true.",
    "DON'T SHOUT, I'M HERE, IT'S FINE, WE'LL GO, YOU'VE SEEN, HE'D SAY.",
    "Mixed Case: It'S, We'Ll, They'Ve, I'D, You'Re",
    "Curly: it’s they’re I’m — not split like straight ones",
    "Long s: it'ſ a caſe of the archaic letter",
    "o'clock, rock'n'roll, 'quoted', ''double'', '''triple'''",
    "'s at start, end's", "can't won't shouldn't y'all'd've",
    "Kelvin sign: '\u212a' vs 'K' vs 'k' and it'\u212a",
]

NFC = [
    "e\u0301cole (decomposed)", "\u00e9cole (composed)",
    "A\u030angstr\u00f6m vs \u212bngstr\u00f6m vs \u00c5ngstr\u00f6m",
    "Ohm \u2126 vs Omega \u03a9", "Hangul jamo \u1100\u1161\u11a8 vs \uac01",
    "q\u0307\u0323 reordered marks", "Tie\u0302\u0301ng Vie\u0323\u0302t",
    "\ufb01 ligature and \ufb00 stay (compatibility only)",
    "\u0301 leading combining acute", "a\u0300\u0301\u0302\u0303\u0304 stacked marks",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O\u0342\u030c\u030c\u0358\u0328\u0335\u0339\u033b\u031d\u0333 zalgo",
    "Devanagari \u0915\u093c vs \u0958", "Greek \u1f00\u0345 and \u1f80",
    "Hebrew \u05e9\u05c1\u05bc and \u05e9\u05bc\u05c1", "Arabic \u0627\u0653 vs \u0622",
]

UNUSUAL = [
    "Noncharacters: \ufdd0 \ufdef \ufffe \uffff \U0001fffe \U0010ffff",
    "Private use: \ue000 \uf8ff \U000f0000 \U0010fffd",
    "\ufeffBOM at start", "a\u0000b NUL inside", "\u0001\u0002\u001f\u007f controls",
    "C1: \u0080\u0081\u009f end", "Replacement char \ufffd stays",
    "RTL: \u202eevil\u202c and \u200f marks \u200e",
    "Arabic: مرحبا بالعالم، هذا اختبار.", "Hebrew: שלום עולם",
    "Hindi: नमस्ते दुनिया, यह एक परीक्षण है।", "Thai: สวัสดีชาวโลก",
    "Tamil: வணக்கம் உலகம்", "Russian: Привет, мир! Ёлка.", "Greek: Γειά σου Κόσμε",
    "Georgian: გამარჯობა", "Armenian: Բարեւ", "Amharic: ሰላም ልዑል", "Cherokee: ᏣᎳᎩ",
    "Math: ∀x∈ℝ, ∑ᵢ xᵢ² ≥ 0 ⇒ ∫₀^∞ e^{-x} dx = 1", "Box: ┌─┬─┐│ ├─┼─┤ └─┴─┘",
    "Currency: € £ ¥ ₹ ₿ ¢ $", "Arrows: ← → ↑ ↓ ↔ ⇐ ⇒", "Musical 𝄞 𝄢 and math bold 𝐀𝐁𝐂",
    "Interlinear \ufff9a\ufffab\ufffb", "Tag chars \U000e0041\U000e0042 alone",
    "Variation selector-16 alone \ufe0f and VS17 \U000e0100",
    "Egyptian 𓀀𓀁 Linear B 𐀀", "Max BMP \uffef and astral \U0001f9ff\U0001fab7",
    "Half surrogate-looking text: \\ud83d (escaped, not real)",
    "Hangul filler \u3164 and \u115f\u1160",
]

SPECIAL = [
    "<|im_start|>user\nDescribe this image.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n",
    "<|vision_start|><|image_pad|><|image_pad|><|image_pad|><|vision_end|>A cat.",
    "text<|endoftext|>more text", "abc<|im_end|>def", " <|im_end|> spaced ",
    "<|im_start|><|im_start|><|im_end|><|im_end|>", "<|im_start", "<|im_start|", "im_start|>",
    "<|im_start|x", "<<|im_start|>>", "<think>reasoning</think>answer",
    "<tool_call>{\"name\": \"f\"}</tool_call>", "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<|box_start|>(10,20),(30,40)<|box_end|>", "<|object_ref_start|>the dog<|object_ref_end|>",
    "<|video_pad|><|vision_pad|><|quad_start|><|quad_end|>", "<|repo_name|>aqs<|file_sep|>main.c",
    "<|IM_START|> is not special (case)", "<|im_start|>\u00e9\u0301 after special",
    "e<|im_end|>\u0301 combining after special", "\n<|im_start|>\n", "<|endoftext|>",
    "<|endoftext|><|endoftext|><|endoftext|>", "<tool_response>ok</tool_response>",
]

MISC = [
    "", "a", "A", ".", "'", "''", "'s", "' s", "  'll", "\t'd",
    "a" * 1000, "ab" * 700, "Z" * 257, "9" * 300, "!" * 200, "-" * 500 + "\n" + "=" * 80,
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZW5jb2RlZCB0ZXh0Lg==",
    "0123456789abcdef" * 8,
    "# Heading\n\n* item one\n* item two\n\n> quote\n\n```\ncode\n```\n",
    "He said, \"Well... I don't know!?\" — and left…",
    "Ellipsis… em—dash – en-dash ‘single’ “double” «guillemets» „low“",
    "ALLCAPS WORDS WITH NUMBERS 123ABC abc123 a1b2c3",
    "snake_case_name camelCaseName PascalCaseName kebab-case-name SCREAMING_CASE",
    "!!!???...,,,;;;:::", "$$$%%%^^^&&&***((()))", "@#~`|\\/<>[]{}",
    "Ünïcödé Àccénts Ñoño Ærøskøbing Łódź Čeština Straße ß ẞ",
    "İstanbul ıi İI", "ǅ ǈ ǋ titlecase digraphs", "ﬃ ﬄ ﬅ ligatures",
]

POOLS = [
    "abcxyzABCXYZ", "0123456789", " ", "  \t", "\n\r", "'sStTdDmMlLvVrReE",
    ".,;:!?-_()[]{}<>\"'/\\|@#$%^&*+=~`",
    "\u00a0\u2003\u3000\u180e\u0085\u2028\u200b\u200d\ufeff\u000b\u000c",
    "\u0301\u0300\u0308\u0323\u0345\u05bc\u093c",
    "éÅΩ가각\u1100\u1161\u11a8ſK\u212b\u2126",
    "中文日本語한국어ひらがなカタカナ",
    "😀👍🏽👨‍👩‍👧🇺🇸❤️1️⃣🏴󠁧󠁢󠁳󠁣󠁴󠁿",
    "²³½①Ⅻ٣１",
    "\ufdd0\uffff\ue000\U0010ffff\u0000\u0001\u007f\u0080",
    "مرحباשלוםनमस्तेสวัสดี",
]
SPECIAL_POOL = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|image_pad|>", "<think>", "<|im_"]


def random_cases(count, seed):
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        parts = []
        for _ in range(rng.randint(1, 40)):
            if rng.random() < 0.05:
                parts.append(rng.choice(SPECIAL_POOL))
                continue
            pool = rng.choice(POOLS)
            run = rng.randint(1, 6)
            parts.append("".join(rng.choice(pool) for _ in range(run)))
        cases.append("".join(parts))
    return cases


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/tokenizer/corpus.jsonl"
    cases = (CAPTIONS + CJK + EMOJI + CODE + WHITESPACE + DIGITS + CONTRACTIONS + NFC + UNUSUAL +
             SPECIAL + MISC + random_cases(200, 20261124))
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        for text in cases:
            f.write(json.dumps(text, ensure_ascii=True) + "\n")
    print(f"{out}: {len(cases)} cases")


if __name__ == "__main__":
    main()
