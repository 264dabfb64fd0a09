#!/usr/bin/env python3
"""tests/bench/image_bench.py: image+caption calibration and all_layers gradient-scoring throughput,
aqs against the torch peer extended with images, both on the same rows in one run.

Rows: one image per sequence at real photo sizes (odd ones included), resized by transformers'
smart_resize (factor 28), random normalized pixels, captions of varied length (12..72 tokens,
tests/bench/torch_peer.py's caption_lens). aqs: tests/bench/vlm_bench on the CUDA backend, BF16
and F32 (the build's precision), one chunk of all rows per step. The peer: transformers'
Qwen2_5_VLForConditionalGeneration in BF16 (sdpa) on the same rows as one right-padded batch,
forward pre-hooks for max calibration of every vision and language linear (the Conv3d patch
embedding included), and ModelOpt-AutoQuantize-style gradient scores through both towers (forward
hooks compute the FP8 fake-quant output, tensor hooks catch dL/dY; pixel_values require grad so
the gradient reaches the vision tower). tokens/s count real tokens (text and image), images/s the
images of the chunk; each side times `steps` steps after `warmup`.
usage: image_bench.py AQS_BIN VLM_BENCH WORKDIR [--model DIR | --preset 3b] [--images N] [--steps N]
                      [--side LABEL,VLM_BENCH,PRECISION ...] [--json OUT]
A side that fails (or the peer) is reported in the JSON and the others still run.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "conformance"))
from torch_peer import amax_hooks, caption_lens, fake_quant_fp8  # noqa: E402
from vision_conformance import targets_of, write_chunk  # noqa: E402

# (width, height) of camera / web photos, odd sizes included; the first N are used
SIZES = [(640, 480), (333, 500), (1023, 767), (500, 375), (289, 517), (800, 533), (427, 640), (1001, 303),
         (1280, 720), (375, 500), (612, 612), (225, 225)]


def smart_resize(h, w, factor=28, min_pixels=56 * 56, max_pixels=14 * 14 * 4 * 16384):
    """transformers' Qwen2-VL smart_resize (docs/data.md): (grid h, grid w) in 14-pixel patches."""
    hb, wb = round(h / factor) * factor, round(w / factor) * factor
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb, wb = max(factor, math.floor(h / beta / factor) * factor), max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb // 14, wb // 14


def peer_linears(model):
    """(name, module) of every linear of both towers and the patch embedding's Conv3d."""
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv3d)) and ("visual" in n or ".layers." in n)]


def peer_batch(cfg, seqs, patches, grids):
    width = max(len(s) for s in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
        # transformers shifts labels: label[j] is predicted at j - 1; ours: targets_of at j - 1
        tg = targets_of(cfg, s)
        labels[i, 1:len(s)] = torch.tensor(tg[:-1])
    return dict(input_ids=ids.cuda(), attention_mask=mask.cuda(),
                mm_token_type_ids=(ids == cfg["image_token_id"]).int().cuda(),
                pixel_values=torch.cat(patches).cuda().to(torch.bfloat16),
                image_grid_thw=torch.tensor(grids).cuda(), labels=labels.cuda(), use_cache=False)


def timed(fn, warmup, steps):
    total = 0.0
    for step in range(warmup + steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        if step >= warmup:
            total += time.perf_counter() - t0
    return total / steps


def torch_peer(model_dir, cfg, seqs, patches, grids, warmup, steps):
    from transformers import Qwen2_5_VLForConditionalGeneration
    t0 = time.perf_counter()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    load_s = time.perf_counter() - t0
    batch = peer_batch(cfg, seqs, patches, grids)
    linears = peer_linears(model)
    amax, handles = amax_hooks(linears)
    torch.cuda.reset_peak_memory_stats()

    def calib():
        with torch.no_grad():
            model(**{k: v for k, v in batch.items() if k != "labels"})
    calib_s = timed(calib, warmup, steps)
    calib_peak = torch.cuda.max_memory_allocated() / 2 ** 30
    for h in handles:
        h.remove()
    scores = {n: torch.zeros((), device="cuda", dtype=torch.float64) for n, _ in linears}
    handles = []
    for name, mod in linears:
        x_scale = (amax[name] / 448.0).clamp_min(1e-12)
        w2 = mod.weight.detach().reshape(mod.weight.shape[0], -1)
        w_scale = (w2.abs().amax().float() / 448.0).clamp_min(1e-12)
        wq = fake_quant_fp8(w2, w_scale.to(w2.dtype))

        def fwd_hook(m, inputs, output, name=name, x_scale=x_scale, wq=wq):
            x = inputs[0].detach().reshape(-1, wq.shape[1])
            with torch.no_grad():
                yq = F.linear(fake_quant_fp8(x, x_scale.to(x.dtype)), wq, m.bias)
                dy = (yq.reshape(output.shape) - output.detach()).float()

            def grad_hook(g, name=name, dy=dy):
                scores[name].add_((g.float() * dy).clamp(-1e10, 1e10).pow(2).sum(dtype=torch.float64))
            if output.requires_grad:
                output.register_hook(grad_hook)
        handles.append(mod.register_forward_hook(fwd_hook))
    torch.cuda.reset_peak_memory_stats()
    loss = [float("nan")]

    def score():
        px = batch["pixel_values"].detach().requires_grad_(True)
        out = model(**dict(batch, pixel_values=px))
        out.loss.backward()
        loss[0] = out.loss.item()
    score_s = timed(score, warmup, steps)
    score_peak = torch.cuda.max_memory_allocated() / 2 ** 30
    for h in handles:
        h.remove()
    scored = sum(1 for v in scores.values() if v.item() > 0)
    return {"side": "torch", "torch": torch.__version__, "load_s": load_s,
            "calib": {"s_per_step": calib_s}, "score_gradient_all_layers": {"s_per_step": score_s, "loss": loss[0]},
            "calib_peak_gib": calib_peak, "score_peak_gib": score_peak,
            "linears": len(linears), "linears_with_score": scored}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("aqs")
    ap.add_argument("vlm_bench")
    ap.add_argument("work")
    ap.add_argument("--model", help="checkpoint directory (default: aqs synth-model --preset PRESET)")
    ap.add_argument("--preset", default="3b")
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--side", action="append", metavar="LABEL,BIN,PRECISION",
                    help="an aqs side to time (repeatable; default: VLM_BENCH in bf16 and in f32)")
    ap.add_argument("--json")
    a = ap.parse_args()
    sides = [tuple(x.split(",")) for x in a.side] if a.side else \
        [("aqs bf16", a.vlm_bench, "bf16"), ("aqs f32", a.vlm_bench, "f32")]
    mdir = a.model or os.path.join(a.work, "model")
    if not a.model:
        subprocess.run([a.aqs, "synth-model", "--preset", a.preset, "--seed", "3", "--out", mdir],
                       check=True, stdout=subprocess.DEVNULL)
    cfg = json.load(open(os.path.join(mdir, "config.json")))
    sizes = SIZES[:a.images]
    grids = [(1,) + smart_resize(h, w) for w, h in sizes]
    texts = [(2, n) for n in caption_lens(len(sizes), 72, 7)]
    ind = os.path.join(a.work, "bench_in")
    seqs, patches = write_chunk(cfg, ind, grids, texts, seed=5)
    n_tokens, n_images = sum(len(s) for s in seqs), len(seqs)
    res = {"model": a.model or "synthetic " + a.preset, "device": torch.cuda.get_device_name(0),
           "sizes_wxh": sizes, "grids": grids, "tokens": n_tokens, "images": n_images,
           "patches": sum(t * h * w for t, h, w in grids), "steps": a.steps, "warmup": a.warmup, "sides": []}
    for i, (label, binary, prec) in enumerate(sides):
        out = os.path.join(a.work, "vlm_bench_%d.json" % i)
        r = subprocess.run([binary, "--model", mdir, "--in", ind, "--backend", "cuda", "--precision", prec,
                            "--warmup", str(a.warmup), "--steps", str(a.steps), "--json", out],
                           stderr=subprocess.PIPE, text=True)
        if r.returncode != 0:  # reported, the other sides still run
            res["sides"].append({"side": label, "failed": r.stderr.strip()[-400:]})
            print(label, "failed:", r.stderr.strip()[-400:], flush=True)
            continue
        res["sides"].append(dict(json.load(open(out)), side=label))
    try:
        res["sides"].append(dict(torch_peer(mdir, cfg, seqs, patches, grids, a.warmup, a.steps), side="torch bf16"))
    except Exception as exc:  # noqa: BLE001 - reported with the aqs sides
        res["sides"].append({"side": "torch bf16", "failed": repr(exc)[-400:]})
        print("torch peer failed:", repr(exc)[-400:], flush=True)
    for side in res["sides"]:
        if "failed" in side:
            continue
        for key in ("calib", "score_gradient_all_layers"):
            s = side[key]["s_per_step"]
            side[key]["tokens_per_s"] = n_tokens / s
            side[key]["images_per_s"] = n_images / s
        name = side["side"]
        print("%-22s calibration %8.0f tokens/s %7.1f images/s | all_layers gradient scores %8.0f tokens/s "
              "%7.1f images/s" % (name, side["calib"]["tokens_per_s"], side["calib"]["images_per_s"],
                                  side["score_gradient_all_layers"]["tokens_per_s"],
                                  side["score_gradient_all_layers"]["images_per_s"]), flush=True)
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
