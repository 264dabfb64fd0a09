#!/usr/bin/env python3
"""tests/bench/torch_peer.py: the PyTorch + transformers peer of tests/bench/compute_bench.c.

Same checkpoint, same batch shapes, same computation, done the way a quantization engineer would
with stock tools: Qwen2_5_VLForConditionalGeneration in bf16 on the GPU, forward pre-hooks for max
calibration of every language-model linear's input, and ModelOpt-AutoQuantize-style gradient scores
(forward hooks compute the FP8 fake-quant output via float8_e4m3fn casts, tensor hooks catch dL/dY,
score += clamp(G * (Y_q - Y), +-1e10)^2). Reports tokens/s for both, the bf16 matmul peak of the
same run, and peak memory; --json writes them for the benchmark report. --varied: caption-like
sequence lengths (compute_bench.c's generator, so the same lengths), right-padded to the batch's
longest with an attention mask as a transformers user would; tokens/s count real tokens only.
"""
import argparse
import json
import time

import torch


def fake_quant_fp8(x, scale):
    """E4M3 per-tensor fake quant as ModelOpt: (x / s).clamp(+-448) -> float8_e4m3fn -> x.dtype * s."""
    return (x / scale).clamp(-448.0, 448.0).to(torch.float8_e4m3fn).to(x.dtype) * scale


def matmul_peak_tflops(n=8192, reps=20):
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2.0 * n ** 3 * reps / (time.perf_counter() - t0) / 1e12


def lm_linears(model):
    """(name, module) of every nn.Linear inside the language model's decoder layers."""
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".layers." in name and "visual" not in name:
            out.append((name, mod))
    return out


def amax_hooks(linears):
    """Pre-hooks recording max |input| of every (name, module) into F32 scalars kept on the GPU
    (no sync per hook). Returns (amax by name, hook handles)."""
    amax = {name: torch.zeros((), device="cuda", dtype=torch.float32) for name, _ in linears}
    handles = []
    for name, mod in linears:
        def pre_hook(m, inputs, name=name):
            torch.maximum(amax[name], inputs[0].detach().abs().amax().float(), out=amax[name])
        handles.append(mod.register_forward_pre_hook(pre_hook))
    return amax, handles


def caption_lens(seqs, max_len, seed):
    """compute_bench.c caption_len: 85 % in 12..30 tokens, the rest 31..72, at most max_len."""
    s, out, mask = seed, [], (1 << 64) - 1
    for _ in range(seqs):
        s = (s * 6364136223846793005 + 1442695040888963407) & mask
        r = s >> 33
        s = (s * 6364136223846793005 + 1442695040888963407) & mask
        r2 = s >> 33
        n = 12 + r2 % 19 if r % 100 < 85 else 31 + r2 % 42
        out.append(min(n, max_len))
    return out


def random_batch(seqs, length, vocab, seed, varied=False):
    """(ids, attention mask or None, labels, real tokens)."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    if not varied:
        ids = torch.randint(0, vocab, (seqs, length), generator=g).cuda()
        return ids, None, ids, seqs * length
    lens = caption_lens(seqs, length, seed)
    width = max(lens)
    ids = torch.randint(0, vocab, (seqs, width), generator=g)
    mask = torch.zeros(seqs, width, dtype=torch.long)
    for i, n in enumerate(lens):
        mask[i, :n] = 1
    labels = ids.masked_fill(mask == 0, -100)
    return ids.cuda(), mask.cuda(), labels.cuda(), sum(lens)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--calib-seqs", type=int, default=16)
    ap.add_argument("--calib-len", type=int, default=64)
    ap.add_argument("--calib-steps", type=int, default=8)
    ap.add_argument("--score-seqs", type=int, default=8)
    ap.add_argument("--score-len", type=int, default=64)
    ap.add_argument("--score-steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--varied", action="store_true")
    ap.add_argument("--json")
    args = ap.parse_args()

    from transformers import Qwen2_5_VLForConditionalGeneration

    peak = matmul_peak_tflops()
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}")
    print(f"torch bf16 matmul peak (8192^3): {peak:.1f} TFLOP/s")
    t0 = time.perf_counter()
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        args.model, dtype=torch.bfloat16, attn_implementation="sdpa").cuda().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    load_s = time.perf_counter() - t0
    vocab = model.config.text_config.vocab_size if hasattr(model.config, "text_config") else model.config.vocab_size
    linears = lm_linears(model)
    print(f"loaded {args.model} in {load_s:.1f} s; {len(linears)} language-model linears")

    # ---- calibration: max |input| of every linear, amax kept on the GPU (no sync per hook)
    amax, handles = amax_hooks(linears)
    torch.cuda.reset_peak_memory_stats()
    calib_s, calib_tokens = 0.0, 0
    with torch.no_grad():
        for step in range(args.warmup + args.calib_steps):
            ids, mask, _, ntok = random_batch(args.calib_seqs, args.calib_len, vocab, step + 1, args.varied)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(input_ids=ids, attention_mask=mask)
            torch.cuda.synchronize()
            if step >= args.warmup:
                calib_s += time.perf_counter() - t0
                calib_tokens += ntok
    for h in handles:
        h.remove()
    calib_peak = torch.cuda.max_memory_allocated() / 2 ** 30
    calib_tok_s = calib_tokens / calib_s
    shape = " varied" if args.varied else ""
    print(f"calibration forward ({args.calib_seqs}x{args.calib_len}{shape}, {calib_tokens / args.calib_steps:.0f} "
          f"tokens/step): {calib_tok_s:.0f} tokens/s, "
          f"peak memory {calib_peak:.2f} GiB")

    # ---- gradient scores (ModelOpt AutoQuantize style), FP8 per-tensor fake quant
    scores = {name: torch.zeros((), device="cuda", dtype=torch.float64) for name, _ in linears}
    handles = []
    for name, mod in linears:
        x_scale = (amax[name] / 448.0).clamp_min(1e-12)
        w_scale = (mod.weight.detach().abs().amax().float() / 448.0).clamp_min(1e-12)

        def fwd_hook(m, inputs, output, name=name, x_scale=x_scale, w_scale=w_scale):
            x = inputs[0].detach()
            with torch.no_grad():
                wq = fake_quant_fp8(m.weight, w_scale.to(m.weight.dtype))
                yq = torch.nn.functional.linear(fake_quant_fp8(x, x_scale.to(x.dtype)), wq, m.bias)
                dy = (yq - output.detach()).float()

            def grad_hook(g, name=name, dy=dy):
                s = (g.float() * dy).clamp(-1e10, 1e10).pow(2).sum(dtype=torch.float64)
                scores[name].add_(s)
            if output.requires_grad:
                output.register_hook(grad_hook)
        handles.append(mod.register_forward_hook(fwd_hook))
    torch.cuda.reset_peak_memory_stats()
    embed = model.get_input_embeddings()
    score_s, score_tokens = 0.0, 0
    loss_v = float("nan")
    for step in range(args.warmup + args.score_steps):
        ids, mask, labels, ntok = random_batch(args.score_seqs, args.score_len, vocab, step + 101, args.varied)
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        emb = embed(ids).detach().requires_grad_(True)
        out = model(inputs_embeds=emb, attention_mask=mask, labels=labels)
        out.loss.backward()
        torch.cuda.synchronize()
        if step >= args.warmup:
            score_s += time.perf_counter() - t0
            score_tokens += ntok
        loss_v = out.loss.item()
    for h in handles:
        h.remove()
    score_peak = torch.cuda.max_memory_allocated() / 2 ** 30
    score_tok_s = score_tokens / score_s
    print(f"gradient scoring ({args.score_seqs}x{args.score_len}{shape}, {score_tokens / args.score_steps:.0f} "
          f"tokens/step): {score_tok_s:.0f} tokens/s "
          f"({1e3 * score_s / args.score_steps:.1f} ms/step, loss {loss_v:.3f}), peak memory {score_peak:.2f} GiB")
    result = {
        "device": torch.cuda.get_device_name(), "torch": torch.__version__,
        "matmul_bf16_peak_tflops": peak, "load_s": load_s,
        "calib": {"seqs": args.calib_seqs, "len": args.calib_len, "steps": args.calib_steps,
                  "tokens_per_s": calib_tok_s, "peak_gib": calib_peak},
        "score_gradient": {"seqs": args.score_seqs, "len": args.score_len, "steps": args.score_steps,
                           "tokens_per_s": score_tok_s, "peak_gib": score_peak, "loss": loss_v},
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
