#!/usr/bin/env bash
# tests/conformance/run_tokenizer_device.sh: the tokenizer's one run on the GPU machine (which has
# HF `tokenizers`): golden ids for the committed corpus (real Qwen tokenizer and the synthetic
# one), then single-threaded MB/s of HF vs ours on three texts, with a line-by-line id comparison.
# Needs .devcarry-tok/{bench_tokenizer,qwen_tokenizer.json} (bench built statically here, see
# docs/tokenizer.md). Writes into $OUT: qwen_golden.jsonl, synth_small_golden.jsonl, bench.jsonl.
set -euo pipefail
carry=.devcarry-tok
fixtures=tests/fixtures/tokenizer
work=$(mktemp -d)
python3 -c 'import tokenizers, platform; print("tokenizers", tokenizers.__version__, "python", platform.python_version())'
python3 tests/conformance/gen_tokenizer_golden.py $carry/qwen_tokenizer.json $fixtures/corpus.jsonl "$OUT/qwen_golden.jsonl"
python3 tests/conformance/gen_tokenizer_golden.py $fixtures/synth_small_tokenizer.json $fixtures/corpus.jsonl "$OUT/synth_small_golden.jsonl"
python3 tests/conformance/make_tokenizer_bench_text.py "$work"
cpu=$(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -1)
echo "{\"cpu\": \"$cpu\", \"nproc\": $(nproc)}" > "$OUT/bench.jsonl"
for name in captions code mixed; do
  text="$work/$name.txt"
  ours=$(taskset -c "${TOK_CPU_OURS:-2}" $carry/bench_tokenizer $carry/qwen_tokenizer.json "$text" --repeat 3 --ids-out "$work/$name.ours")
  hf=$(RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false taskset -c "${TOK_CPU_HF:-3}" python3 tests/conformance/bench_tokenizer_hf.py $carry/qwen_tokenizer.json "$text" "$work/$name.ours")
  echo "{\"text\": \"$name\", \"ours\": $ours, \"hf\": $hf}" | tee -a "$OUT/bench.jsonl" | cut -c1-600
done
rm -rf "$work"
