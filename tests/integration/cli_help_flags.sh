#!/usr/bin/env bash
# tests/integration/cli_help_flags.sh: --help text matches behaviour: every option a command's
# --help documents is accepted by that command. Each one is passed followed by an option that does
# not exist: getopt reads options left to right before the command does anything, so a documented
# option that the parser lacks is the one named in the error, otherwise the made-up one is.
source "$(dirname "$0")/cli_common.bash"

mapfile -t cmds < <("$AQS" --help | awk '/^(porcelain|plumbing)/ {on=1; next} on && NF>1 && /^  [a-z]/ {print $1}')
[ "${#cmds[@]}" -ge 15 ] || fail "aqs --help lists only ${#cmds[@]} commands"
checked=0
for cmd in "${cmds[@]}"; do
  help="$("$AQS" "$cmd" --help)" || fail "aqs $cmd --help exits non-zero"
  [[ "$help" == usage:* ]] || fail "aqs $cmd --help does not start with usage:"
  # Each documented long option, with "v" when the help shows it taking a value (--out DIR,
  # --backend cpu|cuda, --seed S).
  mapfile -t flags < <(python3 - "$help" <<'PY'
import re, sys
# The usage lines (up to the first blank line) and everything from "options" on: prose elsewhere
# mentions other commands' options. --store is the global option (aqs --store DIR <command>).
text = sys.argv[1]
usage, _, rest = text.partition("\n\n")
at = rest.find("options")
text = usage + "\n" + (rest[at:] if at >= 0 else "")
seen = {}
for m in re.finditer(r'(?<![\w-])(--[a-z][a-z0-9-]*)(=|[ ](?=[A-Z][A-Z_]*\b|[a-z0-9.]+(?:\|[a-z0-9.]+)+))?', text):
    flag, val = m.group(1), bool(m.group(2))
    if flag in ("--help", "--", "--store"): continue
    seen[flag] = seen.get(flag, False) or val
for flag, val in seen.items(): print(flag, "v" if val else "-")
PY
)
  for entry in "${flags[@]}"; do
    read -r flag kind <<<"$entry"
    args=("$flag")
    [ "$kind" = v ] && args+=(1)
    rc=0
    (cd "$TMP" && "$AQS" --store "$TMP/nostore" "$cmd" "${args[@]}" --zz-not-an-option) >/dev/null 2>"$TMP/err" || rc=$?
    err="$(cat "$TMP/err")"
    [ "$rc" -eq 2 ] || fail "aqs $cmd ${args[*]} --zz-not-an-option exited $rc: $err"
    # Accepted: the parser went on to the made-up option, or it refused the value "1" (a usage
    # error that is not about an unknown option).
    if [[ "$err" != *"unknown option '--zz-not-an-option'"* ]]; then
      [[ "$err" != *"unknown option"* && "$err" != *"needs a value"* ]] \
        || fail "aqs $cmd: documented option $flag is not accepted: $err"
    fi
    checked=$((checked + 1))
  done
done
[ "$checked" -ge 60 ] || fail "only $checked documented options found"
pass "every documented option of ${#cmds[@]} commands is accepted ($checked options)"
