#!/usr/bin/env python3
"""tests/conformance/hf_reference.py: checks aqs's compute engine against transformers.

Runs on the GPU machine (torch + transformers 5.x). For each synthetic checkpoint (tiny, small)
it loads Qwen2_5_VLForConditionalGeneration and compares, on the same JSON-lines token sequences:
  - logits with ours (raw float32 files written by tests/bench/lm_logits_dump on our CPU backend):
    max and mean abs error relative to the logit scale (max |logit|), in float32 and bfloat16;
  - ModelOpt AutoQuantize gradient scores computed with torch hooks (same calibrated amax table
    as ours, fake quant via float8_e4m3fn casts): S_m = sum clamp(G * (Y_fp8 - Y), +-1e10)^2 per
    linear module, loss = mean next-token CE of each batch of 8 sequences; group = sum of members;
    Spearman rank correlation and median relative error vs ours (targets: >= 0.99 and <= 5 %);
  - kl_div scores (sum over tokens of KL(p_ref || p with only group g fake-quantized)) likewise.

usage: hf_reference.py --case NAME MODEL_DIR TOKENS.jsonl AMAX.json OURS_PREFIX [--case ...]
       [--json OUT.json]
OURS_PREFIX + "_logits_f32.bin", "_logits_bf16.bin", "_scores_gradient.json",
"_scores_kl_div.json" are our outputs.
"""
import argparse
import json
import math
import statistics
import sys

import torch
import torch.nn.functional as F

BATCH_SEQS = 8  # must match `aqs sensitivity --batch-seqs` (default 8)


def read_tokens(path):
    seqs = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                seqs.append(json.loads(line))
    return seqs


def load_model(model_dir, dtype):
    from transformers import Qwen2_5_VLForConditionalGeneration
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        model_dir, dtype=dtype, attn_implementation="sdpa").cuda().eval()
    return model


def lm_linears(model):
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in name and "visual" not in name:
            out[name] = mod
    return out


def fq_act(x, scale):
    """FP8 fake quant of an activation (float32 math, as our quantize_fp8_f32)."""
    s = torch.tensor(scale, dtype=torch.float32, device=x.device)
    q = (x.float() / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return q.float() * s


def fq_weight(w, scale):
    """FP8 fake quant of a BF16 weight: bf16 / float32 0-dim scale (computed in bf16 on CUDA,
    ModelOpt's export expression), then dequantized in float32."""
    s = torch.tensor(scale, dtype=torch.float32, device=w.device)
    q = (w.to(torch.bfloat16) / s).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return q.float() * s


def scale_of(amax):
    """amax / 448 in float32 (as aqs_fp8_scale_from_amax); 1 when that is 0."""
    s = (torch.tensor(amax, dtype=torch.float32) / torch.tensor(448.0, dtype=torch.float32)).item()
    return s if s > 0 else 1.0


def logits_of(model, seqs):
    outs = []
    with torch.no_grad():
        for ids in seqs:
            t = torch.tensor([ids], device="cuda")
            outs.append(model(input_ids=t, use_cache=False).logits[0].float().cpu())
    return torch.cat(outs, 0)


def compare_logits(ref, ours):
    scale = ref.abs().max().item()
    err = (ref - ours).abs()
    return {"logit_scale_maxabs": scale, "max_abs_err": err.max().item(),
            "mean_abs_err": err.mean().item(), "max_rel_to_scale": err.max().item() / scale,
            "mean_rel_to_scale": err.mean().item() / scale,
            "top1_agreement": (ref.argmax(-1) == ours.argmax(-1)).float().mean().item()}


def gradient_scores(model, seqs, amax):
    lins = lm_linears(model)
    scores = {name: 0.0 for name in lins}
    handles = []

    def make_hook(name, mod):
        a = amax[name]
        sx, sw = scale_of(a["input_amax"]), scale_of(a["weight_amax"])
        wq = fq_weight(mod.weight.detach(), sw)

        def hook(m, inp, out):
            with torch.no_grad():
                yq = F.linear(fq_act(inp[0].detach(), sx), wq,
                              None if m.bias is None else m.bias.float())
                dy = yq - out.detach().float()

            def ghook(g):
                t = (g.float() * dy).clamp(-1e10, 1e10)
                scores[name] += (t.double() ** 2).sum().item()
            out.register_hook(ghook)
        return hook

    for name, mod in lins.items():
        handles.append(mod.register_forward_hook(make_hook(name, mod)))
    for b0 in range(0, len(seqs), BATCH_SEQS):
        batch = seqs[b0:b0 + BATCH_SEQS]
        n_targets = sum(len(s) - 1 for s in batch)
        for ids in batch:
            if len(ids) < 2:
                continue
            t = torch.tensor([ids], device="cuda")
            logits = model(input_ids=t, use_cache=False).logits[0].float()
            loss = F.cross_entropy(logits[:-1], t[0, 1:], reduction="sum") / n_targets
            model.zero_grad(set_to_none=True)
            loss.backward()
    for h in handles:
        h.remove()
    model.zero_grad(set_to_none=True)
    return scores


def kl_scores(model, seqs, amax, groups):
    lins = lm_linears(model)
    ref = []
    with torch.no_grad():
        for ids in seqs:
            t = torch.tensor([ids], device="cuda")
            ref.append(F.log_softmax(model(input_ids=t, use_cache=False).logits[0].float(), -1))
    out = {}
    for gid, members in groups.items():
        handles = []
        for name in members:
            mod = lins[name]
            a = amax[name]
            sx, sw = scale_of(a["input_amax"]), scale_of(a["weight_amax"])
            wq = fq_weight(mod.weight.detach(), sw)

            def hook(m, inp, o, sx=sx, wq=wq):
                return F.linear(fq_act(inp[0], sx), wq,
                                None if m.bias is None else m.bias.float()).to(o.dtype)
            handles.append(mod.register_forward_hook(hook))
        total = 0.0
        with torch.no_grad():
            for ids, lp_ref in zip(seqs, ref):
                t = torch.tensor([ids], device="cuda")
                lq = F.log_softmax(model(input_ids=t, use_cache=False).logits[0].float(), -1)
                total += (lp_ref.exp() * (lp_ref - lq)).sum().item()
        for h in handles:
            h.remove()
        out[gid] = total
    return out


def ranks(v):
    order = sorted(range(len(v)), key=lambda i: v[i])
    r = [0.0] * len(v)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and v[order[j + 1]] == v[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2.0
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return num / den


def compare_scores(ref, ours):
    keys = sorted(ref)
    a = [ref[k] for k in keys]
    b = [ours[k] for k in keys]
    rel = [abs(x - y) / abs(x) for x, y in zip(a, b) if x != 0]
    rho, med = spearman(a, b), statistics.median(rel)
    return {"n": len(keys), "spearman": rho, "median_rel_err": med, "max_rel_err": max(rel),
            "pass": rho >= 0.99 and med <= 0.05}


def guarded(res, key, fn):
    """Runs fn() into res[key]; an exception is recorded instead of aborting the other checks."""
    try:
        res[key] = fn()
    except Exception as exc:  # noqa: BLE001 - report every failure, keep going
        import traceback
        traceback.print_exc()
        res[key] = {"error": repr(exc), "pass": False}


def run_case(name, model_dir, tokens, amax_path, prefix):
    seqs = read_tokens(tokens)
    amax = json.load(open(amax_path))["modules"]
    res = {"case": name, "n_seqs": len(seqs), "n_tokens": sum(len(s) for s in seqs)}
    og = json.load(open(prefix + "_scores_gradient.json"))
    groups = {g["id"]: [m["module"] for m in g["members"]] for g in og["groups"]}
    for dtype, tag in ((torch.float32, "f32"), (torch.bfloat16, "bf16")):
        model = load_model(model_dir, dtype)

        def logits_check():
            ref = logits_of(model, seqs)
            with open(prefix + "_logits_%s.bin" % tag, "rb") as f:
                ours = torch.frombuffer(bytearray(f.read()), dtype=torch.float32)
            return compare_logits(ref, ours.reshape(ref.shape))
        guarded(res, "logits_" + tag, logits_check)
        if tag == "f32":
            grad = {}

            def grad_modules():
                grad.update(gradient_scores(model, seqs, amax))
                our_mod = {m["module"]: m["score"] for g in og["groups"] for m in g["members"]}
                return compare_scores(grad, our_mod)

            def grad_groups():
                ref_grp = {gid: sum(grad[m] for m in mem) for gid, mem in groups.items()}
                our_grp = {g["id"]: g["formats"]["fp8"]["score"] for g in og["groups"]}
                return compare_scores(ref_grp, our_grp)

            def kl_groups():
                ok = json.load(open(prefix + "_scores_kl_div.json"))
                kl = kl_scores(model, seqs, amax, groups)
                return compare_scores(kl, {g["id"]: g["formats"]["fp8"]["score"]
                                           for g in ok["groups"]})
            guarded(res, "gradient_modules", grad_modules)
            guarded(res, "gradient_groups", grad_groups)
            guarded(res, "kl_div_groups", kl_groups)
        del model
        torch.cuda.empty_cache()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", nargs=5, action="append", required=True,
                    metavar=("NAME", "MODEL", "TOKENS", "AMAX", "OURS_PREFIX"))
    ap.add_argument("--json")
    args = ap.parse_args()
    print("torch", torch.__version__, "device", torch.cuda.get_device_name(0), flush=True)
    results = []
    for case in args.case:
        r = run_case(*case)
        results.append(r)
        print(json.dumps(r, indent=1), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"torch": torch.__version__, "device": torch.cuda.get_device_name(0),
                       "results": results}, f, indent=1)
    ok = all(r[k]["pass"] for r in results for k in ("gradient_modules", "gradient_groups"))
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
