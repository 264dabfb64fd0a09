#!/usr/bin/env bash
# tests/integration/tokenize_cli.sh: `aqs tokenize` end to end on the committed synthetic tokenizer
# (and the real Qwen one when ../shared has it): ids equal to the HF goldens, --json, --decode round
# trips, a directory as --tokenizer, and each user error with its line number / file name.
source "$(dirname "$0")/cli_common.bash"
fixtures="$AQS_SOURCE_DIR/tests/fixtures/tokenizer"
tok="$fixtures/synth_small_tokenizer.json"

# golden ids (space-separated) of corpus case N (1-based) in golden file G
golden_ids() { sed -n "$(($2 + 1))p" "$1" | jq -r '.ids | map(tostring) | join(" ")'; }
golden_text() { sed -n "$(($2 + 1))p" "$1" | jq -r '.text'; }

out="$("$AQS" tokenize --help)"
expect_contains "$out" "usage: aqs tokenize --tokenizer" "help"

# three captions in, three id lines out, equal to HF's
printf '%s\n' "$(golden_text "$fixtures/synth_small_golden.jsonl" 1)" \
  "$(golden_text "$fixtures/synth_small_golden.jsonl" 2)" \
  "$(golden_text "$fixtures/synth_small_golden.jsonl" 3)" > captions.txt
"$AQS" tokenize --tokenizer "$tok" < captions.txt > ids.txt
expect_eq "$(wc -l < ids.txt)" "3" "one id line per input line"
for i in 1 2 3; do
  expect_eq "$(sed -n "${i}p" ids.txt)" "$(golden_ids "$fixtures/synth_small_golden.jsonl" $i)" "ids of line $i"
done
pass "encode equals the HF golden"

"$AQS" tokenize --tokenizer "$fixtures" --json < /dev/null > /dev/null 2>&1 && fail "fixtures dir has no tokenizer.json"
mkdir tokdir && cp "$tok" tokdir/tokenizer.json
"$AQS" tokenize --tokenizer tokdir --json < captions.txt > ids.json
expect_eq "$(jq -c . ids.json | sed -n 1p)" "$(sed -n 2p "$fixtures/synth_small_golden.jsonl" | jq -c .ids)" "--json line 1"
pass "--json and a directory as --tokenizer"

"$AQS" tokenize --tokenizer "$tok" --decode < ids.txt > decoded.txt
cmp -s decoded.txt captions.txt || fail "decode(encode(x)) != x: $(diff decoded.txt captions.txt | head -5)"
"$AQS" tokenize --tokenizer "$tok" --decode --json < ids.json > decoded.json
expect_eq "$(jq -r . decoded.json | sed -n 1p)" "$(head -1 captions.txt)" "--decode --json"
pass "decode round trip (plain and JSON)"

im_start="$(printf '<|im_start|>user\n' | "$AQS" tokenize --tokenizer "$tok" | cut -d' ' -f1)"
expect_eq "$(jq -r '.added_tokens[] | select(.content == "<|im_start|>") | .id' "$tok")" "$im_start" "special token inline"
expect_eq "$(echo "$im_start" | "$AQS" tokenize --tokenizer "$tok" --decode --skip-special)" "" "--skip-special"
pass "special tokens"

printf 'fine\nbad \xff byte\nnever reached\n' > bad.txt
rc=0; "$AQS" tokenize --tokenizer "$tok" < bad.txt > bad.out 2> bad.err || rc=$?
expect_eq "$rc" "1" "invalid UTF-8 exit status"
expect_contains "$(cat bad.err)" "stdin line 2: text is not valid UTF-8 at byte 4" "invalid UTF-8 message"
expect_eq "$(wc -l < bad.out)" "1" "lines before the bad one are printed"
expect_error 1 "cannot open tokenizer $TMP/missing.json" "$AQS" tokenize --tokenizer "$TMP/missing.json"
expect_error 1 "stdin line 1: token id 999999 (index 1)" sh -c "echo '5 999999' | '$AQS' tokenize --tokenizer '$tok' --decode"
expect_error 1 "stdin line 1: not a token id at column 3: 'x7'" sh -c "echo '5 x7' | '$AQS' tokenize --tokenizer '$tok' --decode"
expect_error 2 "--tokenizer FILE is required" "$AQS" tokenize
expect_error 2 "--skip-special needs --decode" "$AQS" tokenize --tokenizer "$tok" --skip-special
expect_error 2 "unexpected argument 'words'" "$AQS" tokenize --tokenizer "$tok" words
printf '{"model": {"type": "Unigram"}}' > unigram.json
expect_error 1 "unigram.json: model.type: 'Unigram' is not supported" "$AQS" tokenize --tokenizer unigram.json
pass "errors name the line, the id, the file"

qwen="$AQS_SHARED_DIR/fixtures/qwen-tokenizer/tokenizer.json"
if [ -r "$qwen" ]; then
  golden="$fixtures/qwen_golden.jsonl"
  cases="31 40 52" # CJK, full-width spaces, emoji cases of the corpus: one aqs run for all three
  for n in $cases; do golden_text "$golden" $n; done > qwen_in.txt
  expect_eq "$(wc -l < qwen_in.txt)" "3" "qwen cases are one line each"
  "$AQS" tokenize --tokenizer "$qwen" < qwen_in.txt > qwen_out.txt
  i=0
  for n in $cases; do
    i=$((i + 1))
    expect_eq "$(sed -n "${i}p" qwen_out.txt)" "$(golden_ids "$golden" $n)" "qwen case $n"
  done
  pass "real Qwen tokenizer equals the HF golden"
else
  echo "note: $qwen missing; the Qwen part is skipped"
fi
