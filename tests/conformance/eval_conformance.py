#!/usr/bin/env python3
"""tests/conformance/eval_conformance.py: checks `aqs eval` against transformers + torch.

Runs on the GPU machine (torch + transformers 5.x). The BF16 source is loaded with
Qwen2_5_VLForConditionalGeneration in float32; each scheme is the same model with every FP8
linear of the exported checkpoint replaced by its dequantized FP8 weight (members of vLLM's
fused GEMMs, q/k/v and gate/up, requantized to the largest weight scale through float16 first,
as vLLM's modelopt loader does) and its input fake-quantized to E4M3 with the static input
scale (a forward pre-hook). On the same token sequences it computes, independently of aqs:
  perplexity = exp(mean next-token cross-entropy), mean per-position KL(p_bf16 || p_scheme),
and compares them with aqs eval --json rows (run with --precision f32) within 1 % relative.
A scheme with an FP8 KV cache (self_attn.k_proj.k_scale / v_proj.v_scale in the checkpoint) runs
through an attention function registered with transformers' AttentionInterface: K after RoPE and
V are fake-quantized to E4M3 with the layer's scale (x / scale, saturated at 448, times scale)
before SDPA, as a served FP8 KV cache stores and reads them back.

usage: eval_conformance.py --source MODEL_DIR --tokens TOKENS.jsonl --ours EVAL.json
       [--case NAME CKPT_DIR ...] [--json OUT.json]
TOKENS.jsonl: one JSON array of token ids per line (aqs tokenize --json).
"""
import argparse
import glob
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

REL_TOL = 0.01


def read_tokens(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_model(model_dir, attn="sdpa"):
    from transformers import Qwen2_5_VLForConditionalGeneration
    m = Qwen2_5_VLForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32,
                                                           attn_implementation=attn)
    return m.cuda().eval()


def read_safetensors(ckpt_dir):
    """All tensors of the checkpoint's shards, by name (FP8 as torch.float8_e4m3fn)."""
    dtypes = {"F8_E4M3": torch.float8_e4m3fn, "F32": torch.float32, "BF16": torch.bfloat16}
    out = {}
    for path in sorted(glob.glob(os.path.join(ckpt_dir, "*.safetensors"))):
        with open(path, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
            data = f.read()
        for name, t in header.items():
            if name == "__metadata__" or t["dtype"] not in dtypes:
                continue
            a, b = t["data_offsets"]
            raw = torch.frombuffer(bytearray(data[a:b]), dtype=torch.uint8) if b > a else torch.empty(0, dtype=torch.uint8)
            out[name] = raw.view(dtypes[t["dtype"]]).reshape(t["shape"])
    return out


FUSED = [("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"), ("self_attn.o_proj",),
         ("mlp.gate_proj", "mlp.up_proj"), ("mlp.down_proj",)]


def served_weights(tensors):
    """module -> (dequantized weight float32, input scale) for every FP8 linear."""
    out = {}
    fp8 = sorted(n[:-len(".weight")] for n, t in tensors.items()
                 if n.endswith(".weight") and t.dtype == torch.float8_e4m3fn)
    layers = sorted({m.rsplit(".", 2)[0] for m in fp8})
    for layer in layers:
        for group in FUSED:
            mods = [f"{layer}.{s}" for s in group if f"{layer}.{s}" in fp8]
            if not mods:
                continue
            assert len(mods) == len(group), f"partly quantized fused GEMM in {layer}"
            ws = [tensors[m + ".weight_scale"].float().reshape(()) for m in mods]
            xs = max(float(tensors[m + ".input_scale"].float().reshape(())) for m in mods)
            wmax = torch.stack(ws).max()
            for m, s in zip(mods, ws):
                q = tensors[m + ".weight"]
                if float(s) != float(wmax):  # vLLM requantize_with_max_scale, on the GPU as vLLM runs it
                    dq = q.cuda().to(torch.float16) * s.cuda()  # per_tensor_dequantize: a float16 result
                    inv = torch.tensor(1.0, device="cuda") / wmax.cuda()
                    q = (dq.float() * inv).clamp(-448, 448).to(torch.float8_e4m3fn).cpu()
                out[m] = (q.float() * wmax, xs)
    return out


def hf_module_name(ckpt_module, model):
    """Checkpoint module name -> the name of that nn.Module in the loaded transformers model."""
    names = dict(model.named_modules())
    if ckpt_module in names:
        return ckpt_module
    tail = ckpt_module.split("layers.", 1)[1]
    for n in names:
        if n.endswith("language_model.layers." + tail) or n.endswith("model.layers." + tail):
            return n
    raise KeyError(ckpt_module)


def fake_quant(x, scale):
    q = (x.float() / scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
    return (q.float() * scale).to(x.dtype)


KV_SCALES = {}  # id(attention module) -> (k_scale, v_scale) tensors on the GPU


def fp8_kv_attention(module, query, key, value, attention_mask, **kwargs):
    """SDPA on K and V as an FP8 KV cache returns them (per-tensor E4M3 fake quant)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    scales = KV_SCALES.get(id(module))
    if scales is not None:
        key, value = fake_quant(key, scales[0]), fake_quant(value, scales[1])
    return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)


def register_fp8_kv():
    from transformers import AttentionInterface
    AttentionInterface.register("aqs_fp8_kv", fp8_kv_attention)


def make_scheme(source_dir, ckpt_dir):
    tensors = read_safetensors(ckpt_dir)
    kv = sorted(n[:-len(".k_proj.k_scale")] for n in tensors if n.endswith(".self_attn.k_proj.k_scale"))
    model = load_model(source_dir, "aqs_fp8_kv" if kv else "sdpa")
    names = dict(model.named_modules())
    for attn in kv:
        module = names[hf_module_name(attn, model)]
        KV_SCALES[id(module)] = tuple(torch.tensor(float(tensors[f"{attn}.{p}_proj.{p}_scale"].float().reshape(())),
                                                   dtype=torch.float32, device="cuda") for p in "kv")
    hooks = []
    for module, (w, xs) in served_weights(tensors).items():
        lin = names[hf_module_name(module, model)]
        with torch.no_grad():
            lin.weight.copy_(w.to(lin.weight.device))
        scale = torch.tensor(xs, dtype=torch.float32, device="cuda")

        def pre(mod, args, scale=scale):
            x = args[0]
            return (fake_quant(x, scale),) + tuple(args[1:])
        hooks.append(lin.register_forward_pre_hook(pre))
    return model, len(hooks), len(kv)


@torch.no_grad()
def logits_of(model, seq):
    ids = torch.tensor([seq], device="cuda")
    return model(input_ids=ids).logits[0].float()


@torch.no_grad()
def metrics(ref, scheme, seqs):
    ce = kl = 0.0
    n = 0
    kls = []
    for seq in seqs:
        a, b = logits_of(ref, seq), logits_of(scheme, seq)
        la, lb = F.log_softmax(a.double(), -1)[:-1], F.log_softmax(b.double(), -1)[:-1]
        tgt = torch.tensor(seq[1:], device="cuda")
        ce += float(-lb.gather(1, tgt[:, None]).sum())
        k = (la.exp() * (la - lb)).sum(-1)
        kls += k.tolist()
        kl += float(k.sum())
        n += len(seq) - 1
    return {"ppl": math.exp(ce / n), "kl_mean": kl / n, "n_targets": n}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--ours", required=True)
    ap.add_argument("--case", nargs=2, action="append", metavar=("NAME", "CKPT_DIR"), required=True)
    ap.add_argument("--json")
    a = ap.parse_args()
    seqs = read_tokens(a.tokens)
    ours = {r["name"]: r for r in json.load(open(a.ours))}
    register_fp8_kv()
    ref = load_model(a.source)
    results, ok = [], True
    for name, ckpt in a.case:
        scheme, n_fp8, n_kv = make_scheme(a.source, ckpt)
        got = metrics(ref, scheme, seqs)
        mine = ours[name]
        r = {"case": name, "fp8_linears": n_fp8, "fp8_kv_layers": n_kv, "n_targets": got["n_targets"],
             "ours_n_targets": mine["n_targets"]}
        for key in ("ppl", "kl_mean"):
            rel = abs(mine[key] - got[key]) / abs(got[key])
            r[key] = {"torch": got[key], "aqs": mine[key], "rel_err": rel, "pass": rel <= REL_TOL}
            ok &= rel <= REL_TOL
        ok &= got["n_targets"] == mine["n_targets"]
        results.append(r)
        print(json.dumps(r), flush=True)
        del scheme
        torch.cuda.empty_cache()
    doc = {"torch": torch.__version__, "device": torch.cuda.get_device_name(), "tolerance": REL_TOL,
           "results": results, "pass": ok}
    if a.json:
        json.dump(doc, open(a.json, "w"), indent=1)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
