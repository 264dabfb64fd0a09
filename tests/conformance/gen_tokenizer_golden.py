#!/usr/bin/env python3
"""tests/conformance/gen_tokenizer_golden.py: golden token ids from Hugging Face `tokenizers` for
the committed corpus (tests/fixtures/tokenizer/corpus.jsonl), written as JSON lines: a header
{"tokenizer_sha256", "tokenizers_version", "corpus_sha256", "cases"} then one object per case
{"text", "ids", "decoded", "decoded_skip_special", "decoded_drop_first", "is_nfc"}, then 100
decode-only cases {"ids", "decoded"} of random ids (split multi-byte characters: lossy U+FFFD
decoding). The C test
tests/unit/tokenizer/test_golden.c checks engine/tokenizer against it.
Runs where `tokenizers` is installed (the GPU machine):
    gen_tokenizer_golden.py TOKENIZER_JSON CORPUS_JSONL OUT_JSONL"""
import hashlib
import json
import random
import sys
import unicodedata

import tokenizers
from tokenizers import Tokenizer


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    tok_path, corpus_path, out_path = sys.argv[1:]
    tok = Tokenizer.from_file(tok_path)
    with open(corpus_path, encoding="utf-8") as f:
        texts = [json.loads(line) for line in f if line.strip()]
    header = {
        "tokenizer_sha256": sha256_file(tok_path),
        "tokenizers_version": tokenizers.__version__,
        "corpus_sha256": sha256_file(corpus_path),
        "cases": len(texts),
        "decode_only_cases": 100,
    }
    with open(out_path, "w", encoding="utf-8", newline="\n") as out:
        out.write(json.dumps(header, sort_keys=True) + "\n")
        for text in texts:
            ids = tok.encode(text).ids
            case = {
                "text": text,
                "ids": ids,
                "decoded": tok.decode(ids, skip_special_tokens=False),
                "decoded_skip_special": tok.decode(ids, skip_special_tokens=True),
                "decoded_drop_first": tok.decode(ids[1:], skip_special_tokens=False),
                "is_nfc": unicodedata.normalize("NFC", text) == text,
            }
            out.write(json.dumps(case, ensure_ascii=True) + "\n")
        rng = random.Random(5)
        vocab_size = tok.get_vocab_size(with_added_tokens=True)
        for _ in range(100):
            ids = [rng.randrange(vocab_size) for _ in range(rng.randint(1, 20))]
            case = {"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)}
            out.write(json.dumps(case, ensure_ascii=True) + "\n")
    print(f"{out_path}: {len(texts)} cases, tokenizers {tokenizers.__version__}")


if __name__ == "__main__":
    main()
