#!/usr/bin/env python3
"""tests/conformance/gen_image_golden.py: makes the image-preprocessing goldens for aqs.

Generates small deterministic test images of odd sizes (PNG: RGB, RGBA, gray, gray+alpha,
palette, 1-bit, 16-bit gray and 16-bit RGB; JPEG: baseline 4:2:0, 4:4:4, progressive, grayscale),
then runs transformers' *slow* Qwen2VLImageProcessor on each under two settings ("default" =
Qwen2.5-VL's min/max pixels, "small" = a max_pixels that forces downscaling) and writes:

  OUTDIR/<name>.png|.jpg           the input image
  OUTDIR/<name>.rgb                PIL's Image.open().convert("RGB") bytes (H, W, 3) u8
  OUTDIR/<name>.<cfg>.u8           processor output with do_rescale/do_normalize off, i.e. the
                                   PIL-resized pixels, patchified; temporal copy 0 only:
                                   (patches, 3, 14, 14) u8
  OUTDIR/<name>.<cfg>.f32          full processor output (patches, 1176) little-endian f32
                                   (only for cases flagged keep_f32, to keep the fixture small)
  OUTDIR/golden.json               index: per case file names, grid_thw, resized size, sha256 and
                                   sum of the full f32 output, the configs, library versions.

Run on the GPU machine (transformers 5.x + Pillow); `--images-only` skips transformers (to
check the image generation anywhere PIL and numpy exist).
"""
import argparse
import hashlib
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image

CONFIGS = {
    # Qwen2.5-VL's preprocessor_config.json values.
    "default": {"min_pixels": 3136, "max_pixels": 12845056},
    # Forces downscaling of every image larger than ~20 merged patches.
    "small": {"min_pixels": 3136, "max_pixels": 28 * 28 * 20},
}
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def base_rgb(rng, w, h):
    """Smooth gradients + a sharp checker + noise: exercises ringing and clamping."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 127.5 + 127.5 * np.sin((x + 2 * y) / 5.0)
    img = np.stack([r, g, b], axis=-1)
    checker = (((x // 7) + (y // 5)) % 2 == 0)[..., None]
    img = np.where(checker & (x[..., None] > w / 2), 255 - img, img)
    img += rng.normal(0, 12, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png16_rgb(path, arr16):
    """PIL cannot write 16-bit RGB PNG: a minimal writer (filter 0 rows, one IDAT)."""
    h, w, _ = arr16.shape
    raw = b"".join(b"\x00" + arr16[yy].astype(">u2").tobytes() for yy in range(h))
    data = b"\x89PNG\r\n\x1a\n"
    data += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    data += png_chunk(b"IDAT", zlib.compress(raw, 9))
    data += png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def make_images(outdir):
    """Returns [(name, filename, keep_f32)]."""
    rng = np.random.RandomState(20261124)
    cases = []

    def save(name, pil_img, ext, keep_f32=False, **kw):
        fn = f"{name}.{ext}"
        pil_img.save(os.path.join(outdir, fn), **kw)
        cases.append((name, fn, keep_f32))

    save("rgb_101x67", Image.fromarray(base_rgb(rng, 101, 67)), "png", keep_f32=True)
    save("rgb_283x157", Image.fromarray(base_rgb(rng, 283, 157)), "png")
    rgba = np.dstack([base_rgb(rng, 75, 119), rng.randint(0, 256, (119, 75)).astype(np.uint8)])
    save("rgba_75x119", Image.fromarray(rgba), "png")
    save("gray_61x43", Image.fromarray(base_rgb(rng, 61, 43)[..., 1]), "png", keep_f32=True)
    la = np.dstack([base_rgb(rng, 47, 90)[..., 0], np.full((90, 47), 200, np.uint8)])
    save("la_47x90", Image.fromarray(la), "png")
    pal = Image.fromarray(base_rgb(rng, 133, 71)).quantize(colors=37, method=Image.MEDIANCUT)
    save("palette_133x71", pal, "png")
    bw = Image.fromarray((base_rgb(rng, 53, 29)[..., 0] > 128).astype(np.uint8) * 255).convert("1")
    save("bilevel_53x29", bw, "png")
    g16 = (rng.randint(0, 400, (37, 58))).astype(np.uint16)  # values both below and above 255
    Image.fromarray(g16).save(os.path.join(outdir, "gray16_58x37.png"))
    cases.append(("gray16_58x37", "gray16_58x37.png", False))
    rgb16 = base_rgb(rng, 45, 66).astype(np.uint16) * 257 + rng.randint(0, 257, (66, 45, 3)).astype(np.uint16)
    write_png16_rgb(os.path.join(outdir, "rgb16_45x66.png"), rgb16)
    cases.append(("rgb16_45x66", "rgb16_45x66.png", False))
    save("tiny_13x9", Image.fromarray(base_rgb(rng, 13, 9)), "png", keep_f32=True)
    save("wide_400x9", Image.fromarray(base_rgb(rng, 400, 9)), "png")
    # JPEG: odd sizes so the last MCU is partial.
    save("jpeg420_131x97", Image.fromarray(base_rgb(rng, 131, 97)), "jpg", quality=90)
    save("jpeg444_77x59", Image.fromarray(base_rgb(rng, 77, 59)), "jpg", quality=85, subsampling=0)
    save("jpegprog_150x113", Image.fromarray(base_rgb(rng, 150, 113)), "jpg", quality=80,
         progressive=True, keep_f32=False)
    save("jpeggray_69x83", Image.fromarray(base_rgb(rng, 69, 83)[..., 2]), "jpg", quality=92)
    save("jpeg422_201x45", Image.fromarray(base_rgb(rng, 201, 45)), "jpg", quality=75, subsampling=1)
    return cases


def slow_processor_class():
    """The PIL-backed ("slow") Qwen2-VL image processor. transformers 5 keeps it in
    image_processing_pil_qwen2_vl (its plain Qwen2VLImageProcessor resizes with torchvision);
    transformers 4 named the PIL one Qwen2VLImageProcessor."""
    try:
        import transformers.models.qwen2_vl.image_processing_pil_qwen2_vl as mod
    except ImportError:
        from transformers import Qwen2VLImageProcessor
        return Qwen2VLImageProcessor
    names = [n for n in dir(mod) if n.startswith("Qwen2VLImageProcessor") and not n.endswith("Kwargs")]
    assert len(names) == 1, names
    return getattr(mod, names[0])


def make_processor(cfg):
    Qwen2VLImageProcessor = slow_processor_class()
    kw = dict(do_resize=True, do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
              image_mean=MEAN, image_std=STD, patch_size=14, temporal_patch_size=2, merge_size=2,
              size={"shortest_edge": cfg["min_pixels"], "longest_edge": cfg["max_pixels"]})
    try:
        proc = Qwen2VLImageProcessor(min_pixels=cfg["min_pixels"], max_pixels=cfg["max_pixels"], **kw)
    except TypeError:
        proc = Qwen2VLImageProcessor(**kw)
    assert "Fast" not in type(proc).__name__, type(proc).__name__
    return proc


def run_processor(proc, img, **overrides):
    out = proc(images=[img], return_tensors="np", **overrides)
    return np.asarray(out["pixel_values"]), [int(v) for v in np.asarray(out["image_grid_thw"])[0]]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--images-only", action="store_true")
    args = ap.parse_args()
    os.makedirs(args.outdir, exist_ok=True)
    cases = make_images(args.outdir)
    index = {"configs": CONFIGS, "image_mean": MEAN, "image_std": STD, "cases": []}
    import PIL
    index["versions"] = {"PIL": PIL.__version__, "numpy": np.__version__}
    procs = {}
    if not args.images_only:
        import transformers
        index["versions"]["transformers"] = transformers.__version__
        procs = {k: make_processor(v) for k, v in CONFIGS.items()}
        index["processor_class"] = type(procs["default"]).__module__ + "." + type(procs["default"]).__name__
    for name, fn, keep_f32 in cases:
        pil = Image.open(os.path.join(args.outdir, fn))
        entry = {"name": name, "file": fn, "pil_mode": pil.mode, "width": pil.width, "height": pil.height}
        rgb = np.asarray(pil.convert("RGB"))
        rgb.tofile(os.path.join(args.outdir, f"{name}.rgb"))
        entry["rgb_file"] = f"{name}.rgb"
        entry["results"] = {}
        for cfg_name, proc in procs.items():
            res = {}
            try:
                raw, grid = run_processor(proc, Image.open(os.path.join(args.outdir, fn)),
                                          do_rescale=False, do_normalize=False)
                full, grid2 = run_processor(proc, Image.open(os.path.join(args.outdir, fn)))
            except Exception as exc:  # recorded: our implementation must fail the same way
                res["error"] = f"{type(exc).__name__}: {exc}"
                entry["results"][cfg_name] = res
                continue
            assert grid == grid2
            n = raw.shape[0]
            raw5 = raw.reshape(n, 3, 2, 14, 14)
            assert np.array_equal(raw5[:, :, 0], raw5[:, :, 1])
            u8 = raw5[:, :, 0]
            assert np.array_equal(u8, np.rint(u8)) and u8.min() >= 0 and u8.max() <= 255
            u8.astype(np.uint8).tofile(os.path.join(args.outdir, f"{name}.{cfg_name}.u8"))
            # Cross-check: the same pixels from a direct PIL bicubic resize, patchified.
            gh, gw = grid[1], grid[2]
            direct = np.asarray(Image.fromarray(rgb).resize((gw * 14, gh * 14), Image.BICUBIC))
            direct = direct.transpose(2, 0, 1).reshape(3, gh // 2, 2, 14, gw // 2, 2, 14)
            direct = direct.transpose(1, 4, 2, 5, 0, 3, 6).reshape(-1, 3, 14, 14)
            res["pil_direct_max_abs_diff"] = int(np.abs(direct.astype(int) - u8.astype(int)).max())
            full32 = full.astype("<f4")
            res.update(grid_thw=grid, n_patches=n, u8_file=f"{name}.{cfg_name}.u8",
                       f32_sha256=hashlib.sha256(full32.tobytes()).hexdigest(),
                       f32_sum=float(full32.astype(np.float64).sum()),
                       resized_height=grid[1] * 14, resized_width=grid[2] * 14)
            if keep_f32:
                full32.tofile(os.path.join(args.outdir, f"{name}.{cfg_name}.f32"))
                res["f32_file"] = f"{name}.{cfg_name}.f32"
            entry["results"][cfg_name] = res
        index["cases"].append(entry)
    with open(os.path.join(args.outdir, "golden.json"), "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    total = sum(os.path.getsize(os.path.join(args.outdir, p)) for p in os.listdir(args.outdir))
    print(f"wrote {len(index['cases'])} cases, {total} bytes to {args.outdir}", file=sys.stderr)


if __name__ == "__main__":
    main()
