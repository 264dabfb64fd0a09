#!/usr/bin/env python3
"""tests/conformance/check_model_files.py: runs where torch + safetensors + transformers exist
(the GPU machine). Three jobs, each recorded in report.json:

  fixtures   write small safetensors files with the Python package (every dtype aqs reads,
             __metadata__, a sharded pair with model.safetensors.index.json) plus expected.json
             (dtype, shape, raw bytes as hex) -> committed under tests/fixtures/safetensors/ and
             checked by tests/unit/model/test_safetensors.c.
  our_writer Python safetensors reads a file written by aqs's writer (samples.safetensors: the
             byte pattern (k*31 + i*7 + 1) & 255 of tensor k) and our synthetic checkpoints.
  hf_load    transformers' Qwen2_5_VLForConditionalGeneration.from_pretrained on the synthetic
             tiny / small checkpoints (both tensor namings), forward passes on text and on
             text + image, the planted-outlier model's BF16 function vs the plain one, and a
             per-group FP8 (per-tensor, amax/448) KL ranking that must put the outlier groups first.
             Reference logits of tiny (seed 0) are saved for the compute engineers.

usage: check_model_files.py CARRY_DIR OUT_DIR [STEP ...]   (default: all steps)
  CARRY_DIR holds samples.safetensors and synth-model outputs tiny/, tiny_hf4/, tiny_outliers/,
  small/ (seed 0; tiny_outliers with the OUTLIERS list below).
"""
import json
import os
import sys
import tarfile
import traceback

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

OUTLIERS = ["lm.0.qkv", "lm.1.o", "lm.2.gate_up", "lm.3.down", "vis.0.qkv", "vis.0.proj",
            "vis.1.gate_up", "vis.1.down", "vis.merger.mlp.0"]
ST_NAMES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32",
            torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.int32: "I32",
            torch.int64: "I64", torch.uint8: "U8", torch.bool: "BOOL"}

report = {}


def step(fn):
    try:
        report[fn.__name__] = {"ok": True, **(fn() or {})}
    except Exception as exc:  # record and continue with the other jobs
        report[fn.__name__] = {"ok": False, "error": repr(exc), "trace": traceback.format_exc()}


def raw_hex(t):
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes().hex()


def describe(tensors):
    return {k: {"dtype": ST_NAMES[v.dtype], "shape": list(v.shape), "hex": raw_hex(v)}
            for k, v in tensors.items()}


def fixtures():
    fx = os.path.join(OUT, "fixtures")
    os.makedirs(os.path.join(fx, "sharded"), exist_ok=True)
    g = torch.Generator().manual_seed(1234)
    dtypes = {
        "bf16.matrix": (torch.arange(12, dtype=torch.float32).reshape(3, 4) * 0.37 - 1).to(torch.bfloat16),
        "f16.vector": (torch.arange(5, dtype=torch.float32) / 3).to(torch.float16),
        "f32.cube": torch.randn(2, 3, 4, generator=g),
        "f8e4m3.codes": torch.tensor([0.0, 1.0, -2.5, 448.0, -448.0, 0.001953125, 3.14]).to(torch.float8_e4m3fn),
        "f8e5m2.codes": torch.tensor([0.0, 1.0, -3.0, 57344.0]).to(torch.float8_e5m2),
        "i32.ids": torch.tensor([0, -1, 2147483647, -2147483648], dtype=torch.int32),
        "i64.big": torch.tensor([[1, -(2 ** 62)], [2 ** 62, 7]], dtype=torch.int64),
        "u8.bytes": torch.arange(250, 256, dtype=torch.uint8),
        "bool.mask": torch.tensor([True, False, True]),
        "f32.scalar": torch.tensor(2.5),
        "bf16.empty": torch.zeros(0, 4, dtype=torch.bfloat16),
    }
    meta = {"format": "pt", "origin": "python-safetensors"}
    save_file(dtypes, os.path.join(fx, "dtypes.safetensors"), metadata=meta)
    shard1 = {"model.embed_tokens.weight": torch.randn(4, 3, generator=g).to(torch.bfloat16),
              "model.layers.0.w": torch.randn(2, 2, generator=g)}
    shard2 = {"model.layers.1.w": torch.randn(2, 2, generator=g),
              "lm_head.weight": torch.randn(4, 3, generator=g).to(torch.bfloat16)}
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file(shard1, os.path.join(fx, "sharded", names[0]), metadata={"format": "pt"})
    save_file(shard2, os.path.join(fx, "sharded", names[1]), metadata={"format": "pt"})
    weight_map = {k: names[0] for k in shard1} | {k: names[1] for k in shard2}
    total = sum(v.numel() * v.element_size() for v in (shard1 | shard2).values())
    with open(os.path.join(fx, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
    expected = {"files": {"dtypes.safetensors": {"metadata": meta, "tensors": describe(dtypes)},
                          "sharded": {"metadata": {}, "tensors": describe(shard1 | shard2)}}}
    with open(os.path.join(fx, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
    return {"files": sorted(os.listdir(fx))}


SAMPLES = [("a.bf16", [3, 5]), ("b.f16", [7]), ("c.f32", [2, 1, 3]), ("d.e4m3", [9]),
           ("e.e5m2", [1, 3]), ("f.i32", [4]), ("g.i64", [2, 2]), ("h.u8", [5]), ("i.bool", [3]),
           ("j.scalar", []), ("k.empty", [0, 4])]
SAMPLE_DTYPES = ["BF16", "F16", "F32", "F8_E4M3", "F8_E5M2", "I32", "I64", "U8", "BOOL", "F32", "BF16"]


def our_writer():
    path = os.path.join(CARRY, "samples.safetensors")
    tensors = load_file(path)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
    assert meta == {"format": "pt", "note": "ünïcode ok"}, meta
    assert sorted(tensors) == sorted(n for n, _ in SAMPLES)
    for k, (name, shape) in enumerate(SAMPLES):
        t = tensors[name]
        assert list(t.shape) == shape, (name, t.shape)
        assert ST_NAMES[t.dtype] == SAMPLE_DTYPES[k], (name, t.dtype)
        got = bytes.fromhex(raw_hex(t))
        want = bytes(((k * 31 + i * 7 + 1) & 255) for i in range(len(got)))
        assert got == want, name
    counts = {}
    for d in ("tiny", "tiny_hf4", "tiny_outliers", "small"):
        files = [f for f in os.listdir(os.path.join(CARRY, d)) if f.endswith(".safetensors")]
        n = 0
        for fname in files:
            for v in load_file(os.path.join(CARRY, d, fname)).values():
                assert v.dtype == torch.bfloat16
                n += 1
        counts[d] = n
    return {"samples": len(tensors), "synth_tensor_counts": counts}


def image_inputs(cfg, tok):
    """input ids with 4 image pads + pixel patches for a 1x4x4 patch grid (merged to 2x2)."""
    text = tok("<|im_start|>user\nWhat is in the picture?", add_special_tokens=False)["input_ids"]
    pads = [cfg.vision_start_token_id] + [cfg.image_token_id] * 4 + [cfg.vision_end_token_id]
    tail = tok("<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([text + pads + tail])
    g = torch.Generator().manual_seed(7)
    v = cfg.vision_config
    pixel = torch.randn(16, v.in_channels * v.temporal_patch_size * v.patch_size ** 2, generator=g)
    return ids, pixel, torch.tensor([[1, 4, 4]])


def load(d, dtype=torch.float32):
    from transformers import Qwen2_5_VLForConditionalGeneration
    m, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        os.path.join(CARRY, d), dtype=dtype, output_loading_info=True)
    return m.eval(), {k: sorted(v)[:20] if isinstance(v, (list, set)) else str(v) for k, v in info.items()}


@torch.no_grad()
def logits_of(m, ids, pixel=None, grid=None):
    kw = {} if pixel is None else {"pixel_values": pixel, "image_grid_thw": grid}
    return m(input_ids=ids, **kw).logits.float()


def kl(ref, other):
    p = torch.log_softmax(ref, -1)
    q = torch.log_softmax(other, -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


@torch.no_grad()
def fp8_group_ranking(m, ids, pixel, grid):
    """KL of the output when one group's weights go through per-tensor FP8 E4M3 (amax/448)."""
    ref = logits_of(m, ids, pixel, grid)
    named = dict(m.named_modules())
    groups = {}
    for name, mod in named.items():
        if not isinstance(mod, torch.nn.Linear) or "lm_head" in name:
            continue
        parts = name.split(".")
        if "language_model" in parts:
            L = parts[parts.index("layers") + 1]
            kind = {"q_proj": "qkv", "k_proj": "qkv", "v_proj": "qkv", "o_proj": "o",
                    "gate_proj": "gate_up", "up_proj": "gate_up", "down_proj": "down"}[parts[-1]]
            gid = f"lm.{L}.{kind}"
        elif "merger" in parts:
            gid = "vis.merger.mlp." + parts[-1]
        else:
            B = parts[parts.index("blocks") + 1]
            kind = {"qkv": "qkv", "proj": "proj", "gate_proj": "gate_up", "up_proj": "gate_up",
                    "down_proj": "down"}[parts[-1]]
            gid = f"vis.{B}.{kind}"
        groups.setdefault(gid, []).append(mod)
    scores = {}
    for gid, mods in groups.items():
        saved = [mod.weight.data.clone() for mod in mods]
        for mod in mods:
            w = mod.weight.data
            scale = w.abs().max().float() / 448.0
            q = (w.float() / scale).clamp(-448, 448).to(torch.float8_e4m3fn)
            mod.weight.data = (q.float() * scale).to(w.dtype)
        scores[gid] = kl(ref, logits_of(m, ids, pixel, grid))
        for mod, w in zip(mods, saved):
            mod.weight.data = w
    return dict(sorted(scores.items(), key=lambda kv: -kv[1]))


def hf_load():
    from transformers import AutoTokenizer
    out = {}
    m, out["tiny_loading_info"] = load("tiny")
    cfg = m.config
    tok = AutoTokenizer.from_pretrained(os.path.join(CARRY, "tiny"))
    samples = ["Hello world", "<|im_start|>user\nWhat is 2+2?<|im_end|>", "  spaces\tand\nnewlines ",
               "Ünïcödé ✓ 日本語", "quantization of the image"]
    out["tokenizer_ids"] = {s: tok(s, add_special_tokens=False)["input_ids"] for s in samples}
    out["special_ids"] = {t: tok.convert_tokens_to_ids(t) for t in
                          ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>",
                           "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]}
    assert out["special_ids"]["<|image_pad|>"] == cfg.image_token_id
    assert out["special_ids"]["<|vision_start|>"] == cfg.vision_start_token_id
    assert len(tok) <= cfg.text_config.vocab_size, (len(tok), cfg.text_config.vocab_size)
    # Weights as loaded equal the file (the tied head is the embedding).
    sd = m.state_dict()
    file_tensors = load_file(os.path.join(CARRY, "tiny", "model.safetensors"))
    mismatched = [k for k, v in file_tensors.items() if k not in sd or not torch.equal(sd[k], v.float())]
    out["tiny_state_dict_mismatches"] = mismatched[:20]
    out["tiny_lm_head_tied"] = bool(torch.equal(sd["lm_head.weight"], sd["model.language_model.embed_tokens.weight"]))
    text_ids = torch.tensor([tok("<|im_start|>user\nDescribe the quantization of a model.<|im_end|>",
                                 add_special_tokens=False)["input_ids"]])
    ids, pixel, grid = image_inputs(cfg, tok)
    lt = logits_of(m, text_ids)
    li = logits_of(m, ids, pixel, grid)
    out["tiny_logits"] = {"text_std": float(lt.std()), "image_std": float(li.std()),
                          "finite": bool(torch.isfinite(lt).all() and torch.isfinite(li).all())}
    save_file({"text_input_ids": text_ids.to(torch.int64), "text_logits": lt.contiguous(),
               "image_input_ids": ids.to(torch.int64), "pixel_values": pixel.contiguous(),
               "image_grid_thw": grid.to(torch.int64), "image_logits": li.contiguous()},
              os.path.join(OUT, "fixtures", "qwen_tiny_seed0_reference.safetensors"),
              metadata={"format": "pt", "model": "aqs synth-model --preset tiny --seed 0",
                        "dtype": "float32 weights (BF16 values), eager CPU/GPU torch"})
    m4, out["tiny_hf4_loading_info"] = load("tiny_hf4")
    out["hf4_vs_hf5_max_abs"] = float((logits_of(m4, ids, pixel, grid) - li).abs().max())
    mo, out["tiny_outliers_loading_info"] = load("tiny_outliers")
    lo = logits_of(mo, ids, pixel, grid)
    out["outliers_vs_plain"] = {"max_abs": float((lo - li).abs().max()), "kl": kl(li, lo)}
    ranking = fp8_group_ranking(mo, ids, pixel, grid)
    out["fp8_kl_ranking_outliers"] = ranking
    top = list(ranking)[:len(OUTLIERS)]
    out["outlier_groups_in_top"] = sorted(set(top) & set(OUTLIERS))
    out["fp8_kl_ranking_plain"] = dict(list(fp8_group_ranking(m, ids, pixel, grid).items())[:8])
    ms, out["small_loading_info"] = load("small")
    tok_s = AutoTokenizer.from_pretrained(os.path.join(CARRY, "small"))
    ids_s, pixel_s, grid_s = image_inputs(ms.config, tok_s)
    ls = logits_of(ms, ids_s, pixel_s, grid_s)
    out["small_logits"] = {"std": float(ls.std()), "finite": bool(torch.isfinite(ls).all()),
                           "lm_head_tied": bool(torch.equal(ms.lm_head.weight, ms.model.language_model.embed_tokens.weight))}
    try:
        from transformers import AutoProcessor
        AutoProcessor.from_pretrained(os.path.join(CARRY, "tiny"))
        out["processor"] = "loaded"
    except Exception as exc:
        out["processor"] = repr(exc)
    return out


def synth_3b():
    """Times the 3b preset written by the aqs synth driver (CARRY/synth_drv, all cores) and
    loads it with transformers on the GPU for one forward pass."""
    import subprocess
    import time
    drv = os.path.join(CARRY, "synth_drv")
    if not os.path.exists(drv):
        return {"skipped": "no synth_drv in carry"}
    out_dir = "/tmp/aqs-synth-3b"
    env = dict(os.environ, LD_LIBRARY_PATH=CARRY, AQS_PROGRESS="never")
    t0 = time.time()
    proc = subprocess.run([drv, "3b", out_dir, "0", "5"], env=env, capture_output=True, text=True)
    seconds = time.time() - t0
    assert proc.returncode == 0, proc.stderr[-2000:]
    size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
    res = {"seconds": round(seconds, 2), "bytes": size, "GB_per_s": round(size / seconds / 1e9, 3),
           "cpus": os.cpu_count(), "driver": proc.stdout.strip(), "files": sorted(os.listdir(out_dir))}
    from transformers import AutoTokenizer, Qwen2_5_VLForConditionalGeneration
    t0 = time.time()
    m, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        out_dir, dtype=torch.bfloat16, output_loading_info=True, device_map="cuda")
    res["load_seconds"] = round(time.time() - t0, 2)
    res["loading_info"] = {k: sorted(v)[:20] if isinstance(v, (list, set)) else str(v) for k, v in info.items()}
    res["num_parameters"] = sum(p.numel() for p in m.parameters())
    tok = AutoTokenizer.from_pretrained(out_dir)
    ids, pixel, grid = image_inputs(m.config, tok)
    with torch.no_grad():
        logits = m(input_ids=ids.cuda(), pixel_values=pixel.cuda().to(torch.bfloat16),
                   image_grid_thw=grid.cuda()).logits.float()
    res["logits_std"] = float(logits.std())
    res["finite"] = bool(torch.isfinite(logits).all())
    res["tokenizer_len"] = len(tok)
    return res


if __name__ == "__main__":
    CARRY, OUT = sys.argv[1], sys.argv[2]
    import transformers
    report["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    wanted = sys.argv[3:] or ["fixtures", "our_writer", "hf_load", "synth_3b"]
    os.makedirs(os.path.join(OUT, "fixtures"), exist_ok=True)
    for fn in (fixtures, our_writer, hf_load, synth_3b):
        if fn.__name__ in wanted:
            step(fn)
    with tarfile.open(os.path.join(OUT, "fixtures.tar.gz"), "w:gz") as tar:
        tar.add(os.path.join(OUT, "fixtures"), arcname="fixtures")
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f, indent=1, default=str)
    print(json.dumps(report, indent=1, default=str)[:6000])
