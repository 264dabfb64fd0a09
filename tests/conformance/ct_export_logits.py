#!/usr/bin/env python3
"""tests/conformance/ct_export_logits.py: an aqs compressed_tensors export, loaded by our own torch
code, against the fake-quant reference (runs where torch + transformers 5.x + safetensors exist).

Loader (no compressed-tensors package): every module with a `weight_scale` gets weight =
float(FP8 code) x weight_scale and its input fake-quantized with `input_scale` (static per-tensor
FP8, float32 math); every other tensor of the export is copied in by name (a name the model lacks
is an error: the naming is what a consumer reads). Reference: the source checkpoint with the same
modules fake-quantized by torch (weight scale max|w| / 448, cast to float8_e4m3fn; input: the
export's input_scale). Both float32, two image+text sequences with odd grids. Prints the largest
|logit difference| relative to the logit scale, top-1 agreement, the same against the unquantized
source (the size of the quantization effect), and whether `ignore` lists exactly the Linear
modules without scales.
usage: ct_export_logits.py SOURCE_DIR EXPORT_DIR [--json OUT.json]   exit 0 = within 1e-5
"""
import argparse
import json
import os
import random
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_export import load_all  # noqa: E402
from hf_reference import fq_act, fq_weight, scale_of  # noqa: E402
from vision_conformance import hf_forward  # noqa: E402

GRIDS = [(1, 6, 10), (1, 10, 4)]
TEXT = [(4, 6), (2, 9)]


def inputs(cfg):
    r = random.Random(5)
    m = cfg["vision_config"]["spatial_merge_size"]
    dim = 3 * cfg["vision_config"]["temporal_patch_size"] * cfg["vision_config"]["patch_size"] ** 2
    seqs, pix = [], []
    for (t, h, w), (pre, post) in zip(GRIDS, TEXT):
        ids = [r.randrange(0, 500) for _ in range(pre)] + [cfg["vision_start_token_id"]]
        ids += [cfg["image_token_id"]] * (t * (h // m) * (w // m)) + [cfg["vision_end_token_id"]]
        seqs.append(ids + [r.randrange(0, 500) for _ in range(post)])
        pix.append(torch.randn(t * h * w, dim, generator=torch.Generator().manual_seed(len(pix) + 7)))
    return seqs, pix


def logits(model, seqs, pix, image_token_id):
    with torch.no_grad():
        return torch.cat([hf_forward(model, ids, px, g, image_token_id).logits[0].float().cpu()
                          for ids, px, g in zip(seqs, pix, GRIDS)])


def act_hook(scale):
    def pre(mod, args):
        return (fq_act(args[0], scale),) + tuple(args[1:])
    return pre


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("source")
    ap.add_argument("export")
    ap.add_argument("--json")
    a = ap.parse_args()
    from transformers import Qwen2_5_VLForConditionalGeneration

    def fresh():
        return Qwen2_5_VLForConditionalGeneration.from_pretrained(
            a.source, dtype=torch.float32, attn_implementation="sdpa").cuda().eval()

    cfg = json.load(open(os.path.join(a.source, "config.json")))
    ex = load_all(a.export)
    qnames = sorted(k[:-len(".weight_scale")] for k in ex if k.endswith(".weight_scale"))
    seqs, pix = inputs(cfg)
    itok = cfg["image_token_id"]

    plain = fresh()
    ref_plain = logits(plain, seqs, pix, itok)
    linears = {n for n, mod in plain.named_modules() if isinstance(mod, (torch.nn.Linear, torch.nn.Conv3d))}
    del plain

    ref = fresh()
    mods = dict(ref.named_modules())
    missing = [n for n in qnames if n not in mods]
    if missing:
        sys.exit("export modules the model lacks: %s" % missing[:5])
    with torch.no_grad():
        for n in qnames:
            w = mods[n].weight
            w2 = w.reshape(w.shape[0], -1)
            w.copy_(fq_weight(w2, scale_of(w2.abs().max().item())).reshape(w.shape))
            mods[n].register_forward_pre_hook(act_hook(ex[n + ".input_scale"].float().item()))
    ref_fq = logits(ref, seqs, pix, itok)
    del ref

    mine = fresh()
    mods, sd = dict(mine.named_modules()), mine.state_dict()
    unknown, kv = [], 0
    with torch.no_grad():
        for k, v in ex.items():
            if k.endswith((".weight_scale", ".input_scale")):
                continue
            if k.endswith((".k_scale", ".v_scale")):
                kv += 1
                continue
            if k not in sd:
                unknown.append(k)
                continue
            if v.dtype == torch.float8_e4m3fn:
                n = k[:-len(".weight")]
                v = v.float() * ex[n + ".weight_scale"].float().reshape(())
            sd[k].copy_(v.float().reshape(sd[k].shape))
        for n in qnames:
            mods[n].register_forward_pre_hook(act_hook(ex[n + ".input_scale"].float().item()))
    if unknown:
        sys.exit("export tensors the model lacks: %s" % unknown[:5])
    got = logits(mine, seqs, pix, itok)

    qc = json.load(open(os.path.join(a.export, "config.json")))["quantization_config"]
    ignore = set(qc.get("ignore", []))
    unlisted = sorted(n for n in linears if n not in ignore and n not in qnames)
    scale = ref_fq.abs().max().item()
    res = {
        "fp8_modules": len(qnames),
        "fp8_vision_modules": sum(1 for n in qnames if "visual" in n),
        "kv_scales": kv,
        "linears_neither_fp8_nor_ignored": unlisted,
        "export_vs_fakequant": {"max_rel": (got - ref_fq).abs().max().item() / scale,
                                "top1_agreement": (got.argmax(-1) == ref_fq.argmax(-1)).float().mean().item()},
        "fakequant_vs_unquantized": {"max_rel": (ref_fq - ref_plain).abs().max().item() / scale,
                                     "top1_agreement": (ref_fq.argmax(-1) == ref_plain.argmax(-1)).float().mean().item()},
        "n_tokens": got.shape[0],
    }
    print(json.dumps(res, indent=1))
    if a.json:
        json.dump(res, open(a.json, "w"), indent=1)
    return 0 if res["export_vs_fakequant"]["max_rel"] <= 1e-5 else 1


if __name__ == "__main__":
    sys.exit(main())
