#!/usr/bin/env bash
# tests/bench/concurrent_builds.sh: N concurrent `aqs build` of one recipe on one fresh store
# (leases: each action computed once) against one build alone: prints the CPU seconds
# (user + sys, all processes) of both and their ratio, and checks every build exited 0 and wrote
# the same checkpoint. Usage: tests/bench/concurrent_builds.sh AQS_BIN [N=6] [preset=tiny]
set -euo pipefail
AQS="$(realpath "$1")"; N="${2:-6}"; PRESET="${3:-tiny}"
T="$(mktemp -d)"; trap 'rm -rf "$T"' EXIT; cd "$T"
"$AQS" synth-model --preset "$PRESET" --seed 3 --out model >/dev/null 2>&1
python3 -c "
import random; random.seed(5)
w=['man','dog','bus','bench','beach','street','field','snow','cat','bird']
open('caps.txt','w').write(''.join(' '.join(random.choice(w) for _ in range(random.randint(4,14)))+'.\n' for _ in range(400)))"
mkdir recipes
printf '[recipe]\nextends = lm_only\n[calib]\nsamples = 64\nmax_len = 64\nchunk_sequences = 8\n[sensitivity]\nscore_samples = 32\n[slice]\ncoverage = 0.5\n' >recipes/b50.ini
ARGS=(--model model --captions caps.txt --recipes-dir recipes --quiet --no-checkout)
cpu_of() { awk '{u+=$1; s+=$2} END {printf "%.3f", u+s}' "$@"; }
"$AQS" --store one init >/dev/null
/usr/bin/time -f "%U %S" -o one.cpu "$AQS" --store one build "${ARGS[@]}" b50 >/dev/null
"$AQS" --store many init >/dev/null
for i in $(seq "$N"); do
  /usr/bin/time -f "%U %S" -o "p$i.cpu" "$AQS" --store many build "${ARGS[@]}" --json b50 >"p$i.json" 2>"p$i.err" &
done
fails=0; for job in $(jobs -p); do wait "$job" || fails=$((fails + 1)); done
results="$(for i in $(seq "$N"); do jq -r '.[0].stages[-1].result' "p$i.json"; done | sort -u | wc -l)"
runs="$(cat p*.json | jq -s '[.[][0].stages[] | select(.state == "RUN")] | length')"
one="$(cpu_of one.cpu)"; many="$(cpu_of p*.cpu)"
echo "preset $PRESET: 1 build ${one}s CPU; $N concurrent builds ${many}s CPU (ratio $(awk "BEGIN{printf \"%.2f\", $many/$one}")); failures $fails; distinct results $results; stage runs $runs"
