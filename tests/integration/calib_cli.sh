#!/bin/bash
# tests/integration/calib_cli.sh: `aqs calib` and `aqs preprocess-image` end to end: a caption
# set and an image+caption set built into a store, then re-run from another directory with
# relative paths (cache hit, same digest); bad inputs fail naming the file and line.
set -u
AQS=${AQS_BIN:?AQS_BIN not set}
SRC=${AQS_SOURCE_DIR:?AQS_SOURCE_DIR not set}
[ -x "$AQS" ] || { echo "skipping: $AQS missing"; exit 77; }
T=$(mktemp -d "${TMPDIR:-/tmp}/aqs-calib-cli-XXXXXX")
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
# Top-level scalar field of aqs's pretty JSON (one "key": value per line, 2-space indent).
json_field() { sed -n 's/^  "'"$1"'": "\{0,1\}\([^",]*\)"\{0,1\},\{0,1\}$/\1/p'; }

# A tokenizer with Qwen2-VL's vision tokens: the synthetic tiny model's, else the shared Qwen one.
if "$AQS" synth-model --preset tiny --out "$T/model" >/dev/null 2>&1; then
  MODEL_ARGS=(--model "$T/model")
elif [ -f "${AQS_SHARED_DIR:-../shared}/fixtures/qwen-tokenizer/tokenizer.json" ]; then
  MODEL_ARGS=(--tokenizer "${AQS_SHARED_DIR:-../shared}/fixtures/qwen-tokenizer/tokenizer.json")
else
  echo "skipping: no synth-model command and no shared Qwen tokenizer"; exit 77
fi
S="$T/store"
"$AQS" --store "$S" init >/dev/null || fail "init"

mkdir -p "$T/a/data/imgs" "$T/b"
for i in $(seq 1 12); do echo "a caption number $i about a red bus"; done > "$T/a/data/captions.txt"
n=0
for f in rgb_101x67.png jpeg420_131x97.jpg gray_61x43.png palette_133x71.png; do
  cp "$SRC/tests/fixtures/images/$f" "$T/a/data/imgs/$f"
  echo "{\"image\": \"imgs/$f\", \"caption\": \"picture $n\"}" >> "$T/a/data/rows.jsonl"
  n=$((n + 1))
done

# Captions: build, then a hit from another directory with relative paths.
cd "$T/a" || fail "cd"
out=$("$AQS" --store "$S" calib --captions data/captions.txt "${MODEL_ARGS[@]}" --samples 5 --chunk-seqs 2 --json) || fail "calib captions"
d1=$(echo "$out" | json_field digest); h1=$(echo "$out" | json_field hit)
[ "$h1" = "false" ] || fail "first caption run was a hit: $out"
[ "$(echo "$out" | json_field samples)" = "5" ] || fail "samples: $out"
cp -r "$T/a/data" "$T/b/moved"
if [ "${MODEL_ARGS[0]}" = "--model" ]; then cp -r "$T/model" "$T/b/model"; MODEL_REL=(--model model); else MODEL_REL=("${MODEL_ARGS[@]}"); fi
cd "$T/b" || fail "cd"
out=$("$AQS" --store "$S" calib --captions moved/captions.txt "${MODEL_REL[@]}" --samples 5 --chunk-seqs 2 --json) || fail "calib captions again"
[ "$(echo "$out" | json_field hit)" = "true" ] || fail "second caption run from another dir was not a hit: $out"
[ "$(echo "$out" | json_field digest)" = "$d1" ] || fail "digest changed"

# Images: build, then a hit from the other directory (root defaults to the JSONL's directory).
cd "$T/a" || fail "cd"
out=$("$AQS" --store "$S" calib --images data/rows.jsonl "${MODEL_ARGS[@]}" --samples 3 --json) || fail "calib images"
d2=$(echo "$out" | json_field digest)
[ "$(echo "$out" | json_field images)" = "3" ] || fail "images: $out"
[ "$(echo "$out" | json_field hit)" = "false" ] || fail "first image run was a hit"
cd "$T/b" || fail "cd"
out=$("$AQS" --store "$S" calib --images moved/rows.jsonl "${MODEL_REL[@]}" --samples 3 --json) || fail "calib images again"
[ "$(echo "$out" | json_field hit)" = "true" ] || fail "image run from another dir was not a hit: $out"
[ "$(echo "$out" | json_field digest)" = "$d2" ] || fail "image digest changed"
text=$("$AQS" --store "$S" calib --images moved/rows.jsonl "${MODEL_REL[@]}" --samples 3) || fail "text summary"
echo "$text" | grep -q "calib-set sha256:.* (cached)" || fail "summary: $text"
echo "$text" | grep -q "3 samples, .* tokens, 3 images, 0 skipped" || fail "summary: $text"

# Bad inputs name the file and line; --skip-bad counts them.
head -c 700 "$SRC/tests/fixtures/images/rgb_283x157.png" > moved/imgs/cut.png
{ echo '{"image": "imgs/cut.png", "caption": "cut"}'; cat moved/rows.jsonl; } > moved/bad.jsonl
if err=$("$AQS" --store "$S" calib --images moved/bad.jsonl "${MODEL_REL[@]}" --samples 4 --seed 1 2>&1); then
  fail "truncated image accepted: $err"
fi
echo "$err" | grep -q "bad.jsonl:1: .*cut.png: corrupt PNG" || fail "error does not name the file: $err"
out=$("$AQS" --store "$S" calib --images moved/bad.jsonl "${MODEL_REL[@]}" --samples 4 --seed 1 --skip-bad --json) || fail "skip-bad"
[ "$(echo "$out" | json_field skipped)" = "1" ] || fail "skipped count: $out"
echo "$out" | json_field first_skipped | grep -q "cut.png" || fail "first_skipped: $out"
# 5 samples from 4 good rows: the set uses what there is and says so.
out=$("$AQS" --store "$S" calib --images moved/bad.jsonl "${MODEL_REL[@]}" --samples 5 --skip-bad --json 2>"$T/note.err") \
  || fail "5 samples from 4 good rows refused: $(cat "$T/note.err")"
[ "$(echo "$out" | json_field samples)" = "4" ] || fail "samples used: $out"
grep -q "note: .*bad.jsonl has .*fewer than the 5 samples asked for: the calib-set uses 4" "$T/note.err" \
  || fail "no note on stderr: $(cat "$T/note.err")"
# A blank line is not a caption (skipped silently); invalid UTF-8 is an error naming its line.
printf 'good\n\nbad\xff\n' > moved/bad.txt
err=$("$AQS" --store "$S" calib --captions moved/bad.txt "${MODEL_REL[@]}" --samples 1 2>&1) && fail "bad captions accepted"
echo "$err" | grep -q "bad.txt:3: invalid UTF-8" || fail "caption error: $err"
if echo "$err" | grep -q "bad.txt:2"; then fail "blank line reported: $err"; fi
err=$("$AQS" --store "$S" calib --captions missing.txt "${MODEL_REL[@]}" 2>&1) && fail "missing accepted"
echo "$err" | grep -q "missing.txt" || fail "missing file not named: $err"

# preprocess-image: grid and a safetensors file of the right size.
cat > pp.json <<'JSON'
{"min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2}
JSON
out=$("$AQS" preprocess-image --config pp.json -o px.safetensors "$SRC/tests/fixtures/images/rgb_101x67.png") || fail "preprocess-image"
echo "$out" | grep -q "^image_grid_thw 1 4 8$" || fail "grid: $out"
size=$(stat -c %s px.safetensors)
[ "$size" -gt $((32 * 1176 * 4)) ] || fail "safetensors too small: $size"
err=$("$AQS" preprocess-image "$SRC/tests/fixtures/images/nope.png" 2>&1) && fail "missing image accepted"
echo "$err" | grep -q "nope.png" || fail "missing image not named: $err"
echo "ok"
