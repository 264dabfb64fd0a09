#!/usr/bin/env bash
# tests/integration/store_integrity.sh: the store keeps its promises through the aqs binary:
# read commands never write the index; a truncated, emptied or deleted index is a clear error and
# `aqs verify --reindex` brings every build back; a damaged object never becomes checkpoint
# bytes in any link mode, is quarantined, and the next build recomputes it; a checkout whose files
# changed is rewritten; concurrent checkouts into one directory all succeed; a user who can only
# read the store (chmod'd, another uid) can still ls, show, cat, verify and checkout.
source "$(dirname "$0")/build_common.bash"

aqs() { "${B[@]}" "$@"; }
S="$TMP/store"
out="$(aqs build "${BUILD_ARGS[@]}" --json fast50)" || fail "first build"
ckpt="$(jqr "$out" '.[0].out_dir')"
aqs checkout --link-mode copy fast50 "$TMP/good" >/dev/null || fail "reference checkout"
same_as_good() { diff -r -x .aqs-checkout "$TMP/good" "$1" >/dev/null; }

# --- read commands never write the index (no counters, no access times)
sum_index() { sha256sum "$S/index/data.mdb" | cut -c1-64; }
before="$(sum_index)"
aqs ls >/dev/null; aqs show fast50 >/dev/null; aqs stats >/dev/null
aqs verify --no-quarantine >/dev/null; aqs plan "${BUILD_ARGS[@]}" fast50 >/dev/null
expect_eq "$(sum_index)" "$before" "index bytes after ls/show/stats/verify --no-quarantine/plan"
pass "read commands leave the index untouched"

# --- a damaged or lost index is loud, never a crash, and reindex restores builds
cp -a "$S" "$TMP/store.good"
restore() { rm -rf "$S"; cp -a "$TMP/store.good" "$S"; }
size="$(stat -c %s "$S/index/data.mdb")"
# (a cut that drops only free pages at the end leaves an intact store: store_test_integrity)
for cut in 4096 12288 $((size / 2 / 4096 * 4096)) $((size * 3 / 4 / 4096 * 4096)); do
  restore
  truncate -s "$cut" "$S/index/data.mdb"
  for cmd in "ls" "show fast50" "verify" "stats"; do
    # shellcheck disable=SC2086
    expect_error 1 "is damaged" aqs $cmd
    expect_contains "$ERR_OUT" "aqs verify --reindex" "repair command named ($cmd, cut at $cut)"
  done
  expect_error 1 "is damaged" aqs build "${BUILD_ARGS[@]}" fast50
done
pass "a truncated index is an error naming the repair, for ls, show, verify, stats and build"

for how in delete empty; do
  restore
  if [ "$how" == delete ]; then rm "$S/index/data.mdb"; else : >"$S/index/data.mdb"; fi
  expect_error 1 "index was lost" aqs ls
  expect_error 1 "aqs verify --reindex" aqs verify
  out="$(aqs verify --reindex --json)"
  expect_eq "$(jqr "$out" '.refs')" "1" "refs restored ($how)"
  [ "$(jqr "$out" '.actions')" -gt 5 ] || fail "reindex restored too few actions: $out"
  aqs ls | grep -q '^fast50' || fail "ls after reindex ($how): $(aqs ls)"
  report="$(aqs build "${BUILD_ARGS[@]}" --json fast50)"
  expect_eq "$(stage_states "$report" fast50 | grep -o RUN | wc -l)" "0" "stages rerun after reindex ($how)"
  aqs verify >/dev/null || fail "verify after reindex ($how)"
  same_as_good "$ckpt" || fail "checkpoint after reindex ($how) differs"
done
pass "a deleted or empty index is reported as lost; verify --reindex restores objects, actions and refs"

# --- damaged objects: never checkpoint bytes, quarantined, recomputed by the next build
restore
raw="$(find "$S/objects" -type f ! -name '*.zst' | sort | sed -n 1p)"
[ -n "$raw" ] || fail "no raw object in the tiny store"
flip() { python3 - "$1" <<'PY'
import os, sys
p = sys.argv[1]; os.chmod(p, 0o644)
with open(p, "r+b") as f:
    f.seek(os.path.getsize(p) // 2); b = f.read(1); f.seek(-1, 1); f.write(bytes([b[0] ^ 0x20]))
os.chmod(p, 0o444)
PY
}
for mode in reflink hardlink copy; do
  restore
  flip "$raw"
  rm -rf "$TMP/co-$mode"
  expect_error 1 "damaged" aqs checkout --link-mode "$mode" fast50 "$TMP/co-$mode"
  [ ! -e "$TMP/co-$mode" ] || fail "a failed checkout ($mode) left $TMP/co-$mode behind"
  [ -n "$(ls "$S/quarantine")" ] || fail "nothing quarantined ($mode)"
  out="$(aqs build "${BUILD_ARGS[@]}" fast50 2>&1)" || fail "build after damage ($mode): $out"
  aqs checkout --link-mode "$mode" fast50 "$TMP/co-$mode" >/dev/null || fail "checkout after repair ($mode)"
  same_as_good "$TMP/co-$mode" || fail "checkout ($mode) after repair differs"
  aqs verify >/dev/null || fail "verify after repair ($mode)"
done
# Damage found by the build itself (all stages cached): it says what it repaired and recomputes.
restore
flip "$raw"
out="$(aqs build "${BUILD_ARGS[@]}" fast50 2>&1)" || fail "cached build over a damaged object: $out"
expect_contains "$out" "repaired: object sha256:" "the build names the repaired object"
same_as_good "$ckpt" || fail "build output after repair differs"
pass "a damaged object never reaches a checkout (reflink, hardlink, copy) and the next build repairs it"

# --- a checkout whose files changed is rewritten
restore
aqs checkout fast50 "$TMP/co-edit" >/dev/null
victim="$TMP/co-edit/config.json"
chmod u+w "$victim"; echo ' ' >>"$victim"; chmod 0444 "$victim"
aqs checkout fast50 "$TMP/co-edit" >/dev/null || fail "re-checkout"
same_as_good "$TMP/co-edit" || fail "a changed checkout was not rewritten"
pass "a checkout whose files no longer match its marker is rewritten"

# --- concurrent checkouts into one directory
rm -rf "$TMP/co-par"
pids=()
for i in 1 2 3 4 5 6; do aqs checkout fast50 "$TMP/co-par" >"$TMP/par$i.log" 2>&1 & pids+=($!); done
for i in "${!pids[@]}"; do wait "${pids[$i]}" || fail "concurrent checkout $i: $(cat "$TMP/par$((i + 1)).log")"; done
same_as_good "$TMP/co-par" || fail "concurrent checkouts left a wrong directory"
[ -z "$(ls -d "$TMP"/co-par.aqs-* 2>/dev/null)" ] || fail "leftover temporary directories"
pass "6 concurrent checkouts into one directory"

# --- concurrent builders on a fresh store: each action computed once, all reuse it
"$AQS" --store "$TMP/cstore" init >/dev/null
pids=()
for i in 1 2 3 4 5 6; do
  "$AQS" --store "$TMP/cstore" build "${BUILD_ARGS[@]}" --json --no-checkout fast50 >"$TMP/cb$i.json" 2>"$TMP/cb$i.err" &
  pids+=($!)
done
for i in "${!pids[@]}"; do wait "${pids[$i]}" || fail "concurrent build $i: $(cat "$TMP/cb$((i + 1)).err")"; done
expect_eq "$(for i in 1 2 3 4 5 6; do jq -r '.[0].build_record' "$TMP/cb$i.json"; done | sort -u | wc -l)" "1" \
  "distinct build records of 6 concurrent builds"
expect_eq "$(cat "$TMP"/cb?.json | jq -s '[.[][0].stages[] | select(.state == "RUN")] | length')" "6" \
  "stage runs across 6 concurrent builds (6 stages, each computed once)"
"$AQS" --store "$TMP/cstore" verify >/dev/null || fail "verify after concurrent builds"
pass "6 concurrent builds: all exit 0, one result, each stage computed once"

# --- read-only use: another uid, store without write permission
if [ "$(id -u)" == 0 ] && command -v setpriv >/dev/null && id nobody >/dev/null 2>&1; then
  restore
  ro_before="$(sum_index)"
  chmod 755 "$TMP"
  chmod -R a+rX,a-w "$S"
  mkdir -m 777 "$TMP/ro-out"
  as_nobody() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$AQS" --store "$S" "$@"; }
  as_nobody ls | grep -q '^fast50' || fail "ls as a read-only user"
  as_nobody show fast50 >/dev/null || fail "show as a read-only user"
  as_nobody stats >/dev/null || fail "stats as a read-only user"
  # (root reads a copy: root may write the chmod'd store, and cat records access times)
  target="$(as_nobody refs list | awk 'NR == 1 {print $1}')"
  as_nobody cat "$target" | cmp - <("$AQS" --store "$TMP/store.good" cat "$target") || fail "cat as a read-only user"
  chmod -R a+rX "$TMP/model" "$TMP/recipes"; chmod a+r "$TMP/captions.txt"
  plan="$(as_nobody plan --json "${BUILD_ARGS[@]}" fast50)" || fail "plan as a read-only user"
  expect_eq "$(jq '[.[].stages[] | select(.state != "HIT")] | length' <<<"$plan")" "0" "plan misses as a read-only user"
  out="$(as_nobody verify 2>&1)" || fail "verify as a read-only user: $out"
  expect_contains "$out" "without quarantining" "verify says it only reports"
  for mode in reflink hardlink copy; do
    as_nobody checkout --link-mode "$mode" fast50 "$TMP/ro-out/$mode" >/dev/null 2>"$TMP/ro.err" \
      || fail "checkout ($mode) as a read-only user: $(cat "$TMP/ro.err")"
    same_as_good "$TMP/ro-out/$mode" || fail "read-only checkout ($mode) differs"
  done
  expect_eq "$(sum_index)" "$ro_before" "index bytes after read-only use"
  chmod -R u+w "$S"
  pass "ls, show, stats, cat, plan, verify and checkout work for a user who can only read the store"
else
  echo "skipping the read-only user part: needs root, setpriv and user nobody"
fi
