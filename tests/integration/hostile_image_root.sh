#!/bin/bash
# tests/integration/hostile_image_root.sh: image rows stay inside the image root. An absolute
# path, a '..' component or a symlink leading out of --root is a bad row (an error naming the
# dataset line, or skipped and counted with --skip-bad), and the file it names is never read;
# --allow-outside-root follows such rows. Checked for `aqs calib` and `aqs build`.
SRC="$(realpath "${AQS_SOURCE_DIR:?}")"
source "$(dirname "$0")/cli_common.bash"

"$AQS" synth-model --preset tiny --out "$TMP/model" >/dev/null || fail "synth-model"
S=(--store "$TMP/store")
"$AQS" "${S[@]}" init >/dev/null || fail "init"
mkdir -p "$TMP/ds/imgs" "$TMP/secret"
for i in 1 2 3; do cp "$SRC/tests/fixtures/images/rgb_101x67.png" "$TMP/ds/imgs/ok$i.png"; done
cp "$SRC/tests/fixtures/images/gray_61x43.png" "$TMP/secret/private.png"
ln -s "$TMP/secret/private.png" "$TMP/ds/imgs/link_out.png"
ln -s ok1.png "$TMP/ds/imgs/link_in.png"
row() { printf '{"image": "%s", "caption": "picture %s"}\n' "$1" "$2"; }
{ row imgs/ok1.png a; row imgs/link_in.png b; row imgs/ok2.png c; } > "$TMP/ds/inside.jsonl"
row "$TMP/secret/private.png" x > "$TMP/ds/abs.jsonl"
row imgs/../../secret/private.png x > "$TMP/ds/dotdot.jsonl"
row imgs/link_out.png x > "$TMP/ds/link.jsonl"
C=("$AQS" "${S[@]}" calib --model "$TMP/model" --samples 1 --root "$TMP/ds")

out=$("$AQS" "${S[@]}" calib --model "$TMP/model" --samples 3 --images "$TMP/ds/inside.jsonl" --json) ||
  fail "rows inside the root (one through an inner symlink)"
expect_eq "$(jqr "$out" .images)" 3 "images inside the root"
pass "rows inside the root, an inner symlink included: accepted"

expect_error 1 "abs.jsonl:1: image path '$TMP/secret/private.png' is absolute" "${C[@]}" --images "$TMP/ds/abs.jsonl"
expect_contains "$ERR_OUT" "--allow-outside-root" "hint names the flag"
expect_error 1 "dotdot.jsonl:1: image path 'imgs/../../secret/private.png' has a '..' component" \
  "${C[@]}" --images "$TMP/ds/dotdot.jsonl"
expect_error 1 "link.jsonl:1: image path 'imgs/link_out.png' leads to $TMP/secret/private.png, outside the image root $TMP/ds" \
  "${C[@]}" --images "$TMP/ds/link.jsonl"
pass "absolute, '..' and symlink escapes: errors naming the row"

# --skip-bad: the escaping row is skipped and counted, the others make the set.
cat "$TMP/ds/inside.jsonl" "$TMP/ds/abs.jsonl" "$TMP/ds/link.jsonl" > "$TMP/ds/mixed.jsonl"
out=$("$AQS" "${S[@]}" calib --model "$TMP/model" --samples 3 --images "$TMP/ds/mixed.jsonl" --skip-bad --json) ||
  fail "skip-bad with escaping rows"
expect_eq "$(jqr "$out" .images)" 3 "images with skip-bad"
[ "$(jqr "$out" .skipped)" -ge 1 ] || fail "no escaping row skipped: $out"
expect_contains "$(jqr "$out" .first_skipped)" "mixed.jsonl:" "first skipped names the row"
expect_contains "$(jqr "$out" .first_skipped)" "image root" "first skipped says why"
pass "--skip-bad skips escaping rows"

# --allow-outside-root: followed, and a different set from the refused one.
for f in abs dotdot link; do
  out=$("${C[@]}" --images "$TMP/ds/$f.jsonl" --allow-outside-root --json) || fail "$f with --allow-outside-root"
  expect_eq "$(jqr "$out" .images)" 1 "$f followed"
done
expect_error 2 "--allow-outside-root needs --images" "$AQS" "${S[@]}" calib --captions x --allow-outside-root
pass "--allow-outside-root follows the rows"

# aqs build: the same containment through the calib-set stage.
mkdir -p "$TMP/ws/recipes" && cd "$TMP/ws"
printf '[recipe]\nextends = top50\n[calib]\nmodality = images\nsamples = 1\n[sensitivity]\nscore_samples = 1\n' > recipes/img50.ini
B=("$AQS" "${S[@]}" build --model "$TMP/model" --recipes-dir recipes --root "$TMP/ds" --quiet --no-checkout)
expect_error 1 "image path 'imgs/link_out.png' leads to $TMP/secret/private.png, outside the image root" \
  "${B[@]}" --images "$TMP/ds/link.jsonl" img50
# With the flag the calib-set stage uses the row (later stages may still refuse image sets).
"${B[@]}" --images "$TMP/ds/link.jsonl" --allow-outside-root img50 >/dev/null 2>"$TMP/.err" || true
! grep -q "image root" "$TMP/.err" || fail "build --allow-outside-root still refused the row: $(cat "$TMP/.err")"
expect_contains "$("$AQS" build --help)" "--allow-outside-root" "build --help"
expect_contains "$("$AQS" plan --help)" "--allow-outside-root" "plan --help"
pass "aqs build: escaping rows refused, --allow-outside-root follows them"
