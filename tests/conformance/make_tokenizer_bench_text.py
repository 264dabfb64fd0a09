#!/usr/bin/env python3
"""tests/conformance/make_tokenizer_bench_text.py: writes the benchmark texts of the tokenizer
speed comparison (one encode per line on both sides), deterministically:
  captions.txt  ~8 MB of COCO-style English captions from templates (seeded)
  code.txt      ~16 MB of Python standard-library source (sorted files, valid UTF-8 only)
  mixed.txt     ~3 MB of the corpus generator's random multilingual / emoji / whitespace strings
    make_tokenizer_bench_text.py OUT_DIR"""
import glob
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_tokenizer_corpus import random_cases  # noqa: E402

ADJ = ["red", "small", "large", "old", "wooden", "happy", "striped", "shiny", "empty", "busy"]
NOUN = ["dog", "cat", "man", "woman", "bus", "pizza", "table", "giraffe", "surfboard", "clock",
        "kitchen", "street", "train", "laptop", "bench", "kite", "horse", "umbrella"]
VERB = ["sitting on", "standing next to", "riding", "looking at", "parked near", "holding",
        "walking across", "lying under", "flying over", "eating"]


def captions(rng, target_bytes):
    out, size = [], 0
    while size < target_bytes:
        c = (f"{rng.choice(['A', 'The', 'Two', 'Some'])} {rng.choice(ADJ)} {rng.choice(NOUN)} "
             f"{rng.choice(VERB)} a {rng.choice(ADJ)} {rng.choice(NOUN)}"
             f"{rng.choice(['.', ' in the park.', ', with a view of the city.', ' at night.'])}")
        out.append(c)
        size += len(c) + 1
    return out


def code(target_bytes):
    out, size = [], 0
    for path in sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True)):
        try:
            with open(path, "rb") as f:
                text = f.read().decode("utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        out.append(text)
        size += len(text.encode("utf-8"))
        if size >= target_bytes:
            break
    return "".join(out).split("\n")


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(7)
    texts = {
        "captions.txt": captions(rng, 8 << 20),
        "code.txt": code(16 << 20),
        "mixed.txt": [c.replace("\n", " ") for c in random_cases(20000, 99)],
    }
    for name, lines in texts.items():
        with open(os.path.join(out_dir, name), "w", encoding="utf-8", newline="\n") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
