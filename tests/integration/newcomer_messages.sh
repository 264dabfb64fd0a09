#!/usr/bin/env bash
# tests/integration/newcomer_messages.sh: what a newcomer sees first (issue 14): `aqs` alone lists
# the commands grouped porcelain / plumbing, unknown commands, recipes and options get one message
# with the nearest name, unknown build names say what exists, recipe files with a key set twice or
# an extends cycle are refused naming the right file, ls lists recipes in natural order.
source "$(dirname "$0")/cli_common.bash"

# aqs alone: usage on stdout, exit 2, porcelain before plumbing.
rc=0; out="$("$AQS" 2>&1)" || rc=$?
expect_eq "$rc" "2" "exit status of aqs alone"
expect_contains "$out" "porcelain (a quantization session):" "porcelain heading"
expect_contains "$out" "plumbing (the store and single stages, for scripts):" "plumbing heading"
porcelain="$(sed -n '/^porcelain/,/^$/p' <<<"$out" | awk 'NF>1 && $1 != "porcelain" {print $1}' | tr '\n' ' ')"
plumbing="$(sed -n '/^plumbing/,/^$/p' <<<"$out" | awk 'NF>1 && $1 != "plumbing" {print $1}' | tr '\n' ' ')"
expect_contains "$porcelain" "init build plan ls show diff checkout" "porcelain order"
expect_contains "$porcelain" "gc verify demo" "porcelain tail"
for c in put cat stats refs synth-model calib export; do
  expect_contains "$plumbing" "$c " "plumbing lists $c"
  [[ " $porcelain" != *" $c "* ]] || fail "$c listed as porcelain"
done
for c in build ls show diff checkout; do [[ " $plumbing" != *" $c "* ]] || fail "$c listed as plumbing"; done
pass "aqs alone lists the commands grouped like git"

# Unknown command / option: one line, the nearest name.
expect_error 2 "aqs: unknown command 'bulid'; did you mean 'build'?" "$AQS" bulid
expect_error 2 "aqs: unknown command 'chekout'; did you mean 'checkout'?" "$AQS" chekout
expect_error 2 "aqs: unknown command 'frobnicate' (see aqs --help)" "$AQS" frobnicate
expect_error 2 "did you mean 'show'" "$AQS" help shwo
for cmd in ls show diff checkout export build plan demo init put cat stats gc verify refs calib tokenize \
           synth-model calibrate sensitivity preprocess-image; do
  expect_error 2 "aqs $cmd: unknown option '--bogus'" "$AQS" "$cmd" --bogus
  [ "$(wc -l <"$TMP/.err")" -eq 1 ] || fail "aqs $cmd --bogus: more than one line: $ERR_OUT"
done
expect_error 2 "aqs ls: unknown option '--jsn'; did you mean '--json'?" "$AQS" ls --jsn
expect_error 2 "aqs checkout: option '--link-mode' needs a value" "$AQS" checkout --link-mode
pass "unknown commands and options: one message, with the nearest name"

"$AQS" --store "$TMP/store" init >/dev/null
S=("$AQS" --store "$TMP/store")
# Unknown names: no 'is not a digest'; say what exists and how to list it.
expect_error 1 "no build or recipe named 'nosuchrecipe' in $TMP/store (aqs ls lists builds, aqs ls --recipes recipes)" \
  "${S[@]}" checkout nosuchrecipe "$TMP/out"
[[ "$ERR_OUT" != *"not a digest"* ]] || fail "checkout still says 'not a digest': $ERR_OUT"
expect_error 1 "no build or recipe named 'top05' in $TMP/store; did you mean 'top50'?" "${S[@]}" show top05
expect_error 1 "recipe 'top60' is not built in $TMP/store yet (aqs build recipe top60)" "${S[@]}" show top60
expect_error 1 "recipe 'top60' is not built" "${S[@]}" diff top60 top70
"${S[@]}" synth-model --preset tiny --out "$TMP/m" >/dev/null 2>&1 || fail "synth-model"
printf 'a cat\n' >"$TMP/caps.txt"
expect_error 1 "no recipe 'top05' among the built-ins (see aqs ls --recipes); did you mean top50?" \
  "${S[@]}" plan --model "$TMP/m" --captions "$TMP/caps.txt" recipe top05
pass "unknown build and recipe names say what exists"

# Recipe files: a key set twice, an extends cycle (the message names the file that closes it).
mkdir -p "$TMP/rc"
printf '[recipe]\nextends = lm_only\n[slice]\ncoverage = 0.5\n\ncoverage = 0.6\n' >"$TMP/rc/dup.ini"
expect_error 1 "$TMP/rc/dup.ini:6: duplicate key 'coverage' in section [slice] (first set on line 4)" \
  "${S[@]}" plan --model "$TMP/m" --captions "$TMP/caps.txt" --recipes-dir "$TMP/rc" recipe dup
printf '[recipe]\nextends = cb\n' >"$TMP/rc/ca.ini"
printf '[recipe]\ndescription = middle\nextends = cc\n' >"$TMP/rc/cb.ini"
printf '[recipe]\n\n\nextends = ca\n' >"$TMP/rc/cc.ini"
expect_error 1 "$TMP/rc/cc.ini:4: extends cycle: ca -> cb -> cc -> ca" \
  "${S[@]}" plan --model "$TMP/m" --captions "$TMP/caps.txt" --recipes-dir "$TMP/rc" recipe ca
expect_error 1 "$TMP/rc/ca.ini:2: extends cycle: cb -> cc -> ca -> cb" \
  "${S[@]}" plan --model "$TMP/m" --captions "$TMP/caps.txt" --recipes-dir "$TMP/rc" recipe cb
pass "recipe files: duplicate keys and extends cycles name the right file and line"

# ls --recipes [--recipes-dir]: a header, natural order, workspace recipes included.
printf '[recipe]\nextends = top50\ndescription = mine\n' >"$TMP/rc/top5.ini"
rm "$TMP/rc/dup.ini" "$TMP/rc/ca.ini" "$TMP/rc/cb.ini" "$TMP/rc/cc.ini"
out="$("${S[@]}" ls --recipes --recipes-dir "$TMP/rc")"
expect_eq "$(head -1 <<<"$out" | awk '{print $1, $2}')" "RECIPE DESCRIPTION" "ls --recipes header"
order="$(awk '$1 ~ /^top[0-9]+$/ {print $1}' <<<"$out" | tr '\n' ' ')"
expect_eq "$order" "top5 top10 top20 top30 top40 top50 top60 top70 top80 top90 top100 " "natural order"
expect_contains "$out" "top5                   mine" "workspace recipe listed"
order_json="$("${S[@]}" ls --recipes --json | jq -r '[.[].recipe | select(test("^eb"))] | join(" ")')"
expect_eq "$order_json" "eb9 eb11 eb13" "natural order in JSON"
expect_error 2 "--recipes-dir goes with --recipes" "${S[@]}" ls --recipes-dir "$TMP/rc"
expect_eq "$("${S[@]}" ls)" "no builds yet (aqs build recipe NAME; aqs ls --recipes lists the recipes)" "empty ls"
pass "ls --recipes: header, natural order, --recipes-dir"

# verify: no advice to run verify from inside verify; "quarantined" only for objects it moved.
head -c 300000 /dev/urandom >"$TMP/big1.bin"; head -c 300000 /dev/urandom >"$TMP/big2.bin"
d1=$("${S[@]}" put "$TMP/big1.bin"); d2=$("${S[@]}" put "$TMP/big2.bin")
for d in "$d1" "$d2"; do
  f="$TMP/store/objects/${d:7:2}/${d:9}"
  [ -f "$f" ] || f=$(find "$TMP/store/objects" -name "${d:9}*" | sed -n 1p)
  flip_byte "$f" 1000
done
rc=0; "${S[@]}" verify --no-quarantine >"$TMP/v.out" 2>"$TMP/v.err" || rc=$?
expect_eq "$rc" "1" "verify exit on corruption"
[[ "$(cat "$TMP/v.err")" != *"run aqs verify"* ]] || fail "verify advises to run verify: $(cat "$TMP/v.err")"
[[ "$(cat "$TMP/v.err" "$TMP/v.out")" != *"quarantined)"* ]] || fail "--no-quarantine says quarantined: $(cat "$TMP/v.err")"
expect_contains "$(cat "$TMP/v.err")" "aqs verify: corrupt: object $d1" "per-object line"
rc=0; "${S[@]}" verify >"$TMP/v.out" 2>"$TMP/v.err" || rc=$?
expect_eq "$rc" "1" "verify exit on corruption (quarantining)"
expect_contains "$(cat "$TMP/v.err")" "(quarantined)" "per-object line says it was quarantined"
expect_contains "$(cat "$TMP/v.err")" "2 bad object(s) in store $TMP/store" "summary"
expect_contains "$(cat "$TMP/v.err")" "(2 quarantined)" "summary counts what was quarantined"
[[ "$(cat "$TMP/v.err")" != *"run aqs verify"* ]] || fail "verify advises to run verify: $(cat "$TMP/v.err")"
pass "verify messages say what verify did"
