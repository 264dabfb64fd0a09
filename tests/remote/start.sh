#!/bin/bash
# tests/remote/start.sh DIR TOKEN: starts nginx (config from nginx.conf.in) as a bazel-remote-style
# cache on a free 127.0.0.1 port with its data under DIR/data, and fault_proxy.py in front of it.
# Prints "NGINX_PORT PROXY_PORT NGINX_PID PROXY_PID"; faults are written to DIR/faults. Exits 77
# when nginx is not installed (scripts/install-deps.sh installs nginx-light).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dir=$1 token=$2
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx_bin" ] || { echo "nginx not installed (scripts/install-deps.sh)" >&2; exit 77; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mkdir -p "$dir/data" "$dir/tmp"
: > "$dir/faults"
nport=$(free_port)
sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$nport|g" -e "s|@TOKEN@|$token|g" "$here/nginx.conf.in" > "$dir/nginx.conf"
"$nginx_bin" -c "$dir/nginx.conf" -p "$dir" -e "$dir/error.log" </dev/null >"$dir/nginx.out" 2>&1 &
npid=$!
pport=$(free_port)
python3 "$here/fault_proxy.py" "$pport" "$nport" "$dir/faults" </dev/null >"$dir/proxy.out" 2>&1 &
ppid=$!
for _ in $(seq 50); do
  if python3 - "$nport" "$pport" <<'PY' 2>/dev/null; then break; fi
import socket, sys
for p in sys.argv[1:]:
    socket.create_connection(("127.0.0.1", int(p)), timeout=0.2).close()
PY
  sleep 0.1
done
kill -0 "$npid" 2>/dev/null || { echo "nginx did not start: $(cat "$dir/error.log" "$dir/nginx.out" 2>/dev/null)" >&2; exit 1; }
echo "$nport $pport $npid $ppid"
