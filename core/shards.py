"""WebDataset shards of any registered dataset: `rladder data build` and `rladder data verify`.

A shard folder holds ``<split>-NNNNNN.tar`` files and ``manifest.json``::

    {"format": 1, "dataset": "occluded_mnist", "options": {...resolved options...},
     "rladder": "0.1.0", "keys": ["clean", "recon", "y"],
     "splits": {"train": {"samples": 10000, "shards": [{"name": "train-000000.tar", "samples": 1000,
                                                         "bytes": ..., "sha256": "..."}, ...]}, ...}}

Each sample is the dataset's stored form (``Dataset.arrays``), one ``<key>.npy`` member per array
plus ``__key__`` = ``<split>-<index>``, so a batch read from shards equals the in-memory batch
(``Dataset.to_batch`` applies to both). Tar members carry mtime 0 and fixed owners, so a build
is reproducible byte for byte. Shards are written to a temporary folder and moved into place,
the manifest last: an interrupted build leaves no manifest and no half-written shard.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rladder.registry import ConfigError, DataError, Registry, get_registry

FORMAT = 1


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr), allow_pickle=False)   # keeps 0-d scalars 0-d
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    info.uid = info.gid = 0
    info.uname = info.gname = "rladder"
    tar.addfile(info, io.BytesIO(data))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def build(table: dict[str, Any], out: Path, splits: Sequence[str] | None = None, shard_size: int = 1000,
          registry: Registry | None = None, log=print) -> Path:
    """Write shards of the dataset described by ``table`` (``{name = ..., <options>}``) into ``out``."""
    from .versions import rladder_version

    reg = registry or get_registry()
    if shard_size < 1:
        raise ConfigError(f"--shard-size must be >= 1, got {shard_size}")
    if (out / "manifest.json").exists():
        raise ConfigError(f"{out} already holds shards (manifest.json); choose another --out or delete it first")
    resolved = reg.resolved_table("dataset", table, path="data")
    dataset = reg.build("dataset", resolved, path="data")
    splits = list(splits or dataset.spec.splits)
    for split in splits:
        dataset.check_split(split)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out, prefix=".building-"))
    manifest: dict[str, Any] = {"format": FORMAT, "dataset": resolved["name"], "options": resolved,
                                "rladder": rladder_version(), "created": time.strftime("%Y-%m-%d %H:%M:%S"),
                                "spec": {"modality": dataset.spec.modality, "step_shape": list(dataset.spec.step_shape),
                                         "seq_len": dataset.spec.seq_len, "num_classes": dataset.spec.num_classes,
                                         "static": dataset.spec.static},
                                "splits": {}}
    try:
        for split in splits:
            arrays = dataset.arrays(split)
            keys = sorted(arrays)
            manifest["keys"] = keys
            n = len(arrays[keys[0]])
            shards = []
            for s, start in enumerate(range(0, n, shard_size)):
                name = f"{split}-{s:06d}.tar"
                path = tmp / name
                with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
                    for i in range(start, min(start + shard_size, n)):
                        key = f"{split}-{i:08d}"
                        for k in keys:
                            _add(tar, f"{key}.{k}.npy", _npy(arrays[k][i]))
                shards.append({"name": name, "samples": min(start + shard_size, n) - start,
                               "bytes": path.stat().st_size, "sha256": sha256(path)})
            manifest["splits"][split] = {"samples": n, "shards": shards}
            log(f"{split}: {n} samples in {len(shards)} shards")
        for split in manifest["splits"].values():
            for shard in split["shards"]:
                os.replace(tmp / shard["name"], out / shard["name"])
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        os.replace(tmp / "manifest.json", out / "manifest.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out / "manifest.json"


def location(base: str, name: str) -> str:
    """Where file ``name`` of a shard folder lives: ``base/name``, or ``base`` with ``{}`` filled in
    (for webdataset URLs such as ``pipe:aws s3 cp s3://bucket/omm/{} -``)."""
    if "{}" in base:
        return base.replace("{}", name)
    return f"{base.rstrip('/')}/{name}"


def read_manifest(base: str) -> dict[str, Any]:
    """The manifest of a shard folder: a local path or any URL webdataset can open."""
    where = location(base, "manifest.json")
    try:
        if "://" in base or base.startswith("pipe:"):
            import webdataset as wds
            with wds.gopen(where, "rb") as fh:
                text = fh.read().decode()
        else:
            path = Path(where)
            if not path.is_file():
                raise ConfigError(f"{base} has no manifest.json; build shards with `rladder data build`")
            text = path.read_text()
        manifest = json.loads(text)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise DataError(f"cannot read {where}: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"{where} is not an rladder shard manifest of format {FORMAT}")
    return manifest


def iter_tar(path_or_stream, name: str) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Samples of one shard as (key, {field: array}); a truncated or corrupt shard raises DataError."""
    current, fields = None, {}
    try:
        with tarfile.open(fileobj=path_or_stream, mode="r|*") if not isinstance(path_or_stream, str | Path) \
                else tarfile.open(path_or_stream, mode="r") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, _, rest = member.name.partition(".")
                field = rest.removesuffix(".npy")
                data = tar.extractfile(member).read()
                if len(data) != member.size:
                    raise DataError(f"shard {name} is truncated (member {member.name})")
                if current is not None and key != current:
                    yield current, fields
                    fields = {}
                current = key
                fields[field] = np.load(io.BytesIO(data), allow_pickle=False)
    except (tarfile.TarError, EOFError, ValueError, OSError) as exc:
        raise DataError(f"shard {name} is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    if current is not None:
        yield current, fields


def verify(folder: Path, log=print) -> dict[str, Any]:
    """Check every shard of a local folder: sha256, sample count, keys. Raises DataError naming the shard."""
    manifest = read_manifest(str(folder))
    problems = []
    for split, info in manifest["splits"].items():
        total = 0
        for shard in info["shards"]:
            path = folder / shard["name"]
            if not path.is_file():
                problems.append(f"{shard['name']}: missing")
                continue
            if sha256(path) != shard["sha256"]:
                problems.append(f"{shard['name']}: sha256 differs from the manifest (changed or damaged)")
                continue
            count = 0
            try:
                for _, fields in iter_tar(path, shard["name"]):
                    if sorted(fields) != manifest["keys"]:
                        problems.append(f"{shard['name']}: a sample has keys {sorted(fields)}")
                        break
                    count += 1
            except DataError as exc:
                problems.append(str(exc))
                continue
            if count != shard["samples"]:
                problems.append(f"{shard['name']}: {count} samples, the manifest says {shard['samples']}")
            total += count
        if total != info["samples"] and not problems:
            problems.append(f"split {split}: {total} samples, the manifest says {info['samples']}")
        log(f"{split}: {len(info['shards'])} shards, {total} samples checked")
    if problems:
        raise DataError(f"{folder}: {len(problems)} problem(s): " + "; ".join(problems))
    return manifest
