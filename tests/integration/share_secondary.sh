#!/bin/bash
# tests/integration/share_secondary.sh: [secondary] stores. Teammate A builds into store A; B's
# workspace lists A (read-only to B) as a secondary: B's plan shows HIT (secondary ...), B's build
# is all hits copied into B (verified), a checkout equals A's byte for byte, and a missing secondary
# is a warning. A damaged object in the secondary is refused, never copied.
source "$(dirname "$0")/build_common.bash"

# A: the teammate's store (the common store built by build_common.bash).
out=$("${B[@]}" build --json "${BUILD_ARGS[@]}" recipe fast50) || fail "A's build"
ckpt_a=$(jqr "$out" '.[0].out_dir')

# B: a workspace whose .aqstore lists A as a secondary.
mkdir -p "$TMP/b"
cat > "$TMP/b/.aqstore" <<INI
[store]
path = storeB
[secondary]
stores = $TMP/missing-cache, $TMP/store
INI
cd "$TMP/b"
"$AQS" init >/dev/null 2>&1 || fail "init B"
chmod -R a-w "$TMP/store"   # B may not write A (a teammate's or a read-only shared cache)

plan=$("$AQS" plan "${BUILD_ARGS[@]}" recipe fast50 2>"$TMP/plan.err") || fail "B's plan: $(cat "$TMP/plan.err")"
expect_contains "$plan" "calibrate    HIT (secondary $TMP/store)" "plan names the secondary"
expect_contains "$plan" "export       HIT (secondary $TMP/store)" "plan names the secondary (export)"
expect_contains "$(cat "$TMP/plan.err")" "warning: secondary store $TMP/missing-cache not found" "missing secondary warning"
expect_eq "$("$AQS" stats --json 2>/dev/null | jq .actions)" "0" "plan copied nothing into B"
json=$("$AQS" plan --json "${BUILD_ARGS[@]}" recipe fast50 2>/dev/null) || fail "plan --json"
expect_eq "$(jqr "$json" '[.[0].stages[] | .source] | unique | join(",")')" "secondary $TMP/store" "plan --json source"
pass "plan: HIT (secondary $TMP/store) for every stage, nothing copied; a missing secondary is a warning"

out=$("$AQS" build --json "${BUILD_ARGS[@]}" --out "$TMP/b/co50" recipe fast50 2>"$TMP/build.err") \
  || fail "B's build: $(cat "$TMP/build.err")"
expect_eq "$(stage_states "$out" fast50)" \
  "source=HIT calib-set=HIT calibrate=HIT sensitivity=HIT slice=HIT export=HIT" "B's build states"
diff -r -x .aqs-checkout "$ckpt_a" "$TMP/b/co50" >/dev/null || fail "B's checkout differs from A's"
"$AQS" verify >/dev/null 2>&1 || fail "B's store verifies"
[ "$("$AQS" stats --json 2>/dev/null | jq .actions)" -gt 0 ] || fail "the hits were copied into B"
pass "B's build is all hits from the read-only secondary, copied into B, checkout identical"

# B now holds everything: with A gone the checkout still works.
chmod -R u+w "$TMP/store"; mv "$TMP/store" "$TMP/store-away"
"$AQS" checkout fast50 "$TMP/b/again" >/dev/null 2>&1 || fail "checkout without the secondary"
diff -r -x .aqs-checkout "$ckpt_a" "$TMP/b/again" >/dev/null || fail "checkout without the secondary differs"
mv "$TMP/store-away" "$TMP/store"
pass "copied hits stay in B"

# Object reads read through too: aqs cat of an object only A holds, from a fresh store D.
mkdir -p "$TMP/d"; printf '[store]\npath = s\n[secondary]\nstores = %s\n' "$TMP/store" > "$TMP/d/.aqstore"
cd "$TMP/d"; "$AQS" init >/dev/null 2>&1 || fail "init D"
big=$(find "$TMP/store/objects" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
digest="$(basename "$(dirname "$big")")$(basename "$big")"
"$AQS" cat "$digest" > "$TMP/d/cat.out" 2>/dev/null || fail "cat through the secondary"
cmp -s "$TMP/d/cat.out" "$big" || fail "cat through the secondary: other bytes"
expect_eq "$("$AQS" stats --json 2>/dev/null | jq .objects)" "1" "objects copied into D by cat"
pass "aqs cat of an object only the secondary holds reads through (and copies it)"

# Another user (no write permission anywhere in A) uses A as a secondary: runs when the test runs
# as root with setpriv (CI), to drop to nobody.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chmod a+rx "$TMP"; chmod -R a+rX "$TMP/store" "$TMP/model" "$TMP/recipes" "$TMP/captions.txt"; chmod -R a-w "$TMP/store"
  mkdir -p "$TMP/other" && chown nobody "$TMP/other" && cd "$TMP/other"
  as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups env HOME="$TMP/other" "$@"; }
  printf '[store]\npath = s\n[secondary]\nstores = %s\n' "$TMP/store" > .aqstore
  as_nobody "$AQS" init >/dev/null 2>&1 || fail "init as nobody"
  out=$(as_nobody "$AQS" build --json "${BUILD_ARGS[@]}" --no-checkout recipe fast50 2>"$TMP/nobody.err") \
    || fail "build as nobody: $(cat "$TMP/nobody.err")"
  expect_eq "$(stage_states "$out" fast50)" \
    "source=HIT calib-set=HIT calibrate=HIT sensitivity=HIT slice=HIT export=HIT" "build as another user"
  chmod -R u+w "$TMP/store"
  pass "another user with read permission only uses the store as a secondary: all hits"
fi

# A damaged object in the secondary is never copied: a fresh store C falls back to computing.
# The largest object file (a source tensor, in the closure of the source stage C looks up first);
# one byte flipped.
obj=$(find "$TMP/store/objects" -type f -printf '%s %p\n' | sort -n | tail -1 | cut -d' ' -f2)
chmod u+w "$obj"
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(100); b = f.read(1); f.seek(100); f.write(bytes([b[0] ^ 1]))' "$obj"
mkdir -p "$TMP/c"; printf '[store]\npath = storeC\n[secondary]\nstores = %s\n' "$TMP/store" > "$TMP/c/.aqstore"
cd "$TMP/c"; "$AQS" init >/dev/null 2>&1 || fail "init C"
out=$("$AQS" build --json "${BUILD_ARGS[@]}" --out "$TMP/c/co50" recipe fast50 2>"$TMP/c.err") || fail "C's build: $(cat "$TMP/c.err")"
expect_contains "$(cat "$TMP/c.err")" "is corrupt" "C warns about the damaged secondary object"
diff -r -x .aqs-checkout "$ckpt_a" "$TMP/c/co50" >/dev/null || fail "C's checkout differs from A's"
"$AQS" verify >/dev/null 2>&1 || fail "C's store verifies after the damaged secondary"
pass "a damaged secondary object is refused; the stage is recomputed and the result is right"

# [remote] keys are checked like every .aqstore key: file and line named.
mkdir -p "$TMP/bad"; cd "$TMP/bad"
printf '[remote]\nurl = http://127.0.0.1:9\nupload = yes\n' > .aqstore
expect_error 1 ".aqstore:3: [remote] upload: 'yes' is not true or false" "$AQS" ls
printf '[remote]\nurl = http://127.0.0.1:9\ntoken_env = abc123-TOKEN\n' > .aqstore
expect_error 1 ".aqstore:3: [remote] token_env: 'abc123-TOKEN' is not an environment variable name" "$AQS" ls
printf '[remote]\nurl = http://127.0.0.1:9\nretries = -1\n' > .aqstore
expect_error 1 ".aqstore:3: [remote] retries: '-1' is not a whole number 0..3600" "$AQS" ls
printf '[store]\npath = s\n' > .aqstore; "$AQS" init >/dev/null 2>&1
expect_error 1 "no remote configured: set [remote] url in $TMP/bad/.aqstore" "$AQS" push
expect_error 2 "expected at least one NAME" "$AQS" pull
pass "bad [remote] values name the line; push/pull without a remote or a name are clear errors"
