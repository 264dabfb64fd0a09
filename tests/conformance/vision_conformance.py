#!/usr/bin/env python3
"""tests/conformance/vision_conformance.py: aqs's whole model on images against transformers.

Runs on the GPU machine (torch + transformers 5.x). Writes a synthetic checkpoint with
`aqs synth-model`, two image+text sequences (odd grids, random normalized pixels), runs
tests/bench/vlm_dump (our CUDA backend, F32 and BF16) and transformers'
Qwen2_5_VLForConditionalGeneration on the same inputs, and compares:
  - M-RoPE positions against transformers' get_rope_index (5.x: given mm_token_type_ids, 1 at
    <|image_pad|>, as the processor returns it; without it 5.x positions the image rows
    otherwise, reported as logits_f32_without_mm_token_type_ids_by_region);
  - logits with images, relative to the logit scale (max |logit|), F32 and BF16, by region;
  - the input amax of every vision linear (F32), relative difference in forward order and the
    first module that differs, with torch's TF32 defaults and with TF32 off (every other F32
    comparison runs with TF32 off);
  - all_layers gradient scores (ModelOpt AutoQuantize form, torch hooks with fake quant through
    float8_e4m3fn casts and our amax table; loss = mean CE over text targets, as ours):
    Spearman rank correlation over groups.
usage: vision_conformance.py AQS_BIN VLM_DUMP WORKDIR [--preset small] [--json OUT.json]
"""
import argparse
import json
import os
import random
import subprocess
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hf_reference import fq_act, fq_weight, scale_of, spearman  # noqa: E402

GRIDS = [(1, 6, 10), (1, 22, 34)]   # patches: partial windows both ways, a large odd image
TEXT = [(5, 7), (3, 10)]            # text tokens before / after each image


def write_chunk(cfg, d, grids, texts, seed=11):
    """One image+text chunk as vlm_dump / vlm_bench read it (tests/bench/vlm_chunk_files.h), a
    sequence per image: `pre` text tokens, <|vision_start|>, the image pads, <|vision_end|>, `post`
    text tokens (random ids below 1500), random normalized pixels. Returns (seqs, patches)."""
    r = random.Random(seed)
    m = cfg["vision_config"]["spatial_merge_size"]
    seqs, img_start, patches = [], [], []
    for (t, h, w), (pre, post) in zip(grids, texts):
        n = t * (h // m) * (w // m)
        ids = [r.randrange(0, 1500) for _ in range(pre)] + [cfg["vision_start_token_id"]]
        img_start.append(len(ids))
        ids += [cfg["image_token_id"]] * n + [cfg["vision_end_token_id"]]
        ids += [r.randrange(0, 1500) for _ in range(post)]
        seqs.append(ids)
        g = torch.Generator().manual_seed(len(patches) + 3)
        patches.append(torch.randn(t * h * w, 1176, generator=g) * 0.8)
    os.makedirs(d, exist_ok=True)

    def put(name, vals, dtype):
        torch.tensor(vals, dtype=dtype).numpy().tofile(os.path.join(d, name))
    put("lens.i32", [len(s) for s in seqs], torch.int32)
    put("ids.i32", [i for s in seqs for i in s], torch.int32)
    put("grid.i32", [v for g in grids for v in g], torch.int32)
    put("img_seq.i32", list(range(len(seqs))), torch.int32)
    put("img_start.i32", img_start, torch.int32)
    torch.cat(patches).float().numpy().tofile(os.path.join(d, "patches.f32"))
    return seqs, patches


def make_inputs(cfg, work):
    d = os.path.join(work, "in")
    seqs, patches = write_chunk(cfg, d, GRIDS, TEXT)
    return seqs, patches, d


def targets_of(cfg, ids):
    vis = {cfg["image_token_id"], cfg["vision_start_token_id"], cfg["vision_end_token_id"]}
    return [ids[i + 1] if i + 1 < len(ids) and ids[i + 1] not in vis else -100 for i in range(len(ids))]


def hf_forward(model, ids, px, g, image_token_id, **kw):
    """One sequence through transformers. Newer releases (5.x) locate the image tokens for
    get_rope_index through the processor's mm_token_type_ids (1 at image pads): pass it when the
    forward takes it."""
    it = torch.tensor([ids], device="cuda")
    args = dict(input_ids=it, pixel_values=px.cuda(), image_grid_thw=torch.tensor([g], device="cuda"),
                use_cache=False, **kw)
    try:
        return model(mm_token_type_ids=(it == image_token_id).int(), **args)
    except TypeError:
        return model(**args)


def rope_index(model, it, gt, image_token_id):
    """transformers' get_rope_index positions (3, 1, L). 5.x finds the image tokens through
    mm_token_type_ids (1 at <|image_pad|>, what the processor returns); 4.x through
    <|vision_start|> followed by <|image_pad|>."""
    import inspect
    params = inspect.signature(model.model.get_rope_index).parameters
    kw = dict(input_ids=it, image_grid_thw=gt)
    if "mm_token_type_ids" in params:
        kw["mm_token_type_ids"] = (it == image_token_id).int()
    return model.model.get_rope_index(**kw)[0]


def region_err(ref, mine, seqs, image_token_id):
    """max |difference| relative to the logit scale: text before the first image, image rows,
    text after the last image."""
    err = (ref - mine).abs()
    region = []
    for ids in seqs:
        first = ids.index(image_token_id)
        last = len(ids) - 1 - ids[::-1].index(image_token_id)
        region += [0 if i < first else 1 if i <= last else 2 for i in range(len(ids))]
    region = torch.tensor(region)
    return {name: (err[region == k].max().item() / ref.abs().max().item()) if (region == k).any() else None
            for k, name in enumerate(("before_image", "image", "after_image"))}


def hf_logits(model, seqs, patches, image_token_id):
    out = []
    with torch.no_grad():
        for ids, px, g in zip(seqs, patches, GRIDS):
            out.append(hf_forward(model, ids, px, g, image_token_id).logits[0].float().cpu())
    return torch.cat(out)


def short(name):
    """Module name from the vision or language tower on, whatever the naming scheme."""
    for key in ("visual.", "layers."):
        if key in name:
            return name[name.index(key):]
    return name


def vision_amax(model, seqs, patches, image_token_id):
    amax = {}
    handles = []
    for name, mod in model.named_modules():
        if "visual" in name and isinstance(mod, (torch.nn.Linear, torch.nn.Conv3d)):
            def hook(m, inp, out, name=name):
                v = inp[0].detach().abs().max().item()
                amax[short(name)] = max(amax.get(short(name), 0.0), v)
            handles.append(mod.register_forward_hook(hook))
    hf_logits(model, seqs, patches, image_token_id)
    for h in handles:
        h.remove()
    return amax


def set_tf32(on):
    """torch's TF32 switches: cuDNN convolutions (the patch embedding's Conv3d) default to TF32,
    cuBLAS F32 matmuls not; both off makes every F32 op of the reference full F32."""
    torch.backends.cuda.matmul.allow_tf32 = on
    torch.backends.cudnn.allow_tf32 = on


def amax_report(hf_am, our_amax):
    """Relative differences per vision linear in forward order, and the first module that differs."""
    rel = {k: abs(hf_am[k] - our_amax[k]["input_amax"]) / hf_am[k] for k in hf_am if k in our_amax}
    first = next((k for k, v in rel.items() if v > 0), None)
    first_1e5 = next((k for k, v in rel.items() if v > 1e-5), None)
    return {"n": len(rel), "max_rel": max(rel.values()), "exact": sum(1 for v in rel.values() if v == 0.0),
            "first_differing": first, "first_over_1e-5": first_1e5, "per_module": rel}


def vision_out(model, patches, dtype):
    outs = []
    with torch.no_grad():
        for px, g in zip(patches, GRIDS):
            o = model.model.visual(px.cuda().to(dtype), grid_thw=torch.tensor([g], device="cuda"))
            outs.append(o.pooler_output if hasattr(o, "pooler_output") else o)
    return torch.cat(outs).float().cpu()


def gradient_scores(model, cfg, seqs, patches, amax):
    mods = {}
    for name, mod in model.named_modules():
        if ("visual" in name or ".layers." in name) and isinstance(mod, (torch.nn.Linear, torch.nn.Conv3d)):
            if short(name) in amax:
                mods[short(name)] = mod
    scores = {k: 0.0 for k in mods}
    handles = []
    for key, mod in mods.items():
        a = amax[key]
        sx, sw = scale_of(a["input_amax"]), scale_of(a["weight_amax"])
        w2 = mod.weight.detach().reshape(mod.weight.shape[0], -1)
        wq = fq_weight(w2, sw)

        def hook(m, inp, out, key=key, sx=sx, wq=wq):
            x = inp[0].detach().reshape(-1, wq.shape[1]) if isinstance(m, torch.nn.Conv3d) else inp[0].detach()
            with torch.no_grad():
                yq = F.linear(fq_act(x, sx), wq, None if m.bias is None else m.bias.float())
                dy = yq.reshape(out.shape) - out.detach().float()

            def ghook(g):
                t = (g.float() * dy).clamp(-1e10, 1e10)
                scores[key] += (t.double() ** 2).sum().item()
            out.register_hook(ghook)
        handles.append(mod.register_forward_hook(hook))
    n_targets = sum(sum(1 for t in targets_of(cfg, s) if t >= 0) for s in seqs)
    for ids, px, g in zip(seqs, patches, GRIDS):
        o = hf_forward(model, ids, px, g, cfg["image_token_id"])
        tg = torch.tensor(targets_of(cfg, ids), device="cuda")
        loss = F.cross_entropy(o.logits[0].float(), tg, ignore_index=-100, reduction="sum") / n_targets
        model.zero_grad(set_to_none=True)
        loss.backward()
    for h in handles:
        h.remove()
    return scores


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("aqs")
    ap.add_argument("dump")
    ap.add_argument("work")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--json")
    a = ap.parse_args()
    from transformers import Qwen2_5_VLForConditionalGeneration
    os.makedirs(a.work, exist_ok=True)
    mdir = os.path.join(a.work, "model")
    subprocess.run([a.aqs, "synth-model", "--preset", a.preset, "--seed", "3", "--out", mdir],
                   check=True, stdout=subprocess.DEVNULL)
    cfg = json.load(open(os.path.join(mdir, "config.json")))
    seqs, patches, ind = make_inputs(cfg, a.work)
    res = {"preset": a.preset, "grids": GRIDS, "n_tokens": sum(len(s) for s in seqs),
           "torch": torch.__version__, "device": torch.cuda.get_device_name(0)}
    ours = {}
    for prec in ("f32", "bf16"):
        od = os.path.join(a.work, "out_" + prec)
        os.makedirs(od, exist_ok=True)
        r = subprocess.run([a.dump, mdir, ind, od, "cuda", prec], stderr=subprocess.PIPE, text=True)
        if r.returncode == 0:
            ours[prec] = od
        else:  # reported, and that precision's comparisons skipped
            res["dump_failed_" + prec] = r.stderr.strip()[-400:]
            print("vlm_dump", prec, "failed:", res["dump_failed_" + prec], flush=True)
    # our CPU backend too (F32): which side a residual comes from
    ours["cpu_f32"] = os.path.join(a.work, "out_cpu_f32")
    os.makedirs(ours["cpu_f32"], exist_ok=True)
    subprocess.run([a.dump, mdir, ind, ours["cpu_f32"], "cpu", "f32"], check=True)
    V = cfg.get("text_config", cfg)["vocab_size"]
    res["tf32_defaults"] = {"cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
                            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32}
    for prec, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
        if prec not in ours:
            continue
        model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            mdir, dtype=dtype, attn_implementation="sdpa").cuda().eval()
        if prec == "f32":
            # torch's defaults first (what the earlier figures used), then every F32 comparison
            # below with TF32 off
            our_amax = {short(k): v for k, v in json.load(open(os.path.join(ours[prec], "amax.json")))["modules"].items()}
            vis_tf32 = vision_out(model, patches, dtype)
            vis_mine0 = torch.from_numpy(__import__("numpy").fromfile(os.path.join(ours[prec], "vision.f32"),
                                                                      dtype="float32")).reshape(vis_tf32.shape)
            res["vision_out_f32_tf32_default"] = {
                "max_rel": (vis_tf32 - vis_mine0).abs().max().item() / vis_tf32.abs().max().item()}
            res["vision_amax_f32_tf32_default"] = amax_report(
                vision_amax(model, seqs, patches, cfg["image_token_id"]), our_amax)
            print("amax, torch TF32 defaults", {k: v for k, v in res["vision_amax_f32_tf32_default"].items()
                                                 if k != "per_module"}, flush=True)
            set_tf32(False)
        ref = hf_logits(model, seqs, patches, cfg["image_token_id"])
        mine = torch.from_numpy(__import__("numpy").fromfile(os.path.join(ours[prec], "logits.f32"),
                                                              dtype="float32")).reshape(-1, V)
        err = (ref - mine).abs()
        res["logits_" + prec + "_by_region"] = region_err(ref, mine, seqs, cfg["image_token_id"])
        if prec == "f32":
            # the earlier reference call: no mm_token_type_ids (5.x then lays out plain text positions)
            with torch.no_grad():
                plain = torch.cat([model(input_ids=torch.tensor([ids], device="cuda"), pixel_values=px.cuda(),
                                         image_grid_thw=torch.tensor([g], device="cuda"), use_cache=False)
                                   .logits[0].float().cpu() for ids, px, g in zip(seqs, patches, GRIDS)])
            res["logits_f32_without_mm_token_type_ids_by_region"] = region_err(plain, mine, seqs, cfg["image_token_id"])
            print("without mm_token_type_ids", res["logits_f32_without_mm_token_type_ids_by_region"], flush=True)
        vis_ref = vision_out(model, patches, dtype)
        vis_mine = torch.from_numpy(__import__("numpy").fromfile(os.path.join(ours[prec], "vision.f32"),
                                                                 dtype="float32")).reshape(vis_ref.shape)
        # positions: transformers' get_rope_index against ours, and logits with our positions
        import numpy as np
        ours_pos = torch.from_numpy(np.fromfile(os.path.join(ours[prec], "pos.i32"), dtype="int32")).reshape(3, -1)
        off, bad, fed = 0, 0, []
        with torch.no_grad():
            for ids, px, g in zip(seqs, patches, GRIDS):
                it = torch.tensor([ids], device="cuda")
                gt = torch.tensor([g], device="cuda")
                mine_pos = ours_pos[:, off:off + len(ids)]
                try:  # the signature moved between transformers releases
                    ref_pos = rope_index(model, it, gt, cfg["image_token_id"])
                    if isinstance(bad, int):
                        bad += int((ref_pos[:, 0, :].cpu().long() != mine_pos.long()).sum())
                except Exception as exc:  # noqa: BLE001 - report and keep going
                    bad = repr(exc)
                o = hf_forward(model, ids, px, g, cfg["image_token_id"],
                               position_ids=mine_pos.long().cuda()[:, None, :])
                fed.append(o.logits[0].float().cpu())
                off += len(ids)
        fed = torch.cat(fed)
        res["positions_" + prec] = {"mismatches": bad,
                                    "logits_with_our_positions_max_rel": (fed - mine).abs().max().item() / ref.abs().max().item()}
        print("positions", res["positions_" + prec], flush=True)
        res["vision_out_" + prec] = {"scale": vis_ref.abs().max().item(),
                                     "max_rel": (vis_ref - vis_mine).abs().max().item() / vis_ref.abs().max().item()}
        res["logits_" + prec] = {"scale": ref.abs().max().item(), "max_rel": err.max().item() / ref.abs().max().item(),
                                 "mean_rel": err.mean().item() / ref.abs().max().item(),
                                 "top1_agreement": (ref.argmax(-1) == mine.argmax(-1)).float().mean().item()}
        print(prec, res["logits_" + prec], flush=True)
        if prec == "f32":
            hf_am = vision_amax(model, seqs, patches, cfg["image_token_id"])
            res["vision_amax_f32"] = amax_report(hf_am, our_amax)
            print("amax, TF32 off", res["vision_amax_f32"], flush=True)
            cpu_amax = {short(k): v for k, v in
                        json.load(open(os.path.join(ours["cpu_f32"], "amax.json")))["modules"].items()}
            res["vision_amax_f32_ours_cpu"] = amax_report(hf_am, cpu_amax)
            res["vision_amax_f32_ours_cpu_vs_cuda"] = amax_report(
                {k: v["input_amax"] for k, v in cpu_amax.items() if k in hf_am}, our_amax)
            print("amax, ours on the CPU", {k: v for k, v in res["vision_amax_f32_ours_cpu"].items()
                                             if k != "per_module"},
                  "cpu vs cuda", {k: v for k, v in res["vision_amax_f32_ours_cpu_vs_cuda"].items()
                                  if k != "per_module"}, flush=True)
            sc = json.load(open(os.path.join(ours[prec], "scores.json")))
            mod_scores = gradient_scores(model, cfg, seqs, patches, our_amax)
            ids, a_ref, b_ours = [], [], []
            for g in sc["groups"]:
                s = sum(mod_scores.get(short(m["module"]), float("nan")) for m in g["members"])
                ids.append(g["id"])
                a_ref.append(s)
                b_ours.append(g["formats"]["fp8"]["score"])
            res["gradient_groups"] = {"n": len(ids), "spearman": spearman(a_ref, b_ours),
                                      "top_ref": ids[max(range(len(ids)), key=lambda i: a_ref[i])],
                                      "top_ours": ids[max(range(len(ids)), key=lambda i: b_ours[i])]}
            print("scores", res["gradient_groups"], flush=True)
        del model
        torch.backends.cuda.matmul.allow_tf32 = res["tf32_defaults"]["cuda.matmul.allow_tf32"]
        torch.backends.cudnn.allow_tf32 = res["tf32_defaults"]["cudnn.allow_tf32"]
        torch.cuda.empty_cache()
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
    print(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
