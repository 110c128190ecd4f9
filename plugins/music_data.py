"""Polyphonic music as binary piano rolls (paper section 3.2, spec section 4.2).

Three datasets, one form. A piece is a sequence of steps (an eighth note each for the chorales and
MIDI files; the BL2012 pickles keep their own step), each step the set of the 88 piano keys
sounding, MIDI 21-108; a step's input is ``(1, 88)``, a 1-D picture over pitch.

* ``bach_chorales``: the 351 four-part Bach chorales of the music21 corpus, the JSB Chorales
  stand-in, from a fixture shipped with rladder (made by ``tools/make_chorales.py``; music21 is
  needed only to make it again); split by Riemenschneider number r: r mod 5 in {1, 2, 3} train
  (208 pieces), 4 validation (72), 0 test (71).
* ``bl2012``: the pickles of Boulanger-Lewandowski et al. (2012) (JSB Chorales, Nottingham,
  MuseData, Piano-midi.de) when you have the files; their train/valid/test split. A pickle can run
  code when it is loaded: these are read by an unpickler that builds no objects of any class (only
  dicts, lists, tuples, strings and numbers), then checked to be lists of steps of MIDI pitches,
  and against a sha256 where one is given.
* ``midi_folder``: every file of a folder as a MIDI piece (read with mido, the optional extra
  ``rladder[midi]``), quantised to ``steps_per_quarter`` steps per quarter note; subfolders
  ``train``, ``val`` (or ``valid``) and ``test`` give the split, else file i (sorted, from 1) goes
  to the split of i mod 5 as above. A file that is not MIDI is an error, or with ``skip_bad`` a warning.

Stored form (``arrays``, shards): ``roll`` (N, 1 + T_max, 11) uint8, each step's 88 keys packed in
11 bytes, stored step 0 silent; ``length`` (N,) int64, the steps of each piece. A batch
(``to_batch``): ``x`` (B, T, 1, 88) float32 in {0, 1} = stored steps 0..T-1 (silence, then the
piece), ``x_next`` = stored steps 1..T, the next-step targets (so every step of a piece is
predicted, the first from silence), ``step_mask`` (B, T) bool = step < length, and ``x_prior``
(B, 1, 1, 88): each key's frequency in the training split (add-one smoothed), the trivial baseline
the ``next_step`` task reports. The ``chunked`` loader cuts pieces into chunks (``sequence_layout``).
``transpose = k`` adds to the training split a copy of every piece moved by each shift in [-k, k]
semitones that keeps it on the keyboard.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pickle
from importlib import resources
from pathlib import Path
from typing import Literal

import attrs
import numpy as np
import torch
import torch.nn.functional as F

from rladder.core import DataSpec, Dataset, SequenceLayout
from rladder.registry import Component, ConfigError, DataError, hookimpl, non_negative, option, positive

from .pianoroll import (KEYS, PACKED, draw_generated, draw_prediction, pack, read_midi, steps_to_roll, transpose,
                        unpack, warn, write_midi)

SPLITS = ("train", "val", "test")
FIXTURE = "bach_chorales.json.gz"
FIXTURE_SHA256 = "acc2e7ac81f52f2c9ce9087f210719d6672693f7921d2dc55b905bf0b62c1387"   # of the JSON text
KEYS_DOC = {"x": "(B,T,1,88) float32 in {0,1}: the keys sounding at step t (step 0: silence before the piece)",
            "x_next": "(B,T,1,88) float32 in {0,1}: the keys sounding at step t+1 (the target)",
            "step_mask": "(B,T) bool: steps inside the piece", "x_prior": "(B,1,1,88) training-set key frequencies"}
Piece = tuple[str, np.ndarray]          # name, (T, 88) bool roll


def by_number(number: int) -> str:
    """The split of piece number ``number`` (Riemenschneider number; file position from 1)."""
    return {0: "test", 4: "val"}.get(number % 5, "train")


@attrs.frozen
class RollOptions:
    transpose: int = option(0, help="Add to the training split a copy of every piece moved by each shift in [-k, k] "
                                    "semitones that keeps it on the keyboard (0: none).", validator=non_negative)
    max_pieces: int = option(0, help="Only the first N pieces of each split (0: all).", validator=non_negative)
    max_steps: int = option(0, help="Cut every piece after N steps (0: whole pieces).", validator=non_negative)


class PianoRolls(Dataset):
    """What the three datasets share: stored form, batches, pictures, primers, generated output."""

    steps_per_quarter = 2

    def __init__(self, options):
        self.options = o = options
        pieces = self.load()
        self.pieces: dict[str, list[Piece]] = {}
        for split in SPLITS:
            chosen = [(n, r[:o.max_steps] if o.max_steps else r) for n, r in pieces.get(split, [])]
            chosen = [(n, r) for n, r in chosen if len(r)][:o.max_pieces or None]
            if not chosen:
                raise ConfigError(f"the {split!r} split of {self.describe()} has no piece; every split needs one")
            self.pieces[split] = chosen
        train = np.concatenate([r for _, r in self.pieces["train"]])
        self.prior = torch.from_numpy((train.sum(0) + 1.0) / (len(train) + 2.0)).float()
        longest = max(len(r) for split in SPLITS for _, r in self.pieces[split])
        self.spec = DataSpec("sequence", (1, KEYS), longest, KEYS_DOC)
        self._arrays: dict[str, dict[str, np.ndarray]] = {}

    def load(self) -> dict[str, list[Piece]]:
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------------ data
    def arrays(self, split):
        self.check_split(split)
        if split not in self._arrays:
            rolls = [r for _, r in self.pieces[split]]
            if split == "train" and self.options.transpose:
                k = self.options.transpose
                rolls += [m for s in range(-k, k + 1) if s for r in rolls[:] if (m := transpose(r, s)) is not None]
            roll, length = pack(rolls)
            self._arrays[split] = {"roll": roll, "length": length}
        return self._arrays[split]

    def sequence_layout(self):
        return SequenceLayout(time_keys=("roll",), length_key="length", lookahead=1)

    def to_batch(self, stored):
        steps = unpack(stored["roll"])                                   # (B, W, 88)
        length = stored["length"].long()
        T = max(1, min(int(length.max()), steps.shape[1] - 1))
        mask = torch.arange(T, device=length.device) < length[:, None]
        return {"x": steps[:, :T, None], "x_next": steps[:, 1:T + 1, None], "step_mask": mask,
                "x_prior": self.prior.to(steps.device).view(1, 1, 1, KEYS).expand(len(length), 1, 1, KEYS)}

    def dummy_batch(self, batch=2, generator=None):
        roll = torch.randint(0, 256, (batch, 17, PACKED), generator=generator, dtype=torch.uint8)
        return self.to_batch({"roll": roll, "length": torch.full((batch,), 16)})

    # ------------------------------------------------------------------ pictures
    def figures(self, batch, predictions):
        """``piano_roll.png``: the first piece of the batch, the predicted probabilities under it, NLL per step."""
        probs = predictions.get("next_frame")
        if probs is None:
            return {}
        n = int(batch["step_mask"][0].sum())
        target, p = batch["x_next"][0, :n, 0].float(), probs[0, :n, 0].float().clamp(1e-7, 1 - 1e-7)
        nll = F.binary_cross_entropy(p, target, reduction="none").sum(1)
        prior = F.binary_cross_entropy(batch["x_prior"][0, 0, 0].expand_as(target), target, reduction="none").sum(1)
        fig = draw_prediction(target.numpy() > 0.5, p.numpy(), nll.numpy(), prior.numpy(),
                              f"next-step prediction of one piece, {n} steps: mean NLL {nll.mean():.2f} nats per step")
        return {"piano_roll": fig}

    # ------------------------------------------------------------------ generation
    def read_primer(self, source, steps=0):
        """A MIDI file, ``SPLIT:INDEX`` (``test:0``: the first test piece) or a piece's name; its first
        ``steps`` steps, after the silent step every piece starts from."""
        path = Path(source)
        if path.suffix.lower() in (".mid", ".midi") or path.is_file():
            if not path.is_file():
                raise ConfigError(f"primer file {path} does not exist")
            roll = read_midi(path, self.steps_per_quarter)
        else:
            roll = self.piece(source)
        roll = roll[:steps] if steps else roll
        x = torch.zeros(len(roll) + 1, 1, KEYS)
        x[1:, 0] = torch.from_numpy(roll).float()
        return x

    def piece(self, name: str) -> np.ndarray:
        split, _, index = name.partition(":")
        if split in SPLITS and index.isdigit():
            pieces = self.pieces[split]
            if int(index) >= len(pieces):
                raise ConfigError(f"primer {name!r}: the {split} split has {len(pieces)} pieces (0..{len(pieces) - 1})")
            return pieces[int(index)][1]
        for split in SPLITS:
            for n, roll in self.pieces[split]:
                if n == name:
                    return roll
        some = ", ".join(n for n, _ in self.pieces["test"][:4])
        raise ConfigError(f"primer {name!r} is neither a MIDI file (.mid) nor a piece of {self.describe()}; give a "
                          f"file, SPLIT:INDEX such as test:0, or a piece's name such as {some}")

    def write_generated(self, sequence, primer_steps, out):
        roll = (sequence[1:, 0] > 0.5).cpu().numpy()                    # stored step 0 is the silence before
        mid = write_midi(roll, Path(out).with_suffix(".mid"), steps_per_quarter=self.steps_per_quarter)
        fig = draw_generated(roll, primer_steps - 1, f"{mid.name}: {primer_steps - 1} steps of primer, "
                                                     f"{len(roll) - primer_steps + 1} sampled")
        png = Path(out).with_suffix(".png")
        fig.savefig(png, dpi=110)
        import matplotlib.pyplot as plt
        plt.close(fig)
        return [mid, png]


# ------------------------------------------------------------------------------ bach_chorales
def read_fixture(data: bytes | None = None) -> dict:
    """The chorales fixture, checked against FIXTURE_SHA256."""
    if data is None:
        data = resources.files("rladder.plugins").joinpath("fixtures", FIXTURE).read_bytes()
    text = gzip.decompress(data)
    digest = hashlib.sha256(text).hexdigest()
    if digest != FIXTURE_SHA256:
        raise DataError(f"the chorales fixture {FIXTURE} is damaged (sha256 {digest}, expected {FIXTURE_SHA256}); "
                        f"reinstall rladder or make it again with tools/make_chorales.py")
    return json.loads(text)


class BachChorales(PianoRolls):
    def load(self):
        out: dict[str, list[Piece]] = {s: [] for s in SPLITS}
        for p in read_fixture()["pieces"]:
            out[by_number(p["number"])].append((p["name"], steps_to_roll(p["steps"], p["name"])))
        return out

    def describe(self):
        return "the Bach chorales (music21 corpus)"


# ------------------------------------------------------------------------------ bl2012
BL2012_FILES = {"jsb_chorales": "JSB Chorales.pickle", "nottingham": "Nottingham.pickle",
                "musedata": "MuseData.pickle", "piano_midi": "Piano-midi.de.pickle"}
# sha256 of the original files, where known. None has been published that we could check; give yours
# with the option `sha256` to pin the file you use.
BL2012_SHA256: dict[str, str] = {}


class ListsAndNumbers(pickle.Unpickler):
    """Builds only what pickle makes without a class (dicts, lists, tuples, strings, numbers)."""

    where = "the pickle"

    def find_class(self, module, name):
        raise DataError(f"{self.where} holds an object of class {module}.{name}; a BL2012 piano-roll pickle holds only "
                        f"lists of steps of MIDI pitches (ints), so it was not read (loading a pickle's objects can "
                        f"run code)")


def read_bl2012(data: bytes, where: str) -> dict[str, list[list[list[int]]]]:
    """The train/valid/test pieces of a BL2012 pickle, checked to be lists of steps of MIDI pitches."""
    reader = ListsAndNumbers(io.BytesIO(data), encoding="latin1")
    reader.where = where
    try:
        raw = reader.load()
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged pickle fails in many ways
        raise DataError(f"{where} is not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(raw, dict) or not {"train", "valid", "test"} <= set(raw):
        raise DataError(f"{where} is not a BL2012 pickle: expected a dict with 'train', 'valid' and 'test'")
    def fail(what: str, value) -> DataError:
        return DataError(f"{where}: {what} is {type(value).__name__} {value!r:.60}, not a list of steps of MIDI pitches "
                         f"(lists of ints), as a BL2012 pickle holds")

    for split in ("train", "valid", "test"):
        if not isinstance(raw[split], list | tuple):
            raise fail(f"'{split}'", raw[split])
        for i, seq in enumerate(raw[split]):
            if not isinstance(seq, list | tuple):
                raise fail(f"{split} piece {i}", seq)
            for t, step in enumerate(seq):
                if not isinstance(step, list | tuple) or not all(type(p) is int for p in step):
                    raise fail(f"{split} piece {i} step {t}", step)
    return {s: raw[s] for s in ("train", "valid", "test")}


@attrs.frozen
class BL2012Options(RollOptions):
    set: Literal["jsb_chorales", "nottingham", "musedata", "piano_midi"] = option(
        "jsb_chorales", help="Which of the four BL2012 data sets.")
    path: str = option("", help="The pickle file, or the folder holding it under its original name; '' = the "
                                "folder in $RLADDER_BL2012.")
    sha256: str = option("", help="The file's expected sha256 (default: the known one, where known).")


class BL2012(PianoRolls):
    def locate(self) -> Path:
        o = self.options
        where = o.path or os.environ.get("RLADDER_BL2012", "")
        if not where:
            raise ConfigError(f"dataset bl2012 needs the Boulanger-Lewandowski (2012) pickles, which no package ships: "
                              f"put {BL2012_FILES[o.set]!r} in a folder and set RLADDER_BL2012 to it (or data.path to "
                              f"the file); without them use the music21 chorales (data.name = \"bach_chorales\")")
        path = Path(where)
        path = path / BL2012_FILES[o.set] if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"{path} does not exist: dataset bl2012 ({o.set}) needs {BL2012_FILES[o.set]!r}")
        return path

    def load(self):
        path = self.locate()
        data = path.read_bytes()
        want = self.options.sha256 or BL2012_SHA256.get(self.options.set, "")
        digest = hashlib.sha256(data).hexdigest()
        if want and digest != want:
            raise DataError(f"{path} has sha256 {digest}, not the expected {want}: a different or damaged file")
        raw = read_bl2012(data, str(path))
        return {ours: [(f"{theirs}:{i}", steps_to_roll(seq, f"{path} {theirs} piece {i}"))
                       for i, seq in enumerate(raw[theirs])]
                for ours, theirs in zip(SPLITS, ("train", "valid", "test"))}

    def describe(self):
        return f"BL2012 {self.options.set}"


# ------------------------------------------------------------------------------ midi_folder
@attrs.frozen
class MidiFolderOptions(RollOptions):
    path: str = option("", help="Folder of MIDI files (with train/, val/ and test/ subfolders, or split by position).")
    skip_bad: bool = option(False, help="Skip a file that is not a readable MIDI file, with a warning (else an error).")
    steps_per_quarter: int = option(2, help="Steps per quarter note (2: eighth notes).", validator=positive)


class MidiFolder(PianoRolls):
    @property
    def steps_per_quarter(self):
        return self.options.steps_per_quarter

    def load(self):
        root = Path(self.options.path)
        if not self.options.path or not root.is_dir():
            why = f"{root} is not a folder" if self.options.path else "it is not set"
            raise ConfigError(f"dataset midi_folder needs data.path, a folder of MIDI files ({why})")
        folders = {s: next((root / n for n in names if (root / n).is_dir()), None)
                   for s, names in (("train", ["train"]), ("val", ["val", "valid"]), ("test", ["test"]))}
        if all(folders.values()):
            files = {s: self._files(folders[s]) for s in SPLITS}
        else:
            files = {s: [] for s in SPLITS}
            for i, f in enumerate(self._files(root), start=1):
                files[by_number(i)].append(f)
        return {s: [(str(f.relative_to(root)), roll) for f in fs if (roll := self._read(f)) is not None]
                for s, fs in files.items()}

    @staticmethod
    def _files(folder: Path) -> list[Path]:
        return sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))

    def _read(self, path: Path) -> np.ndarray | None:
        try:
            return read_midi(path, self.options.steps_per_quarter)
        except DataError as exc:
            if not self.options.skip_bad:
                raise
            warn(f"skipping {path}: {str(exc).split(';')[0]}")
            return None

    def describe(self):
        return f"the MIDI folder {self.options.path}"


@hookimpl
def rladder_components():
    return [
        Component("dataset", "bach_chorales", BachChorales, RollOptions,
                  "Bach chorales of the music21 corpus as eighth-note piano rolls (JSB Chorales stand-in), shipped.",
                  example={"data": {"max_pieces": 4}}),
        Component("dataset", "bl2012", BL2012, BL2012Options,
                  "Boulanger-Lewandowski (2012) piano-roll pickles (JSB, Nottingham, MuseData, Piano-midi.de), your files."),
        Component("dataset", "midi_folder", MidiFolder, MidiFolderOptions,
                  "A folder of MIDI files as piano rolls (needs mido: rladder[midi])."),
    ]
