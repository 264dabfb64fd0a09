# tests/integration/cli_common.bash: helpers sourced by the tests/integration/cli_*.sh tests
# (a .bash file so that ctest does not run it as a test): a scratch directory, the aqs binary,
# and assertions on exit status, output and error messages.
set -euo pipefail

command -v jq >/dev/null || { echo "skipping: jq missing (scripts/install-deps.sh installs it)"; exit 77; }
AQS="${AQS_BIN:?AQS_BIN must point at the aqs binary}"
AQS="$(realpath "$AQS")"
unset AQS_STORE
export AQS_PROGRESS=never
TMP="$(mktemp -d "${TMPDIR:-/tmp}/aqs-cli-test-XXXXXX")"
TMP="$(realpath "$TMP")"
cleanup() { chmod -R u+w "$TMP" 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT
cd "$TMP"

fail() { echo "FAIL: $*" >&2; exit 1; }
pass() { echo "ok: $*"; }

# expect_eq ACTUAL EXPECTED WHAT
expect_eq() { [ "$1" == "$2" ] || fail "$3: got '$1', expected '$2'"; }

# expect_contains HAYSTACK NEEDLE WHAT
expect_contains() { [[ "$1" == *"$2"* ]] || fail "$3: '$2' not in: $1"; }

# expect_error RC NEEDLE CMD...: runs CMD, which must exit with RC and print NEEDLE on stderr
# (and nothing on stdout). Leaves stderr in $ERR_OUT.
expect_error() {
  local want_rc="$1" needle="$2"; shift 2
  local rc=0
  "$@" >"$TMP/.out" 2>"$TMP/.err" || rc=$?
  ERR_OUT="$(cat "$TMP/.err")"
  [ "$rc" -eq "$want_rc" ] || fail "'$*' exited $rc, expected $want_rc; stderr: $ERR_OUT"
  [[ "$ERR_OUT" == *"$needle"* ]] || fail "'$*': stderr lacks '$needle': $ERR_OUT"
  [ ! -s "$TMP/.out" ] || fail "'$*' wrote to stdout on error: $(head -c 200 "$TMP/.out")"
}

# jqr JSON FILTER: the jq filter's result on JSON, raw (strings unquoted, null as "null").
jqr() { jq -r "$2" <<<"$1"; }

# flip_byte FILE OFFSET: inverts every bit of the byte at OFFSET, so the file surely changes
# (writing a fixed byte leaves it as it was when that byte was already there: 1 time in 256).
flip_byte() {
  local b; b=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
  chmod u+w "$1" && printf "\\$(printf %o $((b ^ 255)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# sha256 FILE: "sha256:<hex>" computed independently of aqs.
sha256() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
