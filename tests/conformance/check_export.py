#!/usr/bin/env python3
# tests/conformance/check_export.py: checks an aqs export against its source with PyTorch (runs
# where torch + safetensors exist, e.g. the GPU machine):
#   - every FP8 weight is bit-identical to torch's own (w / weight_scale).clamp(-448, 448)
#     .to(float8_e4m3fn) with weight_scale a 0-dim float32 tensor on the weight's device (the
#     ModelOpt export expression), weight_scale == max|w| / 448, scales are 0-dim float32;
#   - dequantized FP8 weights are within the E4M3 rounding bound of the source;
#   - every other tensor is bit-identical to the source;
#   - hf_quant_config.json / config.json agree with which weights are FP8 (exclude_modules);
#   - transformers can parse config.json (AutoConfig), if transformers is installed.
# usage: check_export.py EXPORT_DIR SOURCE_DIR [REPORT.json]   exit 0 = all checks pass
import json
import os
import sys

import torch
from safetensors import safe_open

FP8 = torch.float8_e4m3fn


def load_all(d):
    idx = os.path.join(d, "model.safetensors.index.json")
    files = sorted(set(json.load(open(idx))["weight_map"].values())) if os.path.exists(idx) else \
        sorted(f for f in os.listdir(d) if f.endswith(".safetensors"))
    out = {}
    for f in files:
        with safe_open(os.path.join(d, f), framework="pt") as h:
            for k in h.keys():
                out[k] = h.get_tensor(k)
    return out


def e4m3_step(v):
    a = v.abs().float()
    step = torch.full_like(a, 2.0 ** -9)
    normal = a >= 2.0 ** -6
    e = torch.floor(torch.log2(torch.where(normal, a, torch.ones_like(a))))
    step = torch.where(normal, torch.pow(2.0, e - 3), step)
    return step


def main():
    exp_dir, src_dir = sys.argv[1], sys.argv[2]
    report_path = sys.argv[3] if len(sys.argv) > 3 else None
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    exp, src = load_all(exp_dir), load_all(src_dir)
    problems, stats = [], {"fp8_weights": 0, "copied": 0, "max_rel_err": 0.0, "elements": 0}
    fp8_modules = set()
    for name, s in src.items():
        if name not in exp:
            problems.append(f"{name}: missing from export")
            continue
        t = exp[name]
        if t.dtype == FP8:
            module = name[: -len(".weight")]
            fp8_modules.add(module)
            ws, ins = exp.get(module + ".weight_scale"), exp.get(module + ".input_scale")
            if ws is None or ins is None:
                problems.append(f"{module}: weight_scale/input_scale missing")
                continue
            if ws.dtype != torch.float32 or ws.dim() != 0 or ins.dtype != torch.float32 or ins.dim() != 0:
                problems.append(f"{module}: scales must be 0-dim float32, got {ws.dtype}{tuple(ws.shape)}")
            want_ws = s.abs().max().float() / 448.0
            if want_ws.item() == 0:
                want_ws = torch.tensor(1.0)
            if ws.view(torch.int32).item() != want_ws.view(torch.int32).item():
                problems.append(f"{module}: weight_scale {ws.item()!r} != max|w|/448 {want_ws.item()!r}")
            sd = s.to(dev)
            ref = (sd / ws.to(dev)).clamp(-448, 448).to(FP8).view(torch.uint8).cpu()
            got = t.view(torch.uint8)
            ndiff = int((ref != got).sum())
            if ndiff:
                problems.append(f"{name}: {ndiff} of {got.numel()} FP8 codes differ from torch on {dev}")
            deq = t.float() * ws
            x = s.float()
            err = (deq - x).abs()
            bound = 0.5 * e4m3_step(x / ws) * ws + x.abs() * 2.0 ** -7 + 1e-30
            if bool((err > bound * 1.0001).any()):
                problems.append(f"{name}: dequantized error above the E4M3 bound (max {err.max().item():g})")
            rel = (err.norm() / x.norm().clamp_min(1e-30)).item()
            stats["max_rel_err"] = max(stats["max_rel_err"], rel)
            stats["fp8_weights"] += 1
            stats["elements"] += x.numel()
        else:
            if t.dtype != s.dtype or t.shape != s.shape or not torch.equal(
                    t.view(torch.uint8) if t.dim() else t.reshape(1).view(torch.uint8),
                    s.view(torch.uint8) if s.dim() else s.reshape(1).view(torch.uint8)):
                problems.append(f"{name}: copied tensor is not bit-identical to the source")
            stats["copied"] += 1
    extra = set(exp) - set(src) - {m + sfx for m in fp8_modules for sfx in (".weight_scale", ".input_scale")}
    if extra:
        problems.append(f"unexpected tensors in export: {sorted(extra)[:5]}")
    hq_path = os.path.join(exp_dir, "hf_quant_config.json")
    if fp8_modules:
        hq = json.load(open(hq_path))
        q = hq["quantization"]
        if q["quant_algo"] != "FP8" or hq["producer"]["name"] != "modelopt":
            problems.append("hf_quant_config.json: quant_algo/producer wrong")
        excl = set(q["exclude_modules"])
        if excl & fp8_modules:
            problems.append(f"exclude_modules lists FP8 modules: {sorted(excl & fp8_modules)[:5]}")
        linears = {n[: -len(".weight")] for n, v in src.items()
                   if n.endswith(".weight") and v.dim() == 2 and "embed_tokens" not in n}
        missing = linears - fp8_modules - excl
        if missing:
            problems.append(f"BF16 linears not excluded: {sorted(missing)[:5]}")
        cfg = json.load(open(os.path.join(exp_dir, "config.json")))
        qc = cfg.get("quantization_config", {})
        if qc.get("quant_method") != "modelopt" or set(qc.get("ignore", [])) != excl:
            problems.append("config.json quantization_config disagrees with hf_quant_config.json")
    try:
        from transformers import AutoConfig
        AutoConfig.from_pretrained(exp_dir)
        stats["transformers_autoconfig"] = "ok"
    except Exception as ex:  # report, do not fail: transformers may not know every field
        stats["transformers_autoconfig"] = f"{type(ex).__name__}: {ex}"[:300]
    stats["device"] = dev
    stats["torch"] = torch.__version__
    report = {"export": exp_dir, "problems": problems, "stats": stats, "ok": not problems}
    text = json.dumps(report, indent=1)
    print(text)
    if report_path:
        open(report_path, "w").write(text + "\n")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
