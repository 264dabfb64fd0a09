#!/usr/bin/env python3
"""tests/remote/fault_proxy.py: a small HTTP proxy in front of the test cache server that injects
faults, so the remote client's retries and checks are tested against a real server.

usage: fault_proxy.py LISTEN_PORT UPSTREAM_PORT FAULTS_FILE

Each request reads FAULTS_FILE: lines "MODE COUNT [METHOD|*] [PATH-SUBSTRING]"; the first line that
matches the request and has a count left applies, and its count goes down by one (the file is
rewritten; an empty file = no fault). Modes:
  500       answer 500 without forwarding
  timeout   accept the request, send nothing for 5 s, then close
  truncate  forward, then send the full Content-Length header but only half the body
  wrong     forward, then send the body with one byte changed (same length)
  drop      forward, then close the connection without any answer
  ok        forward unchanged (spaces faults apart: each then costs exactly one retry)
Everything else is forwarded unchanged. Python 3 standard library only.
"""
import http.client
import http.server
import os
import socketserver
import sys
import threading
import time

LISTEN, UPSTREAM, FAULTS = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
lock = threading.Lock()
upstream = threading.local()  # one kept-alive connection to the server per proxy thread


def take_fault(method, path):
    """The fault mode for this request (the first rule that matches and has a count left, which is
    decremented), or None."""
    with lock:
        try:
            with open(FAULTS) as f:
                rules = [line.split() for line in f if line.strip()]
        except FileNotFoundError:
            return None
        for rule in rules:
            if len(rule) < 2 or int(rule[1]) <= 0:
                continue
            if len(rule) > 2 and rule[2] != "*" and rule[2] != method:
                continue
            if len(rule) > 3 and rule[3] not in path:
                continue
            rule[1] = str(int(rule[1]) - 1)
            tmp = FAULTS + ".tmp"
            with open(tmp, "w") as f:
                f.write("".join(" ".join(r) + "\n" for r in rules))
            os.replace(tmp, FAULTS)
            return rule[0]
        return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes

    def log_message(self, fmt, *args):
        pass

    def forward(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
        conn = getattr(upstream, "conn", None)
        if conn is None:
            conn = upstream.conn = http.client.HTTPConnection("127.0.0.1", UPSTREAM, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
        except (http.client.HTTPException, OSError):  # a kept-alive connection closed: reconnect once
            conn.close()
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheaders(), data

    def answer(self, status, headers, data, send_len=None):
        self.send_response(status)
        for k, v in headers:
            if k.lower() not in ("connection", "transfer-encoding", "content-length", "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data if send_len is None else data[:send_len])
        self.wfile.flush()

    def handle_any(self):
        mode = take_fault(self.command, self.path)
        if mode == "500":
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            self.answer(500, [], b"injected fault\n")
            return
        if mode == "timeout":
            time.sleep(5)
            self.close_connection = True
            return
        status, headers, data = self.forward()
        if mode == "drop":
            self.close_connection = True
            return
        if mode == "truncate" and len(data) > 1:
            self.answer(status, headers, data, send_len=len(data) // 2)
            self.close_connection = True
            return
        if mode == "wrong" and data:
            data = bytes([data[0] ^ 0x5A]) + data[1:]
        self.answer(status, headers, data)

    do_GET = do_HEAD = do_PUT = handle_any


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


if __name__ == "__main__":
    Server(("127.0.0.1", LISTEN), Handler).serve_forever()
