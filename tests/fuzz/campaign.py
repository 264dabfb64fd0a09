#!/usr/bin/env python3
"""tests/fuzz/campaign.py: the hostile-input campaign (issue 15). Makes valid seeds with the aqs
binary itself (synth-model, calib, init, build), mutates one input kind at a time, runs the
command that parses it (under the ASan build in CI) with a timeout and classifies each run:

  ok     exit 0
  error  exit 1 or 2 with an "aqs ..." message on stderr and no sanitizer report
  crash  a signal, a sanitizer report, any other exit status, or an exit without a message
  hang   the timeout expired

Then the index-damage loop: a store holding a build gets its index/data.mdb damaged (byte flips,
truncations, a zeroed or a random page) and ls, show, verify and build run on it.

Every execution is reproducible from (--seed, its number). Crashing and hanging inputs are kept
under --findings with the command and the stderr tail. Exit status 1 when any run crashed or
hung (for the index loop only with --strict-index), 0 otherwise.

  tests/fuzz/campaign.py --aqs build-asan/aqs --budget-s 120 --index-budget-s 60
"""
import argparse
import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "UndefinedBehaviorSanitizer", "AddressSanitizer:DEADLYSIGNAL")
CLASSES = ("ok", "error", "crash", "hang")
PAGE = 4096

# Tokens spliced into text inputs: structure characters, odd numbers, odd strings.
JSON_TOKENS = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"null", b"true", b"-1", b"0",
               b"1e309", b"-0", b"4294967297", b"18446744073709551616", b"9223372036854775807",
               b'"\\u0000"', b'"\\ud800"', b"\x00", b"\xff\xfe", b'""', b"[[[[[[[[", b"{}"]
INI_TOKENS = [b"[", b"]", b"=", b";", b"#", b"\n", b"\x00", b"\r", b" = ", b"[x]\n", b"[recipe]\n",
              b"extends = ", b"-1", b"1e309", b"nan", b"0x10", b"\xc3\x28", b"a" * 300]
TEXT_TOKENS = [b"\n", b"\r\n", b"\x00", b"\xc3\x28", b"\xf0\x9f\x98\x80", b"<|im_start|>",
               b"<|image_pad|>", b"{caption}", b"\t", b" " * 64, b"x" * 5000]
NUMBERS = [b"0", b"-1", b"1", b"255", b"65536", b"2147483647", b"2147483648", b"-2147483649",
           b"4294967296", b"1e308", b"1e-308", b"NaN", b"18446744073709551615", b"0.5"]


def mutate(data, rng, tokens, focus=None):
    """One to eight stacked mutations; offsets fall into focus=(start, end) 9 times in 10."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        def pos(extra=0):
            n = len(buf) + extra
            if n <= 0:
                return 0
            if focus and rng.random() < 0.9:
                lo, hi = focus
                hi = min(hi, n)
                if lo < hi:
                    return rng.randrange(lo, hi)
            return rng.randrange(n)
        op = rng.randrange(9)
        if op == 0 and buf:                      # flip a bit
            p = pos()
            buf[p] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:                    # an interesting byte
            buf[pos()] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x0A, 0x22, 0x5B, 0x7B))
        elif op == 2:                            # splice a token
            p = pos(1)
            buf[p:p] = rng.choice(tokens)
        elif op == 3 and buf:                    # delete a range
            p = pos()
            del buf[p:p + rng.choice((1, 2, 8, 64, 1024))]
        elif op == 4 and buf:                    # duplicate a range
            p = pos()
            n = rng.choice((1, 8, 64, 512))
            buf[p:p] = buf[p:p + n]
        elif op == 5 and buf:                    # truncate
            del buf[pos():]
        elif op == 6:                            # replace a number
            nums = [m.span() for m in re.finditer(rb"-?\d+(\.\d+)?", bytes(buf[:65536]))]
            if nums:
                a, b = rng.choice(nums)
                buf[a:b] = rng.choice(NUMBERS)
        elif op == 7 and buf:                    # random bytes
            p = pos()
            n = rng.choice((1, 4, 16))
            buf[p:p + n] = bytes(rng.randrange(256) for _ in range(n))
        elif op == 8 and len(buf) > 16:          # swap two chunks
            a, b = sorted((pos(), pos()))
            n = min(rng.choice((4, 32, 256)), b - a)
            buf[a:a + n], buf[b:b + n] = buf[b:b + n], buf[a:a + n]
    return bytes(buf)


def fix_png_crcs(data):
    """Recomputes each chunk's CRC so mutations reach the decoder instead of the CRC check."""
    import zlib
    buf, p = bytearray(data), 8
    while p + 12 <= len(buf):
        n = struct.unpack(">I", buf[p:p + 4])[0]
        if p + 12 + n > len(buf):
            break
        buf[p + 8 + n:p + 12 + n] = struct.pack(">I", zlib.crc32(bytes(buf[p + 4:p + 8 + n])) & 0xFFFFFFFF)
        p += 12 + n
    return bytes(buf)


def classify(rc, stderr, timed_out):
    if timed_out:
        return "hang", "timeout"
    if any(m in stderr for m in SANITIZER_MARKS):
        line = next(l for l in stderr.splitlines() if any(m in l for m in SANITIZER_MARKS))
        return "crash", line.strip()[:200]
    if rc < 0:
        return "crash", "signal %d" % -rc
    if rc == 0:
        return "ok", ""
    if rc in (1, 2):
        if re.search(r"^aqs[ :]", stderr, re.M):
            return "error", ""
        return "crash", "exit %d without an aqs message" % rc
    return "crash", "exit status %d" % rc


class Runner:
    """Runs commands, keeps counts per kind and class, saves findings. Thread-safe."""

    def __init__(self, timeout_s, findings):
        self.timeout_s = timeout_s
        self.findings = findings
        self.lock = threading.Lock()
        self.counts = {}
        self.first = {}   # (kind, class) -> first reason
        self.fatal = None  # a run that could not even start (the binary vanished, ...)
        self.env = dict(os.environ, AQS_PROGRESS="never",
                        ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:handle_abort=1",
                        UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
        self.env.pop("AQS_STORE", None)

    def run(self, kind, exec_id, cmd, cwd, stdin=b"", inputs=()):
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, cwd=cwd, input=stdin, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, env=self.env, timeout=self.timeout_s)
            rc, err, timed_out = p.returncode, p.stderr.decode("utf-8", "replace"), False
        except subprocess.TimeoutExpired as e:
            rc, err, timed_out = -9, (e.stderr or b"").decode("utf-8", "replace"), True
        except OSError as e:
            self.fatal = self.fatal or "cannot run %s: %s" % (cmd[0], e)
            return "fatal"
        cls, why = classify(rc, err, timed_out)
        with self.lock:
            c = self.counts.setdefault(kind, dict.fromkeys(CLASSES, 0))
            c[cls] += 1
            if cls in ("crash", "hang"):
                self.first.setdefault((kind, cls), why)
        if cls in ("crash", "hang") and self.findings:
            d = os.path.join(self.findings, "%s-%s-%d" % (kind, cls, exec_id))
            os.makedirs(d, exist_ok=True)
            for path in inputs:
                if os.path.isfile(path):
                    shutil.copy(path, d)
            with open(os.path.join(d, "report.txt"), "w") as f:
                f.write("command: %s\ncwd: %s\nclass: %s (%s)\nseconds: %.1f\n\n%s" %
                        (" ".join(cmd), cwd, cls, why, time.monotonic() - t0, err[-6000:]))
        return cls


def check(cmd, cwd, env):
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if p.returncode != 0:
        sys.exit("campaign setup failed: %s\n%s" % (" ".join(cmd), p.stderr.decode()[-2000:]))
    return p.stdout


RECIPE = b"""; fuzz seed: top50 on a tiny calibration set
[recipe]
extends = top50
description = fuzz seed

[calib]
samples = 8
max_len = 32
seed = 3

[sensitivity]
score_samples = 4

[slice]
coverage = 0.5
"""


def setup(aqs, src, root, runner):
    """Valid seeds, made by the tool: a tiny model, a store with a build, a calib set."""
    env = runner.env
    m = os.path.join(root, "model")
    check([aqs, "synth-model", "--preset", "tiny", "--out", m], root, env)
    caps = os.path.join(root, "caps.txt")
    rng = random.Random(7)
    words = "a red bus on a wet street near the old market under grey sky with two people".split()
    with open(caps, "w") as f:
        for i in range(24):
            f.write(" ".join(rng.choice(words) for _ in range(rng.randrange(1, 30))) + "\n")
    imgs = os.path.join(root, "ds", "imgs")
    os.makedirs(imgs)
    fixtures = os.path.join(src, "tests", "fixtures", "images")
    images = sorted(f for f in os.listdir(fixtures) if f.endswith((".png", ".jpg")))
    with open(os.path.join(root, "ds", "rows.jsonl"), "w") as f:
        for i, name in enumerate(images):
            shutil.copy(os.path.join(fixtures, name), imgs)
            f.write(json.dumps({"image": "imgs/" + name, "caption": "picture %d of a thing" % i}) + "\n")
    store = os.path.join(root, "store")
    check([aqs, "--store", store, "init"], root, env)
    rdir = os.path.join(root, "recipes")
    os.makedirs(rdir)
    with open(os.path.join(rdir, "fz.ini"), "wb") as f:
        f.write(RECIPE)
    check([aqs, "--store", store, "build", "fz", "--model", m, "--captions", caps, "--recipes-dir", rdir,
           "--quiet", "--no-checkout"], root, env)
    out = json.loads(check([aqs, "--store", store, "calib", "--captions", caps, "--model", m,
                            "--samples", "6", "--max-len", "24", "--chunk-seqs", "3", "--json"], root, env))
    chunk = check([aqs, "--store", store, "cat", out["chunks"][0]], root, env)
    with open(os.path.join(root, "tokens.jsonl"), "w") as f:
        for i in range(6):
            f.write(json.dumps([rng.randrange(1, 200) for _ in range(rng.randrange(1, 12))]) + "\n")
    aqstore = ("; a workspace as people write one\n[store]\npath = %s\ncompression_level = 3\nsize_limit = 10G\n"
               "link_mode = copy\ninline_threshold = 64K\n\n[model]\npath = %s\n\n[data]\ncaptions = %s\n"
               "images = ds/rows.jsonl\nimages_root = ds\n\n[recipes]\npath = %s\n"
               % (store, m, caps, rdir)).encode()
    return {"model": m, "caps": caps, "store": store, "chunk": chunk, "recipes": rdir,
            "aqstore": [aqstore, open(os.path.join(src, ".aqstore.example"), "rb").read()], "images": [os.path.join(imgs, n) for n in images]}


def input_kinds(aqs, seeds):
    """name -> (seed bytes, file name, focus range, tokens, command builder(workdir, path))."""
    m = seeds["model"]
    st_bytes = open(os.path.join(m, "model.safetensors"), "rb").read()
    header_end = 8 + struct.unpack("<Q", st_bytes[:8])[0]

    def model_with(wd, name, path):
        d = os.path.join(wd, "model")
        if not os.path.isdir(d):
            os.makedirs(d)
            for f in os.listdir(m):
                os.symlink(os.path.join(m, f), os.path.join(d, f))
        os.replace(path, os.path.join(d, name)) if path != os.path.join(d, name) else None
        return d

    tokens_path = os.path.join(os.path.dirname(seeds["caps"]), "tokens.jsonl")

    def store_in(wd):
        d = os.path.join(wd, "store")
        if not os.path.isdir(d):
            subprocess.run([aqs, "--store", d, "init"], cwd=wd, stdout=subprocess.DEVNULL, check=True)
        return d

    def calibrate(model, tokens):
        return [aqs, "calibrate", "--model", model, "--tokens", tokens, "--out", "amax.json"]

    kinds = {
        "safetensors": (st_bytes, "model.safetensors", (0, header_end), JSON_TOKENS,
                        lambda wd, p: calibrate(model_with(wd, "model.safetensors", p), tokens_path)),
        "config.json": (open(os.path.join(m, "config.json"), "rb").read(), "config.json", None, JSON_TOKENS,
                        lambda wd, p: calibrate(model_with(wd, "config.json", p), tokens_path)),
        "tokenizer.json": (open(os.path.join(m, "tokenizer.json"), "rb").read(), "tokenizer.json", None,
                           JSON_TOKENS, lambda wd, p: [aqs, "tokenize", "--tokenizer", p]),
        "recipe": (RECIPE, "fz.ini", None, INI_TOKENS,
                   lambda wd, p: [aqs, "--store", seeds["store"], "plan", "fz", "--recipes-dir", wd,
                                  "--model", m, "--captions", seeds["caps"]]),
        ".aqstore": (seeds["aqstore"], ".aqstore", None, INI_TOKENS, lambda wd, p: [aqs, "ls"]),
        "captions": (open(seeds["caps"], "rb").read(), "caps.txt", None, TEXT_TOKENS,
                     lambda wd, p: [aqs, "--store", store_in(wd), "calib", "--captions", p,
                                    "--model", m, "--samples", "4", "--max-len", "32"]),
        "image-rows": (open(os.path.join(os.path.dirname(seeds["images"][0]), "..", "rows.jsonl"), "rb").read(),
                       "rows.jsonl", None, JSON_TOKENS,
                       lambda wd, p: [aqs, "--store", store_in(wd), "calib", "--images", p,
                                      "--root", os.path.dirname(os.path.dirname(seeds["images"][0])),
                                      "--model", m, "--samples", "2", "--max-len", "4096"]),
        "png": (None, "img.png", (0, 200), [b"IHDR", b"IDAT", b"IEND", b"PLTE", b"\xff\xff\xff\xff", b"\x00" * 4],
                lambda wd, p: [aqs, "preprocess-image", p, "-o", "px.safetensors"]),
        "jpeg": (None, "img.jpg", (0, 400), [b"\xff\xd8", b"\xff\xc0", b"\xff\xc2", b"\xff\xda", b"\xff\xd9",
                                             b"\xff\xdb", b"\xff\xc4", b"\x00\x00"],
                 lambda wd, p: [aqs, "preprocess-image", p, "-o", "px.safetensors"]),
        "tokens.jsonl": (open(tokens_path, "rb").read(), "tokens.jsonl", None, JSON_TOKENS,
                         lambda wd, p: calibrate(m, p)),
        "calib-chunk": (seeds["chunk"], "chunk.bin", (0, 512), JSON_TOKENS, lambda wd, p: calibrate(m, p)),
    }
    return kinds


def seed_for(kind, spec, seeds, rng):
    if isinstance(spec[0], list):
        return spec[0][0] if rng is None else rng.choice(spec[0])
    if spec[0] is not None:
        return spec[0]
    ext = ".png" if kind == "png" else ".jpg"
    return open(rng.choice([p for p in seeds["images"] if p.endswith(ext)]), "rb").read()


def check_seeds(kinds, names, seeds, runner, root):
    """Each kind's command must succeed on its unmutated seed, or the campaign tests nothing."""
    for kind in names:
        seed, fname, _, _, command = kinds[kind]
        wd = os.path.join(root, "seedcheck", re.sub(r"[^a-z0-9]", "_", kind))
        os.makedirs(wd, exist_ok=True)
        path = os.path.join(wd, fname)
        with open(path, "wb") as f:
            f.write(seed_for(kind, kinds[kind], seeds, None if kind == ".aqstore" else random.Random(0)))
        stdin = b"Hello world" if kind == "tokenizer.json" else b""
        p = subprocess.run(command(wd, path), cwd=wd, input=stdin, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, env=runner.env, timeout=runner.timeout_s)
        if p.returncode != 0:
            sys.exit("campaign setup: the %s seed does not pass: %s\n%s" %
                     (kind, " ".join(command(wd, path)), p.stderr.decode()[-2000:]))


def run_inputs(aqs, seeds, runner, root, budget_s, base_seed, workers, only):
    kinds = input_kinds(aqs, seeds)
    names = [k for k in kinds if not only or k in only]
    check_seeds(kinds, names, seeds, runner, root)
    counter = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + budget_s

    def worker(w):
        while time.monotonic() < deadline and not runner.fatal:
            with lock:
                i = counter[0]
                counter[0] += 1
            kind = names[i % len(names)]
            seed, fname, focus, tokens, command = kinds[kind]
            rng = random.Random(base_seed * 1000003 + i)
            wd = os.path.join(root, "w%d" % w, re.sub(r"[^a-z0-9]", "_", kind))
            os.makedirs(wd, exist_ok=True)
            data = mutate(seed_for(kind, kinds[kind], seeds, rng), rng, tokens, focus)
            if kind == "png" and rng.random() < 0.75:
                data = fix_png_crcs(data)
            path = os.path.join(wd, fname)
            tmp = path + ".new"
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
            cmd = command(wd, path)
            stdin = b"Hello world, a caption 123 <|im_start|>user\n" if kind == "tokenizer.json" else b""
            kept = os.path.join(wd, "model", fname) if kind in ("safetensors", "config.json") else path
            runner.run(kind, i, cmd, wd, stdin, (kept,))

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counter[0]


def damage(data, rng):
    """One damage of an LMDB file: (name, damaged bytes)."""
    buf = bytearray(data)
    pages = max(1, len(buf) // PAGE)
    how = rng.choice(("flip", "flip", "truncate", "zero-page", "random-page"))
    if how == "flip":
        for _ in range(rng.choice((1, 1, 2))):
            p = rng.randrange(len(buf))
            buf[p] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        n = rng.choice((rng.randrange(len(buf)), rng.randrange(pages) * PAGE, rng.randrange(3) * PAGE))
        del buf[n:]
    else:
        p = rng.randrange(pages) * PAGE
        buf[p:p + PAGE] = bytes(PAGE) if how == "zero-page" else bytes(rng.randrange(256) for _ in range(PAGE))
    return how, bytes(buf)


def run_index(aqs, seeds, runner, root, budget_s, base_seed, workers):
    pristine = seeds["store"]
    data = open(os.path.join(pristine, "index", "data.mdb"), "rb").read()
    commands = {
        "ls": lambda s: [aqs, "--store", s, "ls"],
        "show": lambda s: [aqs, "--store", s, "show", "fz"],
        "verify": lambda s: [aqs, "--store", s, "verify"],
        "build": lambda s: [aqs, "--store", s, "build", "fz", "--model", seeds["model"], "--captions",
                            seeds["caps"], "--recipes-dir", seeds["recipes"], "--quiet", "--no-checkout"],
    }
    names = sorted(commands)
    counter = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + budget_s

    def worker(w):
        while time.monotonic() < deadline and not runner.fatal:
            with lock:
                i = counter[0]
                counter[0] += 1
            rng = random.Random(base_seed * 7919 + i)
            how, bad = damage(data, rng)
            name = names[i % len(names)]
            s = os.path.join(root, "idx%d" % w, "store")
            shutil.rmtree(os.path.dirname(s), ignore_errors=True)
            shutil.copytree(pristine, s, symlinks=True)
            with open(os.path.join(s, "index", "data.mdb"), "wb") as f:
                f.write(bad)
            runner.run("index/%s" % name, i, commands[name](s), os.path.dirname(s),
                       inputs=(os.path.join(s, "index", "data.mdb"),))
            with lock:
                runner.counts.setdefault("index damage: " + how, {"runs": 0})["runs"] += 1

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counter[0]


def table(counts):
    rows = [(k, v) for k, v in sorted(counts.items()) if "ok" in v]
    out = ["| kind | runs | ok | error | crash | hang |", "|---|---:|---:|---:|---:|---:|"]
    tot = dict.fromkeys(CLASSES, 0)
    for k, v in rows:
        out.append("| %s | %d | %d | %d | %d | %d |" % (k, sum(v.values()), v["ok"], v["error"], v["crash"], v["hang"]))
        for c in CLASSES:
            tot[c] += v[c]
    out.append("| **all** | %d | %d | %d | %d | %d |" % (sum(tot.values()), tot["ok"], tot["error"], tot["crash"], tot["hang"]))
    return "\n".join(out), tot


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--aqs", required=True, help="the aqs binary (the ASan build in CI)")
    ap.add_argument("--source", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    ap.add_argument("--budget-s", type=float, default=120, help="seconds of mutated-input runs (0: none)")
    ap.add_argument("--index-budget-s", type=float, default=60, help="seconds of index-damage runs (0: none)")
    ap.add_argument("--seed", type=int, default=int(os.environ.get("AQS_FUZZ_SEED", "1")))
    ap.add_argument("--timeout-s", type=float, default=30, help="per run; past it the run is a hang")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--kinds", default="", help="comma-separated input kinds (default: all)")
    ap.add_argument("--findings", default="", help="keep crashing/hanging inputs here")
    ap.add_argument("--report", default="", help="write the counts as JSON here")
    ap.add_argument("--strict-index", action="store_true",
                    help="index-damage crashes and hangs fail the campaign too")
    a = ap.parse_args()
    aqs = os.path.abspath(a.aqs)
    src = os.path.abspath(a.source)
    root = tempfile.mkdtemp(prefix="aqs-campaign-")
    runner = Runner(a.timeout_s, os.path.abspath(a.findings) if a.findings else "")
    t0 = time.monotonic()
    try:
        seeds = setup(aqs, src, root, runner)
        n_in = run_inputs(aqs, seeds, runner, root, a.budget_s, a.seed, a.workers,
                          set(filter(None, a.kinds.split(",")))) if a.budget_s > 0 else 0
        n_idx = run_index(aqs, seeds, runner, root, a.index_budget_s, a.seed, a.workers) if a.index_budget_s > 0 else 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if runner.fatal:
        sys.exit("campaign stopped: " + runner.fatal)
    in_table, in_tot = table({k: v for k, v in runner.counts.items() if not k.startswith("index")})
    idx_table, idx_tot = table({k: v for k, v in runner.counts.items() if k.startswith("index/")})
    print("hostile-input campaign (seed %d, %.0fs): %d mutated-input runs, %d index-damage runs"
          % (a.seed, time.monotonic() - t0, n_in, n_idx))
    print(in_table)
    if n_idx:
        print(idx_table)
        print("damages: " + ", ".join("%s %d" % (k[len("index damage: "):], v["runs"])
                                      for k, v in sorted(runner.counts.items()) if k.startswith("index damage")))
    for (kind, cls), why in sorted(runner.first.items()):
        print("FIRST %s in %s: %s" % (cls.upper(), kind, why))
    if a.report:
        with open(a.report, "w") as f:
            json.dump({"seed": a.seed, "inputs": n_in, "index": n_idx, "counts": runner.counts,
                       "first": {"%s %s" % k: v for k, v in runner.first.items()}}, f, indent=1, sort_keys=True)
    bad_inputs = in_tot["crash"] + in_tot["hang"]
    bad_index = idx_tot["crash"] + idx_tot["hang"]
    if bad_index and not a.strict_index:
        print("index damage: %d crash/hang runs (not failing: --strict-index is off)" % bad_index)
    return 1 if bad_inputs or (bad_index and a.strict_index) else 0


if __name__ == "__main__":
    sys.exit(main())
