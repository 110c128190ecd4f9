"""Datasets for perceptual grouping (paper section 4, spec sections 5.2-5.3), generated deterministically.

``textured_mnist`` (paper 4.2, Table 4): a thickened MNIST digit (one 3x3 grey dilation by
default) cut out of one texture and pasted on another, 28x28. The texture bank has 20 textures:
no Brodatz plate can be had offline, so it holds the three CC0 photographs scikit-image ships
(brick, grass, gravel; shipped as ``fixtures/textures.npz``, made by ``tools/make_textures.py``)
and 17 procedural ones (gratings, checkers, dot lattices, filtered noise, ...). Per image, the
digit and background textures are two different textures of the bank (drawn without
replacement), each rotated by U(0, 360) degrees, scaled by a log-uniform factor in
``scale_range`` and cropped at a random place (bilinear sampling). With m the digit's soft
intensity, ``x = m * t_digit + (1 - m) * t_background`` and the ground-truth masks are
``[1 - m, m]`` (Tagger's ``compose``). Splits follow MNIST: train = training digits 0..49999,
val = 50000..59999, test = the test set.
Stored (uint8): ``x`` (1, 28, 28), ``mask`` (1, 28, 28) = m, ``tex`` (2,) = [background, digit]
texture ids, ``y``. Batch: ``x`` (B, 1, 28, 28), ``masks`` (B, 2, 28, 28) [background, digit]
float32 in [0, 1], ``y`` (B,). Static: a model runs ``iterations`` steps on each image.

``moving_mnist`` (paper 4.3, Srivastava et al. 2015, re-implemented with segmentations): two
MNIST digits (``digit_size`` 28, or 14 by 2x2 mean pooling) move on a ``size`` x ``size`` canvas
with a random direction and a speed uniform in ``speed`` px/frame, bouncing off the borders;
frames combine the digits by pixel-wise max. Ground truth: digit g owns a pixel where its
intensity exceeds ``threshold`` and the other digit's does not; background and overlaps belong to
no group (all-zero masks, so AMI leaves them out). Stored compactly: ``digits`` (2, d, d) uint8 and
``pos`` (frames + 1, 2, 2) int16 top-left corners; frames are drawn in ``to_batch``. Batch: ``x``
and ``x_next`` (B, T, 1, S, S) frames t and t+1, ``masks`` and ``masks_next`` (B, T, 2, S, S).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs
import numpy as np
import torch

from rladder.core import DataSpec, Dataset
from rladder.registry import Component, DataError, hookimpl, option, positive

from .mnist import MNISTSource, load_mnist, split_arrays

TEXTURES_FILE = Path(__file__).parent / "fixtures" / "textures.npz"
TEXTURES_SHA256 = "cdd69df30eeb7b3b34e733e9510dd34582ce644e10d0a3b8aaf126f6cdc5b06c"
NATURAL = ("brick", "grass", "gravel")
TEX = 128                               # side of every texture in the bank
SPLITS = ("train", "val", "test")


# --------------------------------------------------------------------------- the texture bank
def _blur(a: np.ndarray, r: int, axis: int) -> np.ndarray:
    """Box blur of radius r along one axis (reflected borders)."""
    pad = [(0, 0)] * a.ndim
    pad[axis] = (r, r)
    c = np.cumsum(np.pad(a, pad, mode="reflect"), axis=axis)
    c = np.concatenate([np.zeros_like(c.take([0], axis)), c], axis)
    n = a.shape[axis]
    return (c.take(range(2 * r + 1, 2 * r + 1 + n), axis) - c.take(range(n), axis)) / (2 * r + 1)


def _smooth(a: np.ndarray, r: int) -> np.ndarray:
    for _ in range(2):
        a = _blur(_blur(a, r, 0), r, 1)
    return a


def procedural_textures() -> list[np.ndarray]:
    """17 textures made from formulas and one seeded uniform noise field, (128, 128) each."""
    y, x = np.mgrid[0:TEX, 0:TEX].astype(np.float64)
    noise = np.random.default_rng(20170703).random((4, TEX, TEX))
    cos = lambda period, a=0.0: np.cos(2 * np.pi * (x * np.cos(a) + y * np.sin(a)) / period)  # noqa: E731

    def lattice(period, radius):
        dy, dx = (y % period) - period / 2, (x % period) - period / 2
        return np.exp(-(dy ** 2 + dx ** 2) / (2 * radius ** 2))

    tri = lambda v, p: np.abs((v / p) % 2 - 1)  # noqa: E731 - triangle wave in [0, 1]
    brick_rows = (y // 6) % 2
    bricks = ((y % 6 < 1) | (((x + 6 * brick_rows) % 12) < 1)).astype(float)
    return [
        cos(3.5), cos(5.0, np.pi / 4), cos(8.0, np.pi / 6),
        ((x // 3 + y // 3) % 2), ((x // 5 + y // 5) % 2),
        lattice(5, 1.2), lattice(9, 2.5),
        np.maximum(cos(6.0), cos(6.0, np.pi / 2)) ** 8,
        0.5 * cos(4.0) + 0.5 * cos(9.0, np.pi / 2),
        cos(6.0) + cos(6.0, np.pi / 3) + cos(6.0, 2 * np.pi / 3),
        _smooth(noise[0], 1), _smooth(noise[1], 3),
        _blur(_blur(noise[2], 6, 1), 1, 0),
        _smooth((noise[3] > 0.93).astype(float), 1),
        tri(x + 3 * tri(y, 4), 5),
        1 - bricks,
        np.cos(2 * np.pi * np.hypot(y + 40, x - 30) / 5),
    ]


def _normalise(t: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(t, [1, 99])
    return np.clip((t - lo) / max(hi - lo, 1e-9), 0, 1).astype(np.float32)


def load_natural_textures(path: Path = TEXTURES_FILE) -> dict[str, np.ndarray]:
    """The three CC0 textures (128x128 uint8), checked against ``TEXTURES_SHA256``."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in NATURAL}
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"the texture fixture {path} cannot be read ({exc}); rebuild it with "
                        f"python tools/make_textures.py") from None
    h = hashlib.sha256()
    for name in sorted(arrays):
        h.update(name.encode() + arrays[name].tobytes())
    if h.hexdigest() != TEXTURES_SHA256:
        raise DataError(f"the texture fixture {path} is damaged (sha256 of its arrays differs); rebuild it with "
                        f"python tools/make_textures.py")
    return arrays


def texture_bank() -> np.ndarray:
    """(20, 128, 128) float32 in [0, 1]: brick, grass, gravel, then the 17 procedural textures."""
    natural = load_natural_textures()
    return np.stack([_normalise(natural[n].astype(np.float64)) for n in NATURAL]
                    + [_normalise(t) for t in procedural_textures()])


def sample_textures(bank: np.ndarray, ids: np.ndarray, angle: np.ndarray, scale: np.ndarray,
                    centre: np.ndarray, size: int) -> np.ndarray:
    """(n, size, size) crops of ``bank[ids]``, rotated by ``angle`` (radians) and scaled by ``scale``
    around ``centre`` (n, 2) (row, col in texture pixels), by bilinear sampling."""
    g = (np.arange(size) - (size - 1) / 2).astype(np.float32)
    c = (np.cos(angle) * scale).astype(np.float32)[:, None, None]
    s = (np.sin(angle) * scale).astype(np.float32)[:, None, None]
    centre = centre.astype(np.float32)
    u = centre[:, 0, None, None] + c * g[:, None] - s * g[None, :]
    v = centre[:, 1, None, None] + s * g[:, None] + c * g[None, :]
    u0, v0 = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
    fu, fv = u - u0, v - v0
    side = bank.shape[-1]
    flat = bank.reshape(-1)
    idx = ids.astype(np.int64)[:, None, None] * side * side + u0 * side + v0
    return ((1 - fu) * (1 - fv) * flat[idx] + (1 - fu) * fv * flat[idx + 1]
            + fu * (1 - fv) * flat[idx + side] + fu * fv * flat[idx + side + 1])


def thicken(digits: np.ndarray, times: int = 1) -> np.ndarray:
    """Grey dilation with a 3x3 square, ``times`` times: (n, H, W) uint8 -> (n, H, W) uint8."""
    out = digits
    for _ in range(times):
        p = np.pad(out, ((0, 0), (1, 1), (1, 1)))
        h, w = out.shape[1:]
        out = np.max([p[:, i:i + h, j:j + w] for i in range(3) for j in range(3)], axis=0)
    return out


def generate_textured(digits: np.ndarray, rng: np.random.Generator, bank: np.ndarray, thickening: int = 1,
                      scale_range: tuple[float, float] = (0.5, 2.0), chunk: int = 4096) -> dict[str, np.ndarray]:
    """Textured images for ``digits`` (n, 28, 28) uint8: x, mask (n, 1, 28, 28) uint8, tex (n, 2) uint8."""
    n, size = len(digits), digits.shape[-1]
    k = len(bank)
    background = rng.integers(0, k, n)
    digit_tex = (background + rng.integers(1, k, n)) % k            # a different texture: without replacement
    angle = rng.uniform(0, 2 * np.pi, (2, n))
    scale = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]), (2, n)))
    reach = (size - 1) / 2 * scale * np.sqrt(2) + 1                  # the rotated crop stays inside the texture
    centre = reach[..., None] + rng.random((2, n, 2)) * (bank.shape[-1] - 2 - 2 * reach[..., None])
    mask = thicken(digits, thickening)
    x = np.empty((n, 1, size, size), np.uint8)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        m = mask[s:e].astype(np.float32) / 255
        bg = sample_textures(bank, background[s:e], angle[0, s:e], scale[0, s:e], centre[0, s:e], size)
        fg = sample_textures(bank, digit_tex[s:e], angle[1, s:e], scale[1, s:e], centre[1, s:e], size)
        x[s:e, 0] = np.round(255 * np.clip(m * fg + (1 - m) * bg, 0, 1))
    return {"x": x, "mask": mask[:, None], "tex": np.stack([background, digit_tex], 1).astype(np.uint8)}


def _pick(rng: np.random.Generator, available: int, n: int) -> np.ndarray:
    """n indices of a seeded permutation of ``available`` items, cycled when n exceeds it."""
    return np.concatenate([rng.permutation(available) for _ in range(-(-n // available))])[:n]


@attrs.frozen
class TexturedMNISTOptions:
    train: int = option(50000, help="Training images (MNIST training digits 0..49999).", validator=positive)
    val: int = option(10000, help="Validation images (training digits 50000..59999).", validator=positive)
    test: int = option(10000, help="Test images (the MNIST test set).", validator=positive)
    iterations: int = option(3, help="Iterations a model runs on each static image (the DataSpec's seq_len).",
                             validator=positive)
    thickening: int = option(1, help="3x3 grey dilations applied to each digit.")
    scale_range: tuple[float, float] = option((0.5, 2.0), help="Range of the log-uniform texture scale factor.",
                                              validator=positive)
    seed: int = option(0, help="Seed of digit choice, textures, rotations, scales and crops.")
    mnist: MNISTSource = option(factory=MNISTSource, help="Where MNIST comes from (see dataset 'mnist').")


class TexturedMNIST(Dataset):
    def __init__(self, options: TexturedMNISTOptions):
        self.options = o = options
        self.spec = DataSpec("video", (1, 28, 28), o.iterations,
                             {"x": "(B,1,28,28) float32 in [0,1] textured digit",
                              "masks": "(B,2,28,28) float32 ground-truth soft masks [background, digit]",
                              "y": "(B,) int64 digit"}, num_classes=10, static=True)
        self._generated: dict[str, dict[str, np.ndarray]] = {}
        self._bank: np.ndarray | None = None

    @property
    def bank(self) -> np.ndarray:
        if self._bank is None:
            self._bank = texture_bank()
        return self._bank

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        self.check_split(split)
        if split not in self._generated:
            o = self.options
            images, labels = split_arrays(load_mnist(o.mnist), split)
            n = {"train": o.train, "val": o.val, "test": o.test}[split]
            rng = np.random.default_rng([o.seed, SPLITS.index(split)])
            pick = _pick(rng, len(images), n)
            data = generate_textured(images[pick], rng, self.bank, o.thickening, o.scale_range)
            self._generated[split] = {**data, "y": labels[pick].astype(np.int64)}
        return self._generated[split]

    def to_batch(self, stored):
        m = stored["mask"].float().div_(255)
        return {"x": stored["x"].float().div_(255), "masks": torch.cat([1 - m, m], 1), "y": stored["y"]}

    def dummy_batch(self, batch: int = 2, generator: torch.Generator | None = None):
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
        digits = np.zeros((batch, 28, 28), np.uint8)
        digits[:, 8:20, 10:18] = 255                                    # a block "digit"
        data = generate_textured(digits, rng, self.bank, self.options.thickening, self.options.scale_range)
        stored = {k: torch.from_numpy(v) for k, v in data.items()}
        return self.to_batch({**stored, "y": torch.from_numpy(rng.integers(0, 10, batch))})


# --------------------------------------------------------------------------- moving MNIST
def trajectories(rng: np.random.Generator, n: int, objects: int, steps: int, limit: int,
                 speed: tuple[float, float]) -> np.ndarray:
    """(n, steps, objects, 2) int16 top-left corners, bouncing off [0, limit] (reflection)."""
    p = rng.uniform(0, limit, (n, objects, 2))
    phi = rng.uniform(0, 2 * np.pi, (n, objects))
    v = rng.uniform(*speed, (n, objects))[..., None] * np.stack([np.sin(phi), np.cos(phi)], -1)
    out = np.empty((n, steps, objects, 2), np.int16)
    for t in range(steps):
        out[:, t] = np.round(p)
        p = p + v
        low, high = p < 0, p > limit
        p = np.where(low, -p, np.where(high, 2 * limit - p, p))
        v = np.where(low | high, -v, v)
    return out


def render_layers(digits: torch.Tensor, pos: torch.Tensor, size: int) -> torch.Tensor:
    """Each digit on its own canvas: digits (B, G, d, d), pos (B, T, G, 2) -> (B, T, G, size, size), same dtype."""
    b, t, g = pos.shape[:3]
    d = digits.shape[-1]
    i = torch.arange(d, device=pos.device)
    rows = pos[..., 0, None].long() + i                                      # (B, T, G, d)
    cols = pos[..., 1, None].long() + i
    base = torch.arange(b * t * g, device=pos.device).view(b, t, g, 1, 1) * size * size
    flat = base + rows[..., :, None] * size + cols[..., None, :]             # (B, T, G, d, d)
    out = torch.zeros(b * t * g * size * size, dtype=digits.dtype, device=digits.device)
    out[flat.reshape(-1)] = digits[:, None].expand(b, t, g, d, d).reshape(-1)
    return out.view(b, t, g, size, size)


def segment(layers: torch.Tensor, threshold: float) -> torch.Tensor:
    """Ground-truth masks (B, T, 2, S, S) float: where one digit alone exceeds ``threshold`` (layers: uint8
    canvases of the two digits, (B, T, 2, S, S))."""
    present = layers > int(threshold * 255)
    return (present & ~present.flip(2)).float()


def pool_digits(images: np.ndarray, size: int) -> np.ndarray:
    """(n, 28, 28) uint8 -> (n, size, size) by mean pooling (size 28 or 14)."""
    if size == 28:
        return images
    f = 28 // size
    return ((images.reshape(-1, size, f, size, f).astype(np.uint16).sum((2, 4)) + f * f // 2) // (f * f)).astype(np.uint8)


@attrs.frozen
class MovingMNISTOptions:
    train: int = option(10000, help="Training sequences (digits from MNIST training digits 0..49999).",
                        validator=positive)
    val: int = option(1000, help="Validation sequences (training digits 50000..59999).", validator=positive)
    test: int = option(1000, help="Test sequences (the MNIST test set).", validator=positive)
    frames: int = option(20, help="Input frames per sequence (one more is made as the last target).",
                         validator=positive)
    size: int = option(64, help="Canvas side in pixels.", validator=positive)
    digit_size: int = option(28, help="Digit side: 28, or 14 (2x2 mean pooling).", validator=positive)
    speed: tuple[float, float] = option((2.0, 5.0), help="Range of the uniform speed in px/frame.")
    threshold: float = option(0.5, help="A digit owns a pixel where its intensity exceeds this (and the other's "
                                        "does not).")
    seed: int = option(0, help="Seed of digit choice, start positions and velocities.")
    mnist: MNISTSource = option(factory=MNISTSource, help="Where MNIST comes from (see dataset 'mnist').")

    def __attrs_post_init__(self):
        if self.digit_size not in (14, 28):
            raise ValueError(f"'digit_size' must be 28 or 14, got {self.digit_size}")
        if self.size <= self.digit_size:
            raise ValueError(f"'size' ({self.size}) must exceed the digit size ({self.digit_size})")


class MovingMNIST(Dataset):
    def __init__(self, options: MovingMNISTOptions):
        self.options = o = options
        frames = f"(B,{o.frames},1,{o.size},{o.size}) float32 in [0,1]"
        masks = f"(B,{o.frames},2,{o.size},{o.size}) float32 ground-truth masks of the two digits"
        self.spec = DataSpec("video", (1, o.size, o.size), o.frames,
                             {"x": f"{frames} frames t", "x_next": f"{frames} frames t+1",
                              "masks": f"{masks} in frame t", "masks_next": f"{masks} in frame t+1"})
        self._generated: dict[str, dict[str, np.ndarray]] = {}

    def generate(self, digits: np.ndarray, rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
        """``n`` sequences, two digits each drawn (with replacement) from ``digits`` (N, 28, 28) uint8."""
        o = self.options
        chosen = pool_digits(digits[rng.integers(0, len(digits), 2 * n)], o.digit_size)
        pos = trajectories(rng, n, 2, o.frames + 1, o.size - o.digit_size, o.speed)
        return {"digits": chosen.reshape(n, 2, o.digit_size, o.digit_size), "pos": pos}

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        self.check_split(split)
        if split not in self._generated:
            o = self.options
            images, _ = split_arrays(load_mnist(o.mnist), split)
            n = {"train": o.train, "val": o.val, "test": o.test}[split]
            self._generated[split] = self.generate(images, np.random.default_rng([o.seed, SPLITS.index(split)]), n)
        return self._generated[split]

    def to_batch(self, stored):
        o = self.options
        layers = render_layers(stored["digits"], stored["pos"], o.size)        # (B, T+1, 2, S, S) uint8
        frames = layers.amax(2, keepdim=True).float().div_(255)
        masks = segment(layers, o.threshold)
        return {"x": frames[:, :-1], "x_next": frames[:, 1:], "masks": masks[:, :-1], "masks_next": masks[:, 1:]}

    def dummy_batch(self, batch: int = 2, generator: torch.Generator | None = None):
        rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
        digits = np.zeros((1, 28, 28), np.uint8)
        digits[:, 6:22, 10:18] = 255                                    # a block "digit"
        return self.to_batch({k: torch.from_numpy(v) for k, v in self.generate(digits, rng, batch).items()})


@hookimpl
def rladder_components():
    return [
        Component("dataset", "textured_mnist", TexturedMNIST, TexturedMNISTOptions,
                  "Thickened MNIST digits cut from one of 20 textures onto another, 28x28, with masks (paper 4.2).",
                  example={"data": {"train": 16, "val": 8, "test": 8}}),
        Component("dataset", "moving_mnist", MovingMNIST, MovingMNISTOptions,
                  "Two bouncing MNIST digits, 20 frames of 64x64, with per-frame segmentations (paper 4.3).",
                  example={"data": {"train": 8, "val": 4, "test": 4, "frames": 3, "size": 32, "digit_size": 14}}),
    ]
