#!/bin/bash
# tests/integration/eval_store.sh: `aqs eval` reads a scheme straight from its store objects
# (engine/stages/ckpt_view.c): a damaged or missing tensor object is a clear error naming the
# tensor, never a crash or silently borrowed BF16 numbers, and aqs build repairs it; a 1-row eval
# set works.
source "$(dirname "$0")/build_common.bash"

# tensors as object files (not inline in the index), so that they can be damaged
sed -i 's/^inline_max = .*/inline_max = 64/' "$TMP/store/aqs.conf"
"${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe fast50 >/dev/null || fail "build fast50"
EVAL_ARGS=(--model "$TMP/model" --calib-captions "$TMP/captions.txt" --recipes-dir "$TMP/recipes" --quiet)
ckpt=$("${B[@]}" show --json --model "$TMP/model" --captions "$TMP/captions.txt" fast50 | jq -r '.stages.export')
shard=$("${B[@]}" cat "$ckpt" | jq -r '.files[] | select(.name == "model-layers-001.safetensors") | .digest')
w=$("${B[@]}" cat "$shard" | jq -r '[.tensors[] | select(.[0] | endswith(".weight_scale")) | .[0]][0] | sub("_scale$"; "")')
wd=$("${B[@]}" cat "$shard" | jq -r --arg w "$w" '.tensors[] | select(.[0] == $w) | .[1]')
obj=$(ls "$TMP/store/objects/${wd:7:2}/${wd:9}"* 2>/dev/null) || fail "$w ($wd) is not an object file"

# a 1-row eval set
one=$("${B[@]}" eval --json "${EVAL_ARGS[@]}" --samples 1 fast50 bf16) || fail "eval --samples 1"
expect_eq "$(jqr "$one" '[.[] | .n_seqs] | join(" ")')" "1 1" "rows of a 1-row eval"
expect_eq "$(jqr "$one" '.[0].kl_mean > 0 and .[0].kl_p99 <= .[0].kl_max and .[1].kl_max == 0')" "true" "1-row metrics"
pass "a 1-row eval set"

# a caption far longer than calibration's max_len (64 tokens) is cut to it, as calibration cuts
{ printf 'a long caption'; for i in $(seq 400); do printf ' word%s' "$i"; done; printf '\nA dog on a bench.\n'; } >"$TMP/long.txt"
long=$("${B[@]}" eval --json "${EVAL_ARGS[@]}" --captions "$TMP/long.txt" fast50) || fail "eval of a long caption"
expect_eq "$(jqr "$long" '.[0] | "\(.n_seqs) \(.n_tokens <= 128) \(.n_tokens > 64) \(.kl_mean > 0)"')" "2 true true true" "long caption"
pass "a caption longer than max_len is cut to it"

cp -a "$TMP/store" "$TMP/sound"  # an undamaged copy

# a damaged FP8 weight object: eval names the tensor and fails (exit 1), nothing cached
chmod u+w "$obj"
printf '\xff\xff\xff\xff' | dd of="$obj" bs=1 seek=40 conv=notrunc status=none
expect_error 1 "$w" "${B[@]}" eval --json "${EVAL_ARGS[@]}" --samples 4 fast50
expect_contains "$ERR_OUT" "${wd:7:12}" "the damaged object is named"
expect_contains "$ERR_OUT" "(aqs build fast50 exports the checkpoint again)" "the repair"
pass "a damaged tensor object is named, eval fails"

# the object gone (quarantined above, or deleted): the same clear error
rm -f "$obj"
expect_error 1 "$w" "${B[@]}" eval --json "${EVAL_ARGS[@]}" --samples 4 fast50
pass "a missing tensor object is named, eval fails"

# aqs build repairs the checkpoint (its export is found unsound and runs again); eval then gives
# the numbers it gave before the damage
"${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe fast50 >/dev/null || fail "rebuild fast50"
after=$("${B[@]}" eval --json "${EVAL_ARGS[@]}" --samples 4 fast50) || fail "eval after rebuild"
sound=$("$AQS" --store "$TMP/sound" eval --json "${EVAL_ARGS[@]}" --samples 4 fast50) || fail "eval of the sound copy"
expect_eq "$(jqr "$after" '.[0] | "\(.cached) \(.kl_mean)"')" "false $(jqr "$sound" '.[0].kl_mean')" "KL after the repair"
pass "aqs build repairs the checkpoint; eval is back to its numbers"

# the checkpoint manifest itself gone: the scheme is named, and so is the repair
rm -f "$TMP/store/objects/${ckpt:7:2}/${ckpt:9}"*
expect_error 1 "fast50: checkpoint: object ${ckpt}" "${B[@]}" eval --json "${EVAL_ARGS[@]}" --samples 5 fast50
expect_contains "$ERR_OUT" "(aqs build fast50 exports the checkpoint again)" "the repair"
"${B[@]}" build --no-checkout "${BUILD_ARGS[@]}" recipe fast50 >/dev/null || fail "rebuild fast50"
"${B[@]}" eval --json "${EVAL_ARGS[@]}" --samples 5 fast50 >/dev/null || fail "eval after the manifest's repair"
pass "a missing checkpoint manifest names the scheme and its repair"
