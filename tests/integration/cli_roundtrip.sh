#!/usr/bin/env bash
# tests/integration/cli_roundtrip.sh: aqs init / put / cat / stats through the binary: digests
# equal sha256sum's, bytes come back identical for inline, zstd-file and raw objects and for
# stdin, dedup is counted, abbreviations and refs resolve, --info/--json describe objects.
source "$(dirname "$0")/cli_common.bash"

S="$TMP/store"
"$AQS" --store "$S" init >/dev/null
[ -f "$S/aqs.conf" ] || fail "init did not create $S/aqs.conf"

# Sizes around the inline threshold (64 KiB) and a larger file, plus an empty one.
: >empty.bin
printf 'x' >one.bin
head -c 65535 /dev/urandom >below.bin
head -c 65537 /dev/urandom >above.bin
head -c 3000000 /dev/urandom >big.bin
for f in empty.bin one.bin below.bin above.bin big.bin; do
  d="$("$AQS" --store "$S" put "$f")"
  expect_eq "$d" "$(sha256 "$f")" "digest of $f"
  "$AQS" --store "$S" cat "$d" | cmp - "$f" || fail "cat $d differs from $f"
  rd="$("$AQS" --store "$S" put --raw "$f")"
  expect_eq "$rd" "$d" "raw put of $f (same bytes, same digest)"
done
pass "put/cat round trips (0, 1, 64K-1, 64K+1, 3M bytes; zstd then raw)"

# Raw objects are files in objects/, read-only; --info says raw and the size.
d="$(sha256 big.bin)"
raw_big="$("$AQS" --store "$S" put --raw --json big.bin)"
expect_eq "$(jqr "$raw_big" '.[0].deduped')" "true" "second put of big.bin is a dedup"
info="$("$AQS" --store "$S" cat --json "$d")"
expect_eq "$(jqr "$info" '.size')" "3000000" "--info size"
expect_eq "$(jqr "$info" '.digest')" "$d" "--info digest"
# A small zstd object lives inline; asking for it --raw turns it into a linkable raw file.
printf 'small and fresh' >small.bin
fresh="$("$AQS" --store "$S" put --json small.bin)"
expect_eq "$(jqr "$fresh" '.[0].kind')" "inline" "small object stored inline"
expect_eq "$(jqr "$fresh" '.[0].deduped')" "false" "first put of small.bin"
fresh="$("$AQS" --store "$S" put --raw --json small.bin)"
expect_eq "$(jqr "$fresh" '.[0].kind')" "raw" "--raw put of an inline object"
"$AQS" --store "$S" cat "$(sha256 small.bin)" | cmp - small.bin || fail "cat after raw upgrade"

# A fresh raw object is a read-only file.
head -c 100000 /dev/urandom >rawonly.bin
out="$("$AQS" --store "$S" put --raw --json rawonly.bin)"
expect_eq "$(jqr "$out" '.[0].kind')" "raw" "kind of a --raw put"
expect_eq "$(jqr "$out" '.[0].stored')" "100000" "raw stored size"
hex="$(sha256sum rawonly.bin | cut -c1-64)"
obj="$(find "$S/objects" -type f -name "*${hex:4}*" | sed -n 1p)"
[ -n "$obj" ] || fail "no object file for $hex under $S/objects"
[ ! -w "$obj" ] || [ "$(id -u)" -eq 0 ] || fail "object file $obj is writable"
[ "$(stat -c %a "$obj")" == "444" ] || fail "object file mode $(stat -c %a "$obj"), want 444"
pass "raw objects are read-only files"

# Compressible data is stored smaller than it is.
for i in $(seq 2000); do printf 'bf16 %.0s' {1..100}; done >text.bin
out="$("$AQS" --store "$S" put --zstd --level 9 --json text.bin)"
[ "$(jqr "$out" '.[0].stored < 100000')" == "true" ] || fail "zstd did not compress: $out"

# stdin, from a pipe and from a redirected file.
d_pipe="$(cat big.bin | "$AQS" --store "$S" put -)"
expect_eq "$d_pipe" "$d" "digest of big.bin through a pipe"
d_redirect="$("$AQS" --store "$S" put - <below.bin)"
expect_eq "$d_redirect" "$(sha256 below.bin)" "digest of stdin redirected from a file"
printf 'hello aqs\n' | "$AQS" --store "$S" put - >/dev/null
"$AQS" --store "$S" cat "$(printf 'hello aqs\n' | sha256sum | cut -c1-64)" | grep -qx 'hello aqs' \
  || fail "cat of a bare-hex digest"
pass "put from stdin (pipe and file)"

# Several files at once: one digest per line, in order.
mapfile -t many < <("$AQS" --store "$S" put one.bin empty.bin below.bin)
expect_eq "${#many[@]}" "3" "lines from put of 3 files"
expect_eq "${many[1]}" "$(sha256 empty.bin)" "second line of a 3-file put"

# Abbreviations: 12 hex digits, with and without the sha256: prefix.
short="${d#sha256:}"; short="${short:0:12}"
"$AQS" --store "$S" cat "$short" | cmp - big.bin || fail "cat by abbreviation $short"
"$AQS" --store "$S" cat "sha256:${short:0:8}" | cmp - big.bin || fail "cat by sha256:<8 hex>"
pass "abbreviated digests"

# Refs: set, cat by ref name, list, log.
"$AQS" --store "$S" refs set big "$short" -m "first" >/dev/null
"$AQS" --store "$S" cat big | cmp - big.bin || fail "cat by ref name"
list="$("$AQS" --store "$S" refs)"
expect_eq "$list" "$d big" "aqs refs listing"

# Stats: dedups counted, logical vs stored sizes, JSON.
st="$("$AQS" --store "$S" stats --json)"
[ "$(jqr "$st" '.dedups >= 6')" == "true" ] || fail "stats dedups: $st"
[ "$(jqr "$st" '.objects')" -ge 8 ] || fail "stats objects: $st"
[ "$(jqr "$st" '.bytes_logical > .bytes_stored and .bytes_stored > 0')" == "true" ] \
  || fail "logical vs stored bytes: $st"
expect_eq "$(jqr "$st" '.refs')" "1" "stats refs"
text="$("$AQS" --store "$S" stats)"
expect_contains "$text" "dedups" "stats text"
expect_contains "$text" "logical" "stats text"
pass "stats"

# --version and --help for every command.
"$AQS" --version | grep -Eq '^aqs [0-9]+\.[0-9]+\.[0-9]+' || fail "aqs --version"
for c in init put cat stats gc verify refs; do
  "$AQS" "$c" --help | grep -q "^usage: aqs $c" || fail "aqs $c --help"
  "$AQS" help "$c" | grep -q "^usage: aqs $c" || fail "aqs help $c"
  "$AQS" --help | grep -q "^  $c " || fail "aqs --help does not list $c"
done
pass "--version and --help"
