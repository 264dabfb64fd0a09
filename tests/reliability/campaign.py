#!/usr/bin/env python3
"""tests/reliability/campaign.py: the store's reliability campaign (docs/reliability.md).

  kills    SIGKILL `aqs build`, `checkout`, `gc`, `verify`, `push` and `pull` (against nginx,
           when installed) at random points on one store;
           after each kill `aqs verify` must pass, and at checkpoints every recipe must build and
           check out bit-identical to a checkout from a clean store.
  damage   damage one object of each kind (raw tensor file, zstd file, inline LMDB value, action
           record): the next build must detect it (a repair message, or the stage recomputed) and
           its output must equal the clean store's.
  builders N concurrent builds of one recipe on a fresh store: all exit 0, one result, each stage
           computed once; CPU seconds against one build.
  shared   two users (root and nobody, through a --shared store's group) build, check out and
           verify in one store.
  readonly a read-only bind mount of a store: ls, show, cat, verify, checkout work.

Usage: campaign.py AQS_BIN [--kills N] [--seed S] [--builders N] [--parts kills,damage,...]
Prints one line per part and a JSON summary (--json FILE). Exit 1 when any check fails."""
import argparse
import ctypes
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

RECIPES = [10, 30, 50, 70, 90]


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


class Campaign:
    def __init__(self, aqs, tmp, seed):
        self.aqs, self.tmp, self.rng = aqs, tmp, random.Random(seed)
        self.failures = []
        self.model = os.path.join(tmp, "model")
        self.caps = os.path.join(tmp, "caps.txt")
        self.recipes = os.path.join(tmp, "recipes")
        r = run([aqs, "synth-model", "--preset", "tiny", "--seed", "3", "--out", self.model])
        assert r.returncode == 0, r.stderr
        rnd = random.Random(5)
        words = "man woman dog cat bus child bird horse bench beach street field table snow".split()
        with open(self.caps, "w") as f:
            for _ in range(200):
                f.write(" ".join(rnd.choice(words) for _ in range(rnd.randint(3, 12))) + ".\n")
        os.makedirs(self.recipes)
        with open(os.path.join(self.recipes, "fast.ini"), "w") as f:
            f.write("[recipe]\nextends = lm_only\n[calib]\nsamples = 32\nmax_len = 64\n"
                    "chunk_sequences = 8\n[sensitivity]\nscore_samples = 16\n")
        for x in RECIPES:
            with open(os.path.join(self.recipes, "fast%d.ini" % x), "w") as f:
                f.write("[recipe]\nextends = fast\n[slice]\ncoverage = %.2f\n" % (x / 100))
        self.build_args = ["--model", self.model, "--captions", self.caps, "--recipes-dir", self.recipes,
                           "--quiet"]
        # The clean reference: every recipe built and checked out by copy.
        self.ref = os.path.join(tmp, "ref")
        store = self.new_store("clean")
        for x in RECIPES:
            self.must([aqs, "--store", store, "build", "--no-checkout"] + self.build_args + ["fast%d" % x])
            self.must([aqs, "--store", store, "checkout", "--link-mode", "copy", "fast%d" % x,
                       os.path.join(self.ref, "fast%d" % x)])

    def fail(self, what):
        self.failures.append(what)
        print("FAIL:", what, file=sys.stderr)

    def must(self, cmd, **kw):
        r = run(cmd, **kw)
        if r.returncode != 0:
            raise RuntimeError("%s -> %d: %s" % (" ".join(cmd), r.returncode, r.stderr.strip()))
        return r

    def new_store(self, name, inline_max=None, shared=False):
        path = os.path.join(self.tmp, name)
        self.must([self.aqs, "--store", path, "init"] + (["--shared"] if shared else []))
        if inline_max is not None:  # small inline limit: builds then make zstd file objects too
            conf = os.path.join(path, "aqs.conf")
            text = open(conf).read().replace("inline_max = 65536", "inline_max = %d" % inline_max)
            open(conf, "w").write(text)
        return path

    def same_as_ref(self, store, x, mode="copy"):
        out = os.path.join(self.tmp, "co-check")
        shutil.rmtree(out, ignore_errors=True)
        r = run([self.aqs, "--store", store, "checkout", "--link-mode", mode, "fast%d" % x, out])
        if r.returncode != 0:
            return "checkout failed: " + r.stderr.strip()
        r = run(["diff", "-r", "-x", ".aqs-checkout", os.path.join(self.ref, "fast%d" % x), out])
        return None if r.returncode == 0 else "differs: " + r.stdout[:300]

    # ---- kills
    def start_remote(self):
        """nginx as the HTTP remote (tests/remote/start.sh), for push and pull; None without nginx."""
        here = os.path.dirname(os.path.realpath(__file__))
        start = os.path.join(here, "..", "remote", "start.sh")
        token = "campaign-%d" % self.rng.randrange(1 << 30)
        r = run(["bash", start, os.path.join(self.tmp, "server"), token])
        if r.returncode != 0:
            if os.environ.get("AQS_REQUIRE_NGINX") == "1":
                raise RuntimeError("nginx is required for push/pull kills: " + r.stderr.strip())
            print("kills: no nginx, push and pull are left out", file=sys.stderr)
            return None
        nport, _pport, npid, ppid = r.stdout.split()
        self.server_pids = [int(npid), int(ppid)]
        os.environ["AQS_CAMPAIGN_TOKEN"] = token
        return "http://127.0.0.1:%s/cache" % nport

    def stop_remote(self):
        for pid in getattr(self, "server_pids", []):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def kills(self, n):
        store = self.new_store("kills", inline_max=4096)
        ops = {"build": 0, "checkout": 0, "gc": 0, "verify": 0}
        # push and pull run in a workspace whose .aqstore names the store and the remote; the
        # remote is filled once from the clean store so that pulls have something to fetch.
        url = self.start_remote()
        ws = os.path.join(self.tmp, "kills-ws")
        if url:
            os.makedirs(ws)
            with open(os.path.join(ws, ".aqstore"), "w") as f:
                f.write("[store]\npath = %s\n[remote]\nurl = %s\ntoken_env = AQS_CAMPAIGN_TOKEN\n"
                        "timeout = 5\nretries = 1\n" % (store, url))
            clean_ws = os.path.join(self.tmp, "clean-ws")
            os.makedirs(clean_ws)
            with open(os.path.join(clean_ws, ".aqstore"), "w") as f:
                f.write("[store]\npath = %s\n[remote]\nurl = %s\ntoken_env = AQS_CAMPAIGN_TOKEN\n"
                        % (os.path.join(self.tmp, "clean"), url))
            self.must([self.aqs, "push"] + ["fast%d" % x for x in RECIPES], cwd=clean_ws)
            ops.update({"push": 0, "pull": 0})
        verify_clean = identical = checks = 0
        for i in range(n):
            op = self.rng.choice(list(ops))
            x = self.rng.choice(RECIPES)
            if op == "build":
                cmd = ["build"] + self.build_args + ["--no-checkout", "fast%d" % x]
            elif op == "checkout":
                cmd = ["checkout", "--link-mode", self.rng.choice(["reflink", "hardlink", "copy"]), "fast%d" % x,
                       os.path.join(self.tmp, "co-kill-%d" % self.rng.randrange(3))]
            elif op == "gc":
                cmd = ["gc", "--limit", "0"]
            elif op in ("push", "pull"):
                cmd = [op, "fast%d" % x]
            else:
                cmd = ["verify"]
            if op in ("push", "pull"):  # the workspace's .aqstore names the store and the remote
                p = subprocess.Popen([self.aqs] + cmd, cwd=ws, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            else:
                p = subprocess.Popen([self.aqs, "--store", store] + cmd, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
            time.sleep(self.rng.uniform(0, 0.6))
            p.send_signal(signal.SIGKILL)
            p.wait()
            ops[op] += 1
            r = run([self.aqs, "--store", store, "verify"])
            if r.returncode == 0:
                verify_clean += 1
            else:
                self.fail("verify after a SIGKILL of %s (kill %d): %s" % (op, i, r.stderr.strip()[-300:]))
            if (i + 1) % 25 == 0 or i + 1 == n:
                for x in RECIPES:
                    checks += 1
                    r = run([self.aqs, "--store", store, "build", "--no-checkout"] + self.build_args + ["fast%d" % x])
                    why = self.same_as_ref(store, x) if r.returncode == 0 else "build: " + r.stderr.strip()
                    if why:
                        self.fail("after %d kills, fast%d: %s" % (i + 1, x, why))
                    else:
                        identical += 1
        self.stop_remote()
        return {"kills": n, "per_op": ops, "verify_clean": verify_clean, "builds_checked": checks,
                "bit_identical": identical}

    # ---- damage
    def lmdb_flip(self, store, dbname, key, offset=None, within=None):
        """Flips one byte of the value of key in database dbname through liblmdb: at offset
        (negative: from the end), or at a random place inside the first occurrence of the bytes
        `within` (e.g. a JSON member)."""
        lib = ctypes.CDLL("liblmdb.so.0")
        class Val(ctypes.Structure):
            _fields_ = [("size", ctypes.c_size_t), ("data", ctypes.c_void_p)]
        env, txn, dbi = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_uint()
        assert lib.mdb_env_create(ctypes.byref(env)) == 0
        lib.mdb_env_set_maxdbs(env, 16)
        lib.mdb_env_set_mapsize(env, ctypes.c_size_t(1 << 30))
        assert lib.mdb_env_open(env, os.path.join(store, "index").encode(), 0, 0o644) == 0
        assert lib.mdb_txn_begin(env, None, 0, ctypes.byref(txn)) == 0
        assert lib.mdb_dbi_open(txn, dbname.encode(), 0, ctypes.byref(dbi)) == 0
        kbuf = ctypes.create_string_buffer(key, len(key))
        k, v = Val(len(key), ctypes.cast(kbuf, ctypes.c_void_p)), Val()
        assert lib.mdb_get(txn, dbi, ctypes.byref(k), ctypes.byref(v)) == 0
        data = bytearray(ctypes.string_at(v.data, v.size))
        if within is not None:
            start = bytes(data).index(within) + len(within)
            offset = self.rng.randrange(start, start + 40)
        data[offset] ^= 0x08
        nbuf = ctypes.create_string_buffer(bytes(data), len(data))
        nv = Val(len(data), ctypes.cast(nbuf, ctypes.c_void_p))
        assert lib.mdb_put(txn, dbi, ctypes.byref(k), ctypes.byref(nv), 0) == 0
        assert lib.mdb_txn_commit(txn) == 0
        lib.mdb_env_close(env)

    def build_closure(self, store):
        """Hex digests of every object the store's refs reach (what a build of them reads)."""
        seen, todo = set(), [l.split()[0] for l in self.must([self.aqs, "--store", store, "refs", "list"]).stdout.split("\n") if l.strip()]
        while todo:
            d = todo.pop()
            if d in seen:
                continue
            seen.add(d)
            info = json.loads(self.must([self.aqs, "--store", store, "cat", "--json", d]).stdout)
            todo.extend(info.get("children") or [])
        return {d[7:] for d in seen}

    def damage(self):
        results = {}
        kinds = ["raw tensor file", "zstd file", "inline LMDB value", "action record"]
        x = 50
        base = self.new_store("damage-base", inline_max=4096)
        self.must([self.aqs, "--store", base, "build", "--no-checkout"] + self.build_args + ["fast%d" % x])
        reached = self.build_closure(base)
        for kind in kinds:
            store = os.path.join(self.tmp, "damage-" + kind.split()[0])
            shutil.copytree(base, store, symlinks=True)
            objs = [os.path.join(dp, f) for dp, _, fs in os.walk(os.path.join(store, "objects")) for f in fs
                    if os.path.basename(dp) + f.replace(".zst", "") in reached]
            if kind in ("raw tensor file", "zstd file"):
                pick = sorted(o for o in objs if o.endswith(".zst") == (kind == "zstd file"))
                if not pick:
                    self.fail("no %s in the store" % kind)
                    continue
                path = self.rng.choice(pick)
                os.chmod(path, 0o644)
                with open(path, "r+b") as f:
                    size = os.path.getsize(path)
                    at = self.rng.randrange(size)
                    f.seek(at)
                    b = f.read(1)
                    f.seek(at)
                    f.write(bytes([b[0] ^ 0x01]))
                os.chmod(path, 0o444)
            elif kind == "inline LMDB value":
                # The export's checkpoint manifest is inline (small) and every build reads it.
                out = json.loads(self.must([self.aqs, "--store", store, "build", "--json", "--no-checkout"] +
                                           self.build_args + ["fast%d" % x]).stdout)
                digest = bytes.fromhex(out[0]["stages"][-1]["result"][7:])
                self.lmdb_flip(store, "obj", digest, offset=-5)
            else:
                out = json.loads(self.must([self.aqs, "--store", store, "build", "--json", "--no-checkout"] +
                                           self.build_args + ["fast%d" % x]).stdout)
                key = bytes.fromhex(out[0]["stages"][-1]["key"][7:])
                # inside the key document (what the key is the digest of) or the result digest
                self.lmdb_flip(store, "act", key, within=self.rng.choice([b'"key_doc":"', b'"result":"sha256:']))
            r = run([self.aqs, "--store", store, "build", "--json", "--no-checkout"] + self.build_args + ["fast%d" % x])
            detected = False
            if r.returncode == 0:
                states = [s["state"] for s in json.loads(r.stdout)[0]["stages"]]
                detected = "repaired:" in r.stderr or "RUN" in states
            why = self.same_as_ref(store, x) if r.returncode == 0 else "build failed: " + r.stderr.strip()
            v = run([self.aqs, "--store", store, "verify"])
            ok = detected and not why and v.returncode == 0
            if not ok:
                self.fail("damage of a %s: detected %s, %s, verify %d" % (kind, detected, why, v.returncode))
            results[kind] = {"detected": detected, "repaired": not why and v.returncode == 0}
        return results

    # ---- concurrent builders
    def builders(self, n):
        store = self.new_store("builders")
        procs, t = [], []
        for i in range(n):
            procs.append(subprocess.Popen(
                ["/usr/bin/time", "-f", "%U %S", "-o", os.path.join(self.tmp, "cpu%d" % i), self.aqs, "--store", store,
                 "build", "--json", "--no-checkout"] + self.build_args + ["fast50"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        outs = [p.communicate() for p in procs]
        rcs = [p.returncode for p in procs]
        records = {json.loads(o)[0]["build_record"] for o, _ in outs if o.strip()}
        runs = sum(s["state"] == "RUN" for o, _ in outs if o.strip() for s in json.loads(o)[0]["stages"])
        cpu = sum(sum(map(float, open(os.path.join(self.tmp, "cpu%d" % i)).read().split()[-2:])) for i in range(n))
        one_store = self.new_store("builders-one")
        self.must(["/usr/bin/time", "-f", "%U %S", "-o", os.path.join(self.tmp, "cpu-one"), self.aqs, "--store",
                   one_store, "build", "--no-checkout"] + self.build_args + ["fast50"])
        one = sum(map(float, open(os.path.join(self.tmp, "cpu-one")).read().split()[-2:]))
        if any(rcs) or len(records) != 1 or runs != 6:
            self.fail("%d concurrent builders: exit codes %s, %d results, %d stage runs" % (n, rcs, len(records), runs))
        return {"builders": n, "exit_codes": rcs, "distinct_results": len(records), "stage_runs": runs,
                "cpu_s": round(cpu, 3), "one_build_cpu_s": round(one, 3), "cpu_ratio": round(cpu / max(one, 1e-9), 2)}

    # ---- two users, one --shared store
    def shared(self):
        if os.getuid() != 0 or not shutil.which("setpriv"):
            return {"skipped": "needs root and setpriv"}
        store = self.new_store("shared", shared=True)
        os.chmod(self.tmp, 0o755)
        for d in (self.model, self.recipes):
            subprocess.run(["chmod", "-R", "a+rX", d])
        os.chmod(self.caps, 0o644)
        subprocess.run(["chgrp", "-R", "nogroup", store], check=True)
        as_b = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
        a = run([self.aqs, "--store", store, "build", "--no-checkout"] + self.build_args + ["fast50"])
        b = run(as_b + [self.aqs, "--store", store, "build", "--no-checkout"] + self.build_args + ["fast70"])
        out = os.path.join(self.tmp, "shared-co")
        os.makedirs(out, exist_ok=True)
        os.chmod(out, 0o777)
        cb = run(as_b + [self.aqs, "--store", store, "checkout", "fast50", os.path.join(out, "b50")])
        ca = self.same_as_ref(store, 70)
        v = run(as_b + [self.aqs, "--store", store, "verify"])
        ok = a.returncode == 0 and b.returncode == 0 and cb.returncode == 0 and not ca and v.returncode == 0
        if not ok:
            self.fail("shared store: A build %d, B build %d (%s), B checkout %d (%s), A checkout of B's: %s, "
                      "verify as B %d (%s)" % (a.returncode, b.returncode, b.stderr.strip()[-200:], cb.returncode,
                                               cb.stderr.strip()[-200:], ca, v.returncode, v.stderr.strip()[-200:]))
        return {"users": 2, "ok": ok}

    # ---- read-only mount
    def readonly(self):
        store = self.new_store("ro-src")
        self.must([self.aqs, "--store", store, "build", "--no-checkout"] + self.build_args + ["fast50"])
        mnt = os.path.join(self.tmp, "ro-mnt")
        os.makedirs(mnt)
        if run(["mount", "--bind", store, mnt]).returncode != 0:
            return {"skipped": "no permission to mount"}
        try:
            if run(["mount", "-o", "remount,bind,ro", mnt]).returncode != 0:
                return {"skipped": "no permission to remount read-only"}
            results = {}
            for name, cmd in [("ls", ["ls"]), ("show", ["show", "fast50"]), ("stats", ["stats"]),
                              ("verify", ["verify"]),
                              ("checkout", ["checkout", "--link-mode", "hardlink", "fast50",
                                            os.path.join(self.tmp, "ro-co")])]:
                r = run([self.aqs, "--store", mnt] + cmd)
                results[name] = r.returncode
                if r.returncode != 0:
                    self.fail("read-only mount: %s -> %d: %s" % (name, r.returncode, r.stderr.strip()[-300:]))
            r = run(["diff", "-r", "-x", ".aqs-checkout", os.path.join(self.ref, "fast50"), os.path.join(self.tmp, "ro-co")])
            if r.returncode != 0:
                self.fail("read-only mount: checkout differs")
            return results
        finally:
            run(["umount", mnt])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("aqs")
    ap.add_argument("--kills", type=int, default=200)
    ap.add_argument("--builders", type=int, default=8)
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--parts", default="kills,damage,builders,shared,readonly")
    ap.add_argument("--json")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="aqs-reliability-")
    summary = {"seed": a.seed}
    print("reliability campaign seed %d in %s" % (a.seed, tmp))
    try:
        c = Campaign(os.path.realpath(a.aqs), tmp, a.seed)
        for part in a.parts.split(","):
            t0 = time.time()
            if part == "kills":
                summary[part] = c.kills(a.kills)
            elif part == "damage":
                summary[part] = c.damage()
            elif part == "builders":
                summary[part] = c.builders(a.builders)
            else:
                summary[part] = getattr(c, part)()
            print("%-9s %5.1fs %s" % (part, time.time() - t0, json.dumps(summary[part])), flush=True)
        summary["failures"] = c.failures
    finally:
        subprocess.run(["chmod", "-R", "u+w", tmp])
        shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(summary, f, indent=2)
    if summary.get("failures"):
        print("%d failure(s)" % len(summary["failures"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
