#!/bin/bash
# tests/integration/share_remote.sh: the HTTP remote against a real server: nginx with WebDAV PUT
# (tests/remote/nginx.conf.in) behind the fault-injecting proxy (tests/remote/fault_proxy.py).
# Teammate A builds with upload = true; teammate B's build of the same recipe and data is all hits
# through the remote; push/pull of a ref; a pulled build checks out and rebuilds offline; every
# injected fault (500, timeout, truncated body, wrong body, dropped connection, no token) gives a
# retry or a clear error and never a corrupt store. Skips (77) without nginx unless
# AQS_REQUIRE_NGINX=1 (.ci/run sets it).
source "$(dirname "$0")/build_common.bash"

TOKEN="s3cret-$RANDOM$RANDOM"
rc=0; ports=$(bash "$AQS_SOURCE_DIR/tests/remote/start.sh" "$TMP/server" "$TOKEN") || rc=$?
if [ "$rc" -eq 77 ]; then
  [ "${AQS_REQUIRE_NGINX:-0}" = 1 ] && fail "nginx is required (scripts/install-deps.sh installs nginx-light)"
  echo "skipping: nginx not installed"; exit 77
fi
[ "$rc" -eq 0 ] || fail "starting nginx and the proxy"
read -r NGINX_PORT PROXY_PORT NGINX_PID PROXY_PID <<<"$ports"
stop_servers() { kill "$NGINX_PID" "$PROXY_PID" 2>/dev/null || true; wait "$NGINX_PID" "$PROXY_PID" 2>/dev/null || true; }
trap 'stop_servers; cleanup' EXIT
URL="http://127.0.0.1:$PROXY_PORT/cache"
DATA="$TMP/server/data/cache"
FAULTS="$TMP/server/faults"
export AQS_TEST_TOKEN="$TOKEN"
fault() { echo "$*" > "$FAULTS"; }  # one rule; see tests/remote/fault_proxy.py

# workspace DIR UPLOAD [URL [RETRIES]]: a workspace with its own store and the remote.
workspace() {
  mkdir -p "$1"
  printf '[store]\npath = store\n[remote]\nurl = %s\nupload = %s\ntoken_env = AQS_TEST_TOKEN\ntimeout = 1\nretries = %s\n' \
    "${3:-$URL}" "$2" "${4:-3}" > "$1/.aqstore"
  (cd "$1" && "$AQS" init >/dev/null 2>&1) || fail "init $1"
}

# --- A builds and uploads; the server holds bazel-remote's layout ---
workspace "$TMP/a" true
cd "$TMP/a"
out=$("$AQS" build --json "${BUILD_ARGS[@]}" --out "$TMP/a/co" recipe fast50 2>"$TMP/a.err") || fail "A's build: $(cat "$TMP/a.err")"
[ ! -s "$TMP/a.err" ] || fail "A's build warned: $(cat "$TMP/a.err")"
n_cas=$(ls "$DATA/cas" | wc -l); n_ac=$(ls "$DATA/ac" | wc -l)
[ "$n_cas" -gt 10 ] && [ "$n_ac" -gt 5 ] || fail "upload: $n_cas cas and $n_ac ac entries"
for f in $(ls "$DATA/cas" | sed -n 1,20p); do
  expect_eq "$(sha256sum "$DATA/cas/$f" | cut -d' ' -f1)" "$f" "cas/$f holds the bytes of its digest"
done
ac=$(ls "$DATA/ac" | sed -n 1p)
jq -e '.result and .key_doc and .stage' "$DATA/ac/$ac" >/dev/null || fail "ac/$ac is not an action record"
pass "A's build uploads $n_cas objects to /cas/<sha256> and $n_ac action records to /ac/<key>"

# --- B (no upload) plans and builds the same recipe and data: all hits through the remote ---
workspace "$TMP/b" false
cd "$TMP/b"
plan=$("$AQS" plan "${BUILD_ARGS[@]}" recipe fast50 2>/dev/null) || fail "B's plan"
expect_contains "$plan" "sensitivity  HIT (remote $URL)" "plan names the remote"
expect_eq "$("$AQS" stats --json | jq .actions)" "0" "plan copied nothing"
cas_before=$(ls "$DATA/cas" | wc -l)
out=$("$AQS" build --json "${BUILD_ARGS[@]}" --out "$TMP/b/co" recipe fast50 2>"$TMP/b.err") || fail "B's build: $(cat "$TMP/b.err")"
expect_eq "$(stage_states "$out" fast50)" \
  "source=HIT calib-set=HIT calibrate=HIT sensitivity=HIT slice=HIT export=HIT" "B's build states"
diff -r -x .aqs-checkout "$TMP/a/co" "$TMP/b/co" >/dev/null || fail "B's checkpoint differs from A's"
"$AQS" verify >/dev/null || fail "B's store verifies"
expect_eq "$(ls "$DATA/cas" | wc -l)" "$cas_before" "B (upload = false) uploaded nothing"
pass "B's build of the same recipe and data is all hits via the remote; checkpoint identical"

# --- push / pull a named build; the pulled build works offline ---
cd "$TMP/a"
pj=$("$AQS" push --json fast50) || fail "push"
A_RECORD=$(jqr "$pj" '.refs[0].target')
FULL_REF=$(jqr "$pj" '.refs[0].ref')
[[ "$FULL_REF" =~ ^recipe/fast50/[0-9a-f]{16}-[0-9a-f]{16}$ ]] || fail "pushed ref $FULL_REF"
expect_eq "$(jqr "$pj" '.refs[0].objects_moved')" "1" "objects push sends after the upload (only the build record)"
[ "$(jqr "$pj" '.refs[0].actions')" -ge 6 ] || fail "push sent $(jqr "$pj" '.refs[0].actions') action records"
"$AQS" push fast50 >"$TMP/push.out" 2>&1 || fail "push (text)"
expect_contains "$(cat "$TMP/push.out")" "pushed $FULL_REF -> sha256:" "push summary"
workspace "$TMP/c" false
cd "$TMP/c"
pl=$("$AQS" pull --json fast50) || fail "pull"
[ "$(jqr "$pl" '.refs[0].objects_moved')" -gt 10 ] || fail "pull fetched $(jqr "$pl" '.refs[0].objects_moved') objects"
expect_eq "$(jqr "$pl" '.refs[0].ref')" "$FULL_REF" "pull by recipe name sets the build's full ref"
expect_eq "$("$AQS" refs | grep -c " $FULL_REF\$")" "1" "pulled ref"
stop_servers
"$AQS" checkout fast50 "$TMP/c/co" >/dev/null 2>&1 || fail "checkout after pull, server down"
diff -r -x .aqs-checkout "$TMP/a/co" "$TMP/c/co" >/dev/null || fail "pulled checkout differs from A's"
out=$("$AQS" build --json "${BUILD_ARGS[@]}" --no-checkout recipe fast50 2>/dev/null) || fail "offline rebuild"
expect_eq "$(stage_states "$out" fast50)" \
  "source=HIT calib-set=HIT calibrate=HIT sensitivity=HIT slice=HIT export=HIT" "offline rebuild after pull"
pass "push then pull: checkout and an all-hit rebuild work with the server down"
ports=$(bash "$AQS_SOURCE_DIR/tests/remote/start.sh" "$TMP/server2" "$TOKEN") || fail "restart servers"
read -r NGINX_PORT PROXY_PORT2 NGINX_PID PROXY_PID <<<"$ports"
# the same data behind the new proxy: reuse the first server's files
rm -rf "$TMP/server2/data" && ln -s "$TMP/server/data" "$TMP/server2/data"
URL="http://127.0.0.1:$PROXY_PORT2/cache"; FAULTS="$TMP/server2/faults"

# Object reads read through: aqs cat of an object only the remote holds.
workspace "$TMP/e" false "$URL"; cd "$TMP/e"
obj=$(ls -S "$DATA/cas" | sed -n 1p)
"$AQS" cat "sha256:$obj" > "$TMP/e/cat.out" 2>/dev/null || fail "cat through the remote"
cmp -s "$TMP/e/cat.out" "$DATA/cas/$obj" || fail "cat through the remote: other bytes"
expect_eq "$("$AQS" stats --json | jq .objects)" "1" "objects copied in by cat"
pass "aqs cat of an object only the remote holds downloads it (verified) and keeps it"

# --- faults: retried, or a clear error; never a corrupt store ---
# pull_fresh [RETRIES]: a new workspace pulls fast50: $PULL_RC, $PULL_ERR, $PULL_JSON; its store must verify.
n=0
pull_fresh() {
  n=$((n + 1)); workspace "$TMP/f$n" false "$URL" "${1:-3}"; cd "$TMP/f$n"
  PULL_RC=0; "$AQS" pull --json fast50 >"$TMP/f$n.json" 2>"$TMP/f$n.err" || PULL_RC=$?
  PULL_ERR=$(cat "$TMP/f$n.err"); PULL_JSON=$(cat "$TMP/f$n.json")
  "$AQS" verify >/dev/null 2>&1 || fail "store verifies after fault '$(cat "$FAULTS")': $(aqs verify 2>&1)"
}
# Each fault is followed by a few clean answers, so every fault costs one retry.
printf '%s\n' "500 1 GET /cas/" "ok 3 GET /cas/" "timeout 1 GET /cas/" "ok 3 GET /cas/" "truncate 1 GET /cas/" \
  "ok 3 GET /cas/" "wrong 1 GET /cas/" "ok 3 GET /cas/" "drop 1 GET /cas/" "ok 3 GET /cas/" "500 1 GET /ac/" \
  "ok 1 GET /ac/" "wrong 1 GET /ac/" > "$FAULTS"
pull_fresh
expect_eq "$PULL_RC" "0" "pull through transient faults (stderr: $PULL_ERR)"
expect_eq "$(awk '{s += $2} END {print s}' "$FAULTS")" "0" "faults left unused"
# 7 faults, 6 counted retries: libcurl itself resends a request whose kept-alive connection was dropped.
expect_eq "$(jqr "$PULL_JSON" .retries)" "6" "retries for 7 faults"
expect_eq "$(jqr "$PULL_JSON" '.refs[0].target')" "$A_RECORD" "pulled build record after the faults"
pass "500s, a timeout, a truncated body, wrong bodies and a dropped connection are retried; same build, verified stores"

fault "wrong 1000 GET /cas/"
pull_fresh
expect_eq "$PULL_RC" "1" "pull with every object body wrong"
expect_contains "$PULL_ERR" "hashes to sha256:" "wrong-body error"
expect_contains "$PULL_ERR" "(after 4 tries)" "wrong-body error counts the tries"
expect_eq "$("$AQS" refs | wc -l)" "0" "no ref after a failed pull"
expect_eq "$("$AQS" stats --json | jq .objects)" "0" "no object from a wrong body"
fault "500 1000"
pull_fresh
expect_eq "$PULL_RC" "1" "pull with a failing server"
expect_contains "$PULL_ERR" "HTTP 500 (after 4 tries)" "5xx error"
fault "wrong 1000 GET /ac/"
pull_fresh
expect_eq "$PULL_RC" "1" "pull with a damaged ref record"
expect_contains "$PULL_ERR" "remote ref recipe/fast50: it is not JSON" "damaged ref record error"
fault ""
unset AQS_TEST_TOKEN
pull_fresh
expect_eq "$PULL_RC" "1" "pull without the token"
expect_contains "$PULL_ERR" "\$AQS_TEST_TOKEN, which is not set" "missing token warning"
expect_contains "$PULL_ERR" "HTTP 401: access refused (check the token in \$AQS_TEST_TOKEN)" "401 error"
export AQS_TEST_TOKEN="$TOKEN"
expect_error 1 "no ref recipe/nosuch in remote $URL" "$AQS" pull nosuch
pl=$("$AQS" pull --json "$FULL_REF") || fail "pull by full ref"
expect_eq "$(jqr "$pl" '.refs[0].target')" "$A_RECORD" "pull by full ref"
pass "persistent wrong bodies, 5xx, a damaged ref record and a missing token are clear errors; stores stay clean"

# A pull killed mid-transfer leaves no ref and a sound store; pulling again completes it.
printf '%s\n' "ok 40 GET /cas/" "timeout 1000 GET /cas/" > "$FAULTS"
workspace "$TMP/k" false "$URL"; cd "$TMP/k"
"$AQS" pull fast50 >/dev/null 2>&1 &
pull_pid=$!
for _ in $(seq 100); do [ "$(awk 'NR == 1 {print $2}' "$FAULTS")" = 0 ] && break; sleep 0.1; done
sleep 0.3; kill -9 "$pull_pid"; wait "$pull_pid" 2>/dev/null || true
expect_eq "$("$AQS" refs | wc -l)" "0" "refs after a killed pull"
"$AQS" verify >/dev/null 2>&1 || fail "store after a killed pull"
fault ""
"$AQS" pull fast50 >/dev/null 2>&1 || fail "pull after a killed pull"
expect_eq "$("$AQS" refs | grep -c " $FULL_REF\$")" "1" "ref after the second pull"
"$AQS" verify >/dev/null 2>&1 || fail "store after the second pull"
pass "a pull killed mid-transfer leaves no ref and a sound store; the next pull completes"

# A build whose remote fails keeps working locally (one warning, no corruption).
fault "500 1000"
workspace "$TMP/g" true "$URL"; cd "$TMP/g"
out=$("$AQS" build --json "${BUILD_ARGS[@]}" --no-checkout recipe fast50 2>"$TMP/g.err") || fail "build with a failing remote"
expect_eq "$(grep -c 'warning: remote GET' "$TMP/g.err")" "1" "one warning for a failing remote"
expect_eq "$(stage_states "$out" fast50)" \
  "source=RUN calib-set=RUN calibrate=RUN sensitivity=RUN slice=RUN export=RUN" "local build when the remote fails"
"$AQS" verify >/dev/null 2>&1 || fail "store after a build with a failing remote"
! grep -rq "$TOKEN" "$TMP"/*.err "$TMP"/*.json 2>/dev/null || fail "the token was printed"
pass "a failing remote during a build is one warning; the build computes locally; the token is never printed"
