#!/usr/bin/env bash
# tests/integration/cli_workspace.sh: how aqs finds its store: init writes .aqstore, commands in
# subdirectories find it by walking up, [store] path is relative to the .aqstore, and
# $AQS_STORE and --store override in that order; init is idempotent; --shared stores are
# group-writable and setgid.
source "$(dirname "$0")/cli_common.bash"

mkdir -p proj/a/b && cd proj
out="$("$AQS" init)"
expect_contains "$out" "initialized empty aqs store in $TMP/proj/.aqs-cache" "init message"
expect_contains "$out" "wrote $TMP/proj/.aqstore" "init writes .aqstore"
[ -f .aqs-cache/aqs.conf ] || fail "no .aqs-cache/aqs.conf after init"
grep -qx 'path = .aqs-cache' .aqstore || fail ".aqstore content: $(cat .aqstore)"

# Second init: harmless, says so, does not rewrite .aqstore.
out="$("$AQS" init)"
expect_contains "$out" "already exists" "second init"
cd a/b
printf 'deep\n' >deep.txt
d="$("$AQS" put deep.txt)"
cd "$TMP/proj"
"$AQS" cat "$d" | grep -qx deep || fail "object put from a/b not found from the workspace root"
"$AQS" --store "$TMP/proj/.aqs-cache" cat "$d" >/dev/null || fail "same store by --store"
pass "init + discovery from subdirectories"

# [store] path relative to the .aqstore's directory, not the current directory.
cd "$TMP" && mkdir -p ws2/deep/er && cd ws2
printf '[store]\npath = ../ws2-cache\ncompression_level = 7\nsize_limit = 1M\n' >.aqstore
out="$("$AQS" init --json)"
expect_eq "$(jqr "$out" '.path')" "$TMP/ws2-cache" "init path from .aqstore (../ws2-cache, cleaned)"
expect_eq "$(jqr "$out" '.workspace_file')" "null" "no .aqstore written when one exists"
[ -f "$TMP/ws2-cache/aqs.conf" ] || fail "store not created at ../ws2-cache"
cd deep/er
st="$("$AQS" stats --json)"
expect_eq "$(jqr "$st" '.size_limit')" "1048576" "size_limit carried from .aqstore into the store"
pass "[store] path and settings from .aqstore"

# Precedence: --store > $AQS_STORE > .aqstore.
"$AQS" init "$TMP/envstore" >/dev/null
"$AQS" init "$TMP/flagstore" >/dev/null
printf 'which\n' >w.txt
AQS_STORE="$TMP/envstore" "$AQS" put w.txt >/dev/null
expect_eq "$(AQS_STORE="$TMP/envstore" "$AQS" stats --json | jq -r .path)" \
  "$TMP/envstore" "AQS_STORE beats .aqstore"
expect_eq "$(AQS_STORE="$TMP/envstore" "$AQS" --store "$TMP/flagstore" stats --json | jq -r .path)" \
  "$TMP/flagstore" "--store beats AQS_STORE"
expect_eq "$("$AQS" --store="$TMP/flagstore" stats --json | jq -r .objects)" \
  "0" "--store=DIR form; the flag store is empty"
pass "--store > \$AQS_STORE > .aqstore"

# init DIR creates exactly that store (and missing parents) and no .aqstore; a file is refused.
cd "$TMP" && mkdir plain && cd plain
"$AQS" init sub/store >/dev/null
[ -f sub/store/aqs.conf ] || fail "init DIR"
[ ! -e .aqstore ] || fail "init DIR wrote a .aqstore"
echo x >afile
rc=0; "$AQS" init afile >/dev/null 2>err.txt || rc=$?
[ "$rc" -ne 0 ] || fail "init over a regular file succeeded"
expect_contains "$(cat err.txt)" "afile" "init over a regular file names it"
pass "init DIR"

# --shared: group-writable, setgid directories; refused on an existing non-shared store.
"$AQS" init --shared team >/dev/null
mode="$(stat -c %a team)"
[ "$mode" == "2775" ] || fail "shared store dir mode $mode, want 2775"
expect_contains "$("$AQS" --store team stats)" "(shared)" "stats of a shared store"
expect_error 1 "is already an aqs store and is not shared" "$AQS" init --shared sub/store
pass "init --shared"
