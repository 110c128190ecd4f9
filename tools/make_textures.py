#!/usr/bin/env python
"""Make plugins/fixtures/textures.npz: the three real textures of the textured-MNIST dataset.

No Brodatz plates can be had offline (../shared/docs/data-sources.md, part c); scikit-image ships
three CC0 texture photographs (brick, grass, gravel; 512x512 grey). This script fetches the
scikit-image wheel with pip (no install, no dependencies), reads the three PNGs out of it with
Pillow, checks each file's sha256, shrinks each 4x by 4x4 area averaging to 128x128 (brick courses
become about 6 px high, a scale that suits 28x28 digits) and writes them as uint8 arrays. The
dataset checks the arrays' sha256 (``TEXTURES_SHA256`` in rladder.plugins.grouping_data) when it
loads them, so the shipped fixture and this script must agree.

    python tools/make_textures.py            # rewrites plugins/fixtures/textures.npz
    python tools/make_textures.py --check    # only verifies that a fresh build equals the fixture
"""

from __future__ import annotations

import argparse
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "plugins" / "fixtures" / "textures.npz"
WHEEL = "scikit-image==0.26.0"
PNG_SHA256 = {
    "brick": "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
    "grass": "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
    "gravel": "c48615b451bf1e606fbd72c0aa9f8cc0f068ab7111ef7d93bb9b0f2586440c12",
}
SHRINK = 4


def fetch_pngs() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        WHEEL, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("scikit_image-*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            return {name: zf.read(f"skimage/data/{name}.png") for name in PNG_SHA256}


def build() -> dict[str, np.ndarray]:
    from PIL import Image

    out = {}
    for name, data in fetch_pngs().items():
        digest = hashlib.sha256(data).hexdigest()
        if digest != PNG_SHA256[name]:
            raise SystemExit(f"{name}.png in {WHEEL} has sha256 {digest}, expected {PNG_SHA256[name]}")
        img = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
        n = img.shape[0] // SHRINK
        small = img[:n * SHRINK, :n * SHRINK].reshape(n, SHRINK, n, SHRINK).mean((1, 3))
        out[name] = np.round(small).astype(np.uint8)
    return out


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode() + arrays[name].tobytes())
    return h.hexdigest()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="compare a fresh build with the shipped fixture")
    args = ap.parse_args()
    arrays = build()
    digest = arrays_sha256(arrays)
    if args.check:
        with np.load(OUT) as z:
            shipped = {k: z[k] for k in z.files}
        same = arrays_sha256(shipped) == digest
        print(f"fresh build {digest}; fixture {'matches' if same else 'DIFFERS'}")
        raise SystemExit(0 if same else 1)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes): {', '.join(f'{k} {v.shape}' for k, v in arrays.items())}")
    print(f"arrays sha256 {digest}")


if __name__ == "__main__":
    main()
