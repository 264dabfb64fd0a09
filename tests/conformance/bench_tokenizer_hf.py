#!/usr/bin/env python3
"""tests/conformance/bench_tokenizer_hf.py: the Hugging Face `tokenizers` side of the tokenizer
benchmark: single-threaded encode throughput on a text file, one encode per line (as
tests/bench/bench_tokenizer.c does for ours), and a line-by-line comparison with our ids.
    bench_tokenizer_hf.py TOKENIZER_JSON TEXT_FILE [OUR_IDS_FILE]
Prints one JSON object. Set RAYON_NUM_THREADS=1 before running (encode_batch is timed too)."""
import json
import os
import sys
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
from tokenizers import Tokenizer  # noqa: E402


def best_of(runs, fn):
    best = None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        elapsed = time.perf_counter() - start
        best = elapsed if best is None or elapsed < best else best
    return best, result


def main():
    tok_path, text_path = sys.argv[1], sys.argv[2]
    ours_path = sys.argv[3] if len(sys.argv) > 3 else None
    tok = Tokenizer.from_file(tok_path)
    with open(text_path, "rb") as f:
        raw = f.read()
    lines = raw.decode("utf-8").split("\n")
    if lines and lines[-1] == "" and raw.endswith(b"\n"):
        lines.pop()
    n_bytes = len(raw)
    loop_s, ids = best_of(3, lambda: [tok.encode(line).ids for line in lines])
    batch_s, _ = best_of(3, lambda: tok.encode_batch(lines))
    report = {
        "bytes": n_bytes,
        "lines": len(lines),
        "tokens": sum(len(x) for x in ids),
        "encode_loop_seconds": round(loop_s, 4),
        "encode_loop_MB_per_s": round(n_bytes / loop_s / 1e6, 3),
        "encode_batch_1thread_seconds": round(batch_s, 4),
        "encode_batch_1thread_MB_per_s": round(n_bytes / batch_s / 1e6, 3),
    }
    if hasattr(tok, "encode_batch_fast"):
        fast_s, _ = best_of(3, lambda: tok.encode_batch_fast(lines))
        report["encode_batch_fast_1thread_MB_per_s"] = round(n_bytes / fast_s / 1e6, 3)
    if ours_path:
        with open(ours_path, encoding="ascii") as f:
            ours = [[int(x) for x in line.split()] for line in f.read().split("\n")[: len(lines)]]
        mismatches = [i for i in range(len(lines)) if i >= len(ours) or ours[i] != ids[i]]
        report["compared_lines"] = len(lines)
        report["mismatched_lines"] = len(mismatches)
        report["first_mismatches"] = [
            {"line": i + 1, "text": lines[i][:300], "hf": ids[i][:80],
             "ours": ours[i][:80] if i < len(ours) else None}
            for i in mismatches[:10]
        ]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
