#!/usr/bin/env python3
# tests/conformance/gen_fp8_vectors.py: generates the FP8 E4M3 conformance vectors with PyTorch
# (run on the GPU machine; the C test tests/unit/export/test_fp8_vectors.c reads the output).
# Every case records what torch really returns for `(x / scale).clamp(-448, 448).to(float8_e4m3fn)`.
#
# File layout (little-endian), then compressed with `zstd -19` into fp8_vectors.bin.zst:
#   "AQSFP8V1"  u32 n_sections
#   section: u32 variant, u32 input_kind, u32 scale_f32_bits, u32 n, u32 out_width,
#            [input_kind 1: n x u32 f32 input bits], n x out_width output bytes
#   input_kind 0 = all 65,536 BF16 bit patterns in order; 1 = explicit f32 list; 2 = all 256 FP8 codes
# Variants:
#   0 bf16 x on CUDA, scale = 0-dim float32 CUDA tensor (what ModelOpt's FP8 export does)  [canonical]
#   1 bf16 x on CPU,  scale = 0-dim float32 CPU tensor
#   2 bf16 x on CUDA, scale = Python float (torch multiplies by the reciprocal)
#   3 f32  x on CUDA, scale = 0-dim float32 CUDA tensor
#   4 f32  x on CPU,  scale = 0-dim float32 CPU tensor
#   5 bf16 x on CUDA, scale tensor, NO clamp (ModelOpt's to_quantized_weight verbatim)
#   6 decode: all 256 FP8 codes -> float32 (out_width 4), scale_f32_bits = 0
import struct
import sys

import torch

AMAXES = [448.0, 1.0, 0.0123, 3.5, 1000.0, 1e-4, 2.0 ** -20, 1e30]
FP8 = torch.float8_e4m3fn


def scale_of(amax):
    return torch.tensor(amax, dtype=torch.float32) / 448.0


def all_bf16():
    a = torch.arange(0, 65536, dtype=torch.int32)
    return torch.where(a >= 32768, a - 65536, a).to(torch.int16).view(torch.bfloat16)


def f32_inputs(scale, gen):
    # log-uniform magnitudes around the scale, both signs, plus exact E4M3 midpoints and their
    # neighbours (times the scale), where double rounding and ties are decided.
    n = 16384
    mag = torch.pow(2.0, torch.rand(n, generator=gen, dtype=torch.float64) * 24.0 - 14.0)
    sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0).double()
    vals = (mag * sign * float(scale)).float()
    codes = torch.arange(0, 127, dtype=torch.int32).to(torch.uint8).view(FP8).float()
    nxt = torch.arange(1, 128, dtype=torch.int32).to(torch.uint8).view(FP8).float()
    mids = ((codes.double() + nxt.double()) / 2.0)
    mids = torch.cat([mids, torch.tensor([448.0, 464.0, 479.9, 480.0, 500.0, 2.0 ** -10, 2.0 ** -11])])
    extra = []
    for m in mids.tolist():
        v = torch.tensor(m * float(scale), dtype=torch.float32)
        b = v.view(torch.int32).item()
        for d in (-1, 0, 1):
            extra.append(struct.unpack("<f", struct.pack("<i", b + d))[0])
    ex = torch.tensor(extra, dtype=torch.float32)
    specials = torch.tensor([0.0, -0.0, float("inf"), float("-inf"), float("nan"), 3.4e38, -3.4e38,
                             1e-45, -1e-45], dtype=torch.float32)
    return torch.cat([vals, ex, -ex, specials])


def bits_f32(t):
    return t.contiguous().view(torch.int32).cpu()


def raw(t):
    return bytes(t.contiguous().cpu().view(torch.uint8).tolist())


def section(variant, kind, scale, inputs_bits, out_bytes, width):
    head = struct.pack("<IIIII", variant, kind, bits_f32(scale.reshape(1))[0].item() & 0xFFFFFFFF,
                       len(out_bytes) // width, width)
    body = raw(inputs_bits) if inputs_bits is not None else b""
    return head + body + out_bytes


def q(x, s):
    return (x / s).clamp(-448, 448).to(FP8)


def codes(t):
    return t.view(torch.uint8).cpu().contiguous()


def main(out_path, report_path):
    dev = "cuda"
    gen = torch.Generator().manual_seed(1234)
    sections = []
    report = []
    xb = all_bf16()
    for amax in AMAXES:
        s = scale_of(amax)
        outs = {
            0: codes(q(xb.to(dev), s.to(dev))),
            1: codes(q(xb, s)),
            2: codes(q(xb.to(dev), float(s))),
            5: codes((xb.to(dev) / s.to(dev)).to(FP8)),
        }
        for v, o in outs.items():
            sections.append(section(v, 0, s, None, raw(o), 1))
        # hypotheses for the canonical variant, evaluated in exact f32 on the CPU
        xf = xb.float()
        hyp = {
            "f32 div, round to bf16": q((xf / s).to(torch.bfloat16), 1.0),
            "div by bf16(scale), round to bf16": q((xf / s.to(torch.bfloat16).float()).to(torch.bfloat16), 1.0),
            "mul by f32 reciprocal, round to bf16": q((xf * (1.0 / s)).to(torch.bfloat16), 1.0),
            "f32 div, no bf16 rounding": q(xf / s, 1.0),
        }
        for v in (0, 1, 2, 5):
            matches = [name for name, h in hyp.items() if torch.equal(codes(h), outs[v])]
            ndiff = {name: int((codes(h) != outs[v]).sum()) for name, h in hyp.items()}
            report.append(f"amax={amax!r} scale={s.item()!r} variant {v}: matches {matches} diffs {ndiff}")
        xin = f32_inputs(s, gen)
        o3 = codes(q(xin.to(dev), s.to(dev)))
        o4 = codes(q(xin, s))
        ib = bits_f32(xin)
        sections.append(section(3, 1, s, ib, raw(o3), 1))
        sections.append(section(4, 1, s, ib, raw(o4), 1))
        report.append(f"amax={amax!r} f32 variants 3 vs 4 differ at {int((o3 != o4).sum())} of {len(xin)}")
    dec = torch.arange(0, 256, dtype=torch.int32).to(torch.uint8).view(FP8).float()
    sections.append(section(6, 2, torch.tensor(0.0), None, raw(bits_f32(dec)), 4))
    with open(out_path, "wb") as f:
        f.write(b"AQSFP8V1" + struct.pack("<I", len(sections)))
        for sct in sections:
            f.write(sct)
    report.append(f"torch {torch.__version__} cuda {torch.version.cuda} device {torch.cuda.get_device_name()}")
    with open(report_path, "w") as f:
        f.write("\n".join(report) + "\n")
    print("\n".join(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
