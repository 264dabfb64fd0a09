#!/bin/bash
# tests/integration/recipe_keys_doc.sh: the recipe key table documents itself: docs/recipes.md
# holds exactly what `aqs ls --recipes --keys` prints, every key of the table is accepted by the
# recipe loader with its default, and an unknown key names the file, line and where keys are listed.
source "$(dirname "$0")/cli_common.bash"
DOC="$AQS_SOURCE_DIR/docs/recipes.md"
"$AQS" ls --recipes --keys >"$TMP/keys.md" || fail "ls --recipes --keys"
sed -n '/<!-- recipe-keys:begin/,/<!-- recipe-keys:end/p' "$DOC" | sed '1d;$d' >"$TMP/doc.md"
diff -u "$TMP/keys.md" "$TMP/doc.md" || fail "docs/recipes.md's key table differs from aqs ls --recipes --keys (paste its output)"
pass "docs/recipes.md's table is the recipe key table"

# Every key with a default, written in a recipe with that default, loads and builds the same plan
# inputs as the base recipe: the defaults in the table are the loader's.
keys=$("$AQS" ls --recipes --keys --json) || fail "ls --keys --json"
mkdir -p "$TMP/recipes"
{
  echo "[recipe]"; echo "extends = lm_only"
  for section in calib calibrate sensitivity slice export; do
    echo "[$section]"
    jq -r --arg s "$section" '.[] | select(.section == $s and .default != null) | "\(.key) = \(.default)"' <<<"$keys"
  done
} >"$TMP/recipes/defaults.ini"
"$AQS" ls --recipes --recipes-dir "$TMP/recipes" >"$TMP/ls.txt" || fail "a recipe of every default does not load: $(cat "$TMP/ls.txt")"
expect_contains "$(cat "$TMP/ls.txt")" "defaults" "recipe of defaults listed"
expect_eq "$(jq 'length' <<<"$keys")" "$(grep -c '^| \[' "$TMP/keys.md")" "JSON and Markdown rows"
printf '[recipe]\nextends = lm_only\n[slice]\ncoverage = 0.5\nmode = fast\n' >"$TMP/recipes/typo.ini"
"$AQS" --store "$TMP/store" init >/dev/null || fail "init"
expect_error 1 "typo.ini:5: unknown key 'mode' in section [slice] (aqs ls --recipes --keys lists them)" \
  "$AQS" --store "$TMP/store" plan --model "$TMP/none" --captions "$TMP/none.txt" --recipes-dir "$TMP/recipes" recipe typo
pass "every default loads; an unknown key names file:line and the key list"
