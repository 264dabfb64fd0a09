#!/bin/bash
# tests/integration/hostile_special_files.sh: every file aqs reads by path must be a regular file
# under its size limit (docs/cli.md, "Input limits"). /dev/zero, a FIFO with no writer and a
# directory given as --tokenizer, --captions, --images, --tokens, --model files or image rows
# end in a clear error naming the file, never a hang; an over-limit file names the limit.
SRC="$(realpath "${AQS_SOURCE_DIR:?}")"
source "$(dirname "$0")/cli_common.bash"

# run_bounded RC NEEDLE CMD...: expect_error under a 30 s timeout (124 = it hung).
run_bounded() {
  local want_rc="$1" needle="$2"; shift 2
  expect_error "$want_rc" "$needle" timeout -k 5 30 "$@"
}

"$AQS" synth-model --preset tiny --out "$TMP/model" >/dev/null || fail "synth-model"
"$AQS" --store "$TMP/store" init >/dev/null || fail "init"
mkfifo "$TMP/fifo"
mkdir -p "$TMP/dir"
M=(--model "$TMP/model")

# tokenize / calib: tokenizer, captions, image rows file.
for bad in /dev/zero "$TMP/fifo"; do
  run_bounded 1 "tokenizer $bad is not a regular file" "$AQS" tokenize --tokenizer "$bad"
  run_bounded 1 "$bad is not a regular file" \
    "$AQS" --store "$TMP/store" calib --captions "$bad" "${M[@]}" --samples 1
  run_bounded 1 "$bad is not a regular file" \
    "$AQS" --store "$TMP/store" calib --images "$bad" --root "$TMP" "${M[@]}" --samples 1
  run_bounded 1 "token file $bad is not a regular file" \
    "$AQS" calibrate "${M[@]}" --tokens "$bad" --out "$TMP/amax.json"
done
expect_contains "$ERR_OUT" "(a FIFO)" "FIFO named as such"
run_bounded 1 "$TMP/dir is a directory" \
  "$AQS" --store "$TMP/store" calib --captions "$TMP/dir" "${M[@]}" --samples 1
run_bounded 1 "tokenizer $TMP/dir/tokenizer.json" "$AQS" tokenize --tokenizer "$TMP/dir"
run_bounded 1 "$TMP/fifo is not a regular file" "$AQS" --store "$TMP/store" put "$TMP/fifo"
run_bounded 1 "/dev/zero is not a regular file" "$AQS" --store "$TMP/store" put /dev/zero
pass "special files as --tokenizer, --captions, --images, --tokens, put FILE: clear errors"

# Model files: config.json and a weight file replaced by special files.
echo "[1,2,3]" > "$TMP/tok.jsonl"
cp -r "$TMP/model" "$TMP/m2"
rm "$TMP/m2/config.json" && mkfifo "$TMP/m2/config.json"
run_bounded 1 "model config $TMP/m2/config.json is not a regular file" \
  "$AQS" calibrate --model "$TMP/m2" --tokens "$TMP/tok.jsonl" --out "$TMP/amax.json"
cp -r "$TMP/model" "$TMP/m3"
w=$(ls "$TMP/m3"/*.safetensors | sed -n 1p)
rm "$w" && ln -s /dev/zero "$w"

run_bounded 1 "is not a regular file (a character device)" \
  "$AQS" calibrate --model "$TMP/m3" --tokens "$TMP/tok.jsonl" --out "$TMP/amax.json"
pass "special files inside a model directory: clear errors"

# Image rows naming a FIFO, a directory and /dev/zero (through a symlink, allowed outside root).
mkdir -p "$TMP/ds/imgs"
cp "$SRC/tests/fixtures/images/rgb_101x67.png" "$TMP/ds/imgs/ok.png"
mkfifo "$TMP/ds/imgs/fifo.png"
mkdir "$TMP/ds/imgs/dir.png"
ln -s /dev/zero "$TMP/ds/imgs/zero.png"
for name in fifo dir zero; do
  printf '{"image": "imgs/%s.png", "caption": "a picture"}\n' "$name" > "$TMP/ds/rows_$name.jsonl"
done
run_bounded 1 "image $TMP/ds/imgs/fifo.png is not a regular file (a FIFO)" \
  "$AQS" --store "$TMP/store" calib --images "$TMP/ds/rows_fifo.jsonl" "${M[@]}" --samples 1
run_bounded 1 "image $TMP/ds/imgs/dir.png is a directory" \
  "$AQS" --store "$TMP/store" calib --images "$TMP/ds/rows_dir.jsonl" "${M[@]}" --samples 1
run_bounded 1 "image $TMP/ds/imgs/zero.png is not a regular file (a character device)" \
  "$AQS" --store "$TMP/store" calib --images "$TMP/ds/rows_zero.jsonl" --allow-outside-root "${M[@]}" --samples 1
pass "image rows naming a FIFO, a directory, /dev/zero: clear errors"

# Size limits: a sparse file one byte over the limit of its kind is refused before it is read.
truncate -s $((64 * 1024 * 1024 + 1)) "$TMP/huge_tokenizer.json"
run_bounded 1 "over the tokenizer limit of 67108864 bytes" "$AQS" tokenize --tokenizer "$TMP/huge_tokenizer.json"
truncate -s $((4 * 1024 * 1024 + 1)) "$TMP/big.json"
cp -r "$TMP/model" "$TMP/m4" && cp "$TMP/big.json" "$TMP/m4/config.json"
run_bounded 1 "over the model config limit of 4194304 bytes" \
  "$AQS" calibrate --model "$TMP/m4" --tokens "$TMP/tok.jsonl" --out "$TMP/amax.json"
truncate -s $((64 * 1024 * 1024 + 1)) "$TMP/ds/imgs/huge.png"
printf '{"image": "imgs/huge.png", "caption": "a picture"}\n' > "$TMP/ds/rows_huge.jsonl"
run_bounded 1 "over the image limit of 67108864 bytes" \
  "$AQS" --store "$TMP/store" calib --images "$TMP/ds/rows_huge.jsonl" "${M[@]}" --samples 1
pass "over-limit files: refused, limit named"
