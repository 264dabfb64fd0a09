#!/usr/bin/env bash
# tests/integration/readme_session.sh: a newcomer follows README.md literally (issue 14): every
# indented code block of README.md is extracted and run as written, in order, in a fresh
# directory holding build/aqs and a caps.txt of 300 captions of varied length (blank lines
# included); only blocks that call scripts/ (installing packages, building) are left out. Each
# block must succeed; then what the README promises is checked: the short caption file is used
# whole and the build says so, ls shows the three builds, show/diff/checkout work, the demo
# workspace answers ls.
source "$(dirname "$0")/cli_common.bash"

mkdir -p build && ln -s "$AQS" build/aqs
python3 - caps.txt <<'PY'
import random, sys
random.seed(14)
subj = ["man", "woman", "dog", "small cat", "red bus", "child", "bird", "horse", "group of people"]
act = ["sitting on", "next to", "riding", "looking at", "holding", "walking along", "jumping over"]
obj = ["a bench", "the beach", "a busy street", "a field of flowers", "a wooden table", "the snow"]
with open(sys.argv[1], "w") as f:
    for i in range(300):
        words = " ".join(random.choice(act) + " " + random.choice(obj) for _ in range(random.randint(1, 6)))
        f.write(f"A {random.choice(subj)} {words}.\n")
        if i % 97 == 0:
            f.write("\n")   # blank lines are not captions
PY
expect_eq "$(grep -c . caps.txt)" "300" "captions in caps.txt"

# The README's indented code blocks, in order, each as one script.
python3 - "$AQS_SOURCE_DIR/README.md" "$TMP/blocks" <<'PY'
import sys, os
lines = open(sys.argv[1]).read().split("\n")
os.makedirs(sys.argv[2])
blocks, cur, prev_blank = [], [], True
for line in lines + [""]:
    if line.startswith("    ") and (cur or prev_blank):
        cur.append(line[4:])
    elif cur and line.strip() == "":
        blocks.append(cur); cur = []
    elif cur:
        blocks.append(cur); cur = []
    prev_blank = line.strip() == ""
n = 0
for b in blocks:
    if any("scripts/" in l for l in b):
        continue
    n += 1
    open(os.path.join(sys.argv[2], "%02d.sh" % n), "w").write("\n".join(b) + "\n")
print(n)
PY
nblocks=$(ls "$TMP/blocks" | wc -l)
[ "$nblocks" -ge 3 ] || fail "README.md has only $nblocks runnable code blocks"
for b in "$TMP"/blocks/*.sh; do
  rc=0
  bash -e "$b" >"$b.out" 2>"$b.err" || rc=$?
  [ "$rc" -eq 0 ] || fail "README block $(basename "$b") exited $rc:
$(cat "$b")
--- stderr:
$(tail -20 "$b.err")"
done
pass "all $nblocks runnable code blocks of README.md succeed as written"

# What the README says happened, happened.
session=$(grep -l "build recipe top10 top50 top90" "$TMP"/blocks/*.sh) || fail "no session block"
out="$(cat "$session.out")"
expect_contains "$out" "note: caps.txt has 300 usable rows, fewer than the 512 samples asked for: the calib-set uses all 300" \
  "the build says it used the 300 captions"
expect_contains "$out" "family check passed: the 3 checkpoints differ pairwise exactly as their plans (3 pairs)" \
  "family check line"
expect_eq "$("$AQS" ls --json | jq -r '[.[].recipe] | join(" ")')" "top10 top50 top90" "ls after the session"
[ -f out/top50/hf_quant_config.json ] && [ -f out/top50/config.json ] || fail "checkout out/top50 is not a checkpoint"
src=$("$AQS" show --json top50 | jq -r .stages.source)
[ -f "quantized/m-${src:7:8}/top50_caps/config.json" ] || fail "default checkout path with the model: $(ls quantized)"
expect_eq "$("$AQS" show --json top50 | jq -r .recipe_params.calib_samples)" "512" "recipe parameter as asked"
cs=$("$AQS" show --json top50 | jq -r '.stages["calib-set"]')
expect_eq "$("$AQS" cat "$cs" | jq .n_seqs)" "300" "the calib-set holds the 300 captions"
expect_contains "$(cat "$TMP"/blocks/01.sh.out)" "most sensitive groups" "demo summary"
expect_contains "$(cat "$TMP"/blocks/01.sh.out)" "RECIPE" "ls in the demo workspace"
pass "the README session did what the README says"
