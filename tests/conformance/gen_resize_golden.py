#!/usr/bin/env python3
"""tests/conformance/gen_resize_golden.py: PIL bicubic resize goldens for aqs's resampler.

One deterministic 53x37 RGB source (noise + edges, so clamping and ringing occur) resized with
Pillow's Image.resize(size, Image.BICUBIC) to many target sizes: strong and mild downscales (the
filter support widens with the scale), upscales, mixed, 1-pixel sides, identity.
Output (little-endian): "AQSRSZ1\\0", u32 src_w, src_h, n_cases, src RGB bytes, then per case
u32 w, h and w*h*3 RGB bytes. Runs anywhere Pillow + numpy exist (the resample code for 8-bit
images is the same in Pillow 9 through 12).
"""
import struct
import sys

import numpy as np
from PIL import Image

SRC_W, SRC_H = 53, 37
TARGETS = [(53, 37), (5, 4), (7, 37), (53, 3), (1, 1), (1, 37), (53, 1), (10, 7), (26, 18),
           (27, 19), (50, 35), (54, 38), (56, 42), (106, 74), (159, 111), (17, 80), (80, 17),
           (13, 9), (200, 3), (3, 120), (52, 36), (28, 28), (84, 56), (11, 29)]


def main(out_path):
    rng = np.random.RandomState(777)
    y, x = np.mgrid[0:SRC_H, 0:SRC_W]
    base = np.stack([(x * 5) % 256, (y * 7) % 256, ((x // 4 + y // 3) % 2) * 255], axis=-1)
    src = np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
    img = Image.fromarray(src, "RGB")
    out = bytearray(b"AQSRSZ1\0")
    out += struct.pack("<III", SRC_W, SRC_H, len(TARGETS))
    out += src.tobytes()
    for w, h in TARGETS:
        res = np.asarray(img.resize((w, h), Image.BICUBIC))
        out += struct.pack("<II", w, h) + res.tobytes()
    with open(out_path, "wb") as f:
        f.write(out)
    print(f"wrote {len(TARGETS)} cases, {len(out)} bytes to {out_path}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1])
