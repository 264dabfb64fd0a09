#!/usr/bin/env bash
# tests/integration/cli_errors.sh: every bad-input path a user can reach through the store
# commands fails with a non-zero exit and a message naming the file, store, line or digest:
# missing store, unreadable file, malformed .aqstore, unknown digest, ambiguous abbreviation,
# corrupt object, bad options.
source "$(dirname "$0")/cli_common.bash"

# Missing store: the message names the path and where it came from, and says how to fix it.
expect_error 1 "no store at $TMP/nowhere (from --store); run \`aqs init\`" \
  "$AQS" --store "$TMP/nowhere" stats
AQS_STORE="$TMP/envstore" expect_error 1 "no store at $TMP/envstore (from \$AQS_STORE)" \
  "$AQS" cat abcd
mkdir ws && cd ws
expect_error 1 "no store at $TMP/ws/.aqs-cache (from default); run \`aqs init\`" "$AQS" stats
cd "$TMP"
pass "missing store"

S="$TMP/store"
"$AQS" --store "$S" init >/dev/null

# Unreadable and missing files name the path.
expect_error 1 "$TMP/does-not-exist.bin" "$AQS" --store "$S" put "$TMP/does-not-exist.bin"
if [ "$(id -u)" -ne 0 ]; then
  echo secret >locked.bin && chmod 000 locked.bin
  expect_error 1 "locked.bin" "$AQS" --store "$S" put locked.bin
  expect_contains "$ERR_OUT" "ermission denied" "unreadable file message"
fi
mkdir adir
expect_error 1 "adir" "$AQS" --store "$S" put adir
pass "unreadable / missing input files"

# Malformed .aqstore: file and line number; unknown keys too.
mkdir -p bad/sub && printf '[store]\npath = x\noops no equals\n' >bad/.aqstore
cd bad/sub
expect_error 1 "$TMP/bad/.aqstore:3: malformed line" "$AQS" stats
printf '[store]\n; fine\ncompresion_level = 3\n' >../.aqstore
expect_error 1 "$TMP/bad/.aqstore:3: unknown key 'compresion_level' in section [store]" "$AQS" stats
printf '[store]\nlink_mode = symlink\n' >../.aqstore
expect_error 1 ".aqstore:2: [store] link_mode: 'symlink' is not one of reflink, hardlink, copy" \
  "$AQS" init
# --store does not excuse a broken .aqstore (it is still the workspace's config).
expect_error 1 ".aqstore:2:" "$AQS" --store "$S" stats
cd "$TMP"
pass "malformed .aqstore"

# Unknown digest, bad digest text, ambiguous abbreviation.
expect_error 1 "no object matches" "$AQS" --store "$S" cat 0123456789ab
expect_contains "$ERR_OUT" "0123456789ab" "unknown digest message names it"
full="sha256:$(printf 'nothing here' | sha256sum | cut -c1-64)"
expect_error 1 "${full#sha256:}" "$AQS" --store "$S" cat "$full"
expect_error 1 "'xyz!' is neither a digest" "$AQS" --store "$S" cat 'xyz!'
# "aqs-18\n" and "aqs-825\n" have SHA-256 digests that both start with c964d.
printf 'aqs-18\n' >a.txt; printf 'aqs-825\n' >b.txt
da="$("$AQS" --store "$S" put a.txt)"; db="$("$AQS" --store "$S" put b.txt)"
expect_eq "${da:0:12}" "sha256:c964d" "prefix of a.txt's digest"
expect_eq "${db:0:12}" "sha256:c964d" "prefix of b.txt's digest"
expect_error 1 "c964 is ambiguous" "$AQS" --store "$S" cat c964
expect_contains "$ERR_OUT" "${da:0:19}" "ambiguity message lists the first candidate"
expect_contains "$ERR_OUT" "${db:0:19}" "ambiguity message lists the second candidate"
"$AQS" --store "$S" cat "${da:7:8}" | cmp - a.txt || fail "longer unique prefix resolves"
pass "unknown digest / ambiguous abbreviation"

# Corrupt object: cat refuses to return wrong bytes and names the digest.
head -c 200000 /dev/urandom >victim.bin
dv="$("$AQS" --store "$S" put --raw victim.bin)"
hex="${dv#sha256:}"
obj="$(find "$S/objects" -type f -name "*${hex:4}*" | sed -n 1p)"
[ -n "$obj" ] || fail "object file for $dv not found"
chmod u+w "$obj"
flip_byte "$obj" 1000
chmod 444 "$obj"
rc=0; "$AQS" --store "$S" cat "$dv" >cat.out 2>cat.err || rc=$?
[ "$rc" -ne 0 ] || fail "cat of a corrupt object exited 0"
expect_contains "$(cat cat.err)" "corrupt" "cat of a corrupt object"
expect_contains "$(cat cat.err)" "${hex:0:12}" "cat of a corrupt object names the digest"
pass "corrupt object"

# Usage errors exit 2 and point to --help.
expect_error 2 "unknown option '--bogus'" "$AQS" --store "$S" put --bogus x
expect_error 2 "missing FILE" "$AQS" --store "$S" put
expect_error 2 "--level wants a zstd level 1..19, not '40'" "$AQS" --store "$S" put --level 40 a.txt
expect_error 2 "--limit wants a size" "$AQS" --store "$S" gc --limit lots
expect_error 2 "--sample wants a positive count" "$AQS" --store "$S" verify --sample -3
expect_error 2 "unknown action 'frob'" "$AQS" --store "$S" refs frob
expect_error 2 "unknown command 'frobnicate'" "$AQS" frobnicate
expect_error 2 "--store needs a directory" "$AQS" --store
expect_error 1 "no ref nosuch" "$AQS" --store "$S" refs log nosuch
expect_error 1 "nosuch" "$AQS" --store "$S" refs delete nosuch
pass "usage errors"
