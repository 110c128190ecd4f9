"""Piano rolls: packing, MIDI files in and out, pictures (helpers of the music datasets; registers nothing).

A roll is a (T, 88) bool array: step t, key k sounds (MIDI pitch 21 + k). Held notes and repeated
attacks look the same in a roll, so a note written to MIDI lasts until its key stops sounding.
MIDI files are written here with no library (a format-0 Standard MIDI File, one track) and read
with mido (the optional extra ``rladder[midi]``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from rladder.registry import ConfigError, DataError

LOW, KEYS = 21, 88                      # MIDI 21 (A0) .. 108 (C8)
PACKED = KEYS // 8                      # 11 bytes per step


def steps_to_roll(steps, where: str = "") -> np.ndarray:
    """BL2012 form (a list of steps, each a list of MIDI pitches) -> (T, 88) bool."""
    roll = np.zeros((len(steps), KEYS), bool)
    for t, pitches in enumerate(steps):
        for p in pitches:
            if not LOW <= p < LOW + KEYS:
                raise DataError(f"{where}: step {t} holds MIDI pitch {p}, outside the piano's 21-108")
            roll[t, p - LOW] = True
    return roll


def pack(rolls: list[np.ndarray], lead: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Rolls of different lengths -> ``roll`` (N, lead + T_max, 11) uint8 (``lead`` silent steps first,
    zeros after each piece) and ``length`` (N,) int64."""
    longest = max((len(r) for r in rolls), default=0)
    out = np.zeros((len(rolls), lead + longest, KEYS), bool)
    for i, r in enumerate(rolls):
        out[i, lead:lead + len(r)] = r
    return np.packbits(out, axis=-1), np.array([len(r) for r in rolls], np.int64)


def unpack(packed: torch.Tensor) -> torch.Tensor:
    """(..., 11) uint8 -> (..., 88) float32 in {0, 1} (np.packbits order: the first key is the high bit)."""
    shifts = torch.arange(7, -1, -1, device=packed.device, dtype=torch.uint8)
    bits = (packed.unsqueeze(-1) >> shifts) & 1
    return bits.reshape(*packed.shape[:-1], KEYS).float()


def transpose(roll: np.ndarray, shift: int) -> np.ndarray | None:
    """``roll`` moved by ``shift`` semitones, or None when a note would leave the keyboard."""
    keys = np.flatnonzero(roll.any(0))
    if len(keys) and (keys.min() + shift < 0 or keys.max() + shift >= KEYS):
        return None
    return np.roll(roll, shift, axis=1)


# ------------------------------------------------------------------------------ MIDI
def _vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    while n > 0x7F:
        n >>= 7
        out.append(0x80 | (n & 0x7F))
    return bytes(reversed(out))


def write_midi(roll: np.ndarray, path: Path, bpm: float = 100.0, ticks_per_quarter: int = 480,
               steps_per_quarter: int = 2, velocity: int = 80) -> Path:
    """A format-0 Standard MIDI File: one piano track, a note from the step its key starts sounding
    to the step it stops; tempo ``bpm`` quarter notes a minute."""
    step = ticks_per_quarter // steps_per_quarter
    padded = np.pad(np.asarray(roll, bool), ((1, 1), (0, 0))).astype(np.int8)
    change = np.diff(padded, axis=0)                       # (T + 1, 88): +1 note on, -1 note off at step t
    events = sorted((int(t) * step, int(change[t, k] > 0), LOW + int(k)) for t, k in zip(*np.nonzero(change)))
    tempo = round(60_000_000 / bpm)
    track = bytearray(b"\x00\xff\x51\x03" + tempo.to_bytes(3, "big") + b"\x00\xc0\x00")   # tempo; piano
    now = 0
    for tick, on, pitch in events:
        track += _vlq(tick - now) + bytes([0x90 if on else 0x80, pitch, velocity if on else 0])
        now = tick
    track += b"\x00\xff\x2f\x00"                                                           # end of track
    header = b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + \
        ticks_per_quarter.to_bytes(2, "big")
    path = Path(path)
    path.write_bytes(header + b"MTrk" + len(track).to_bytes(4, "big") + bytes(track))
    return path


def read_midi(path: Path, steps_per_quarter: int = 2) -> np.ndarray:
    """A MIDI file -> (T, 88) bool roll, onsets and ends rounded to the nearest step (a note lasts at
    least one step); drums (channel 10) and pitches off the keyboard are left out."""
    path = Path(path)
    try:
        head = path.read_bytes()[:4]
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if head != b"MThd":
        raise DataError(f"{path} is not a MIDI file: a Standard MIDI File starts with 'MThd', this one with "
                        f"{head!r}; remove it from the folder, or skip such files (midi_folder option skip_bad = true)")
    try:
        import mido
    except ImportError:
        raise ConfigError("reading MIDI files needs mido, an optional extra: pip install 'rladder[midi]'") from None
    try:
        mid = mido.MidiFile(path)
    except Exception as exc:  # noqa: BLE001 - mido raises many kinds on a damaged file
        raise DataError(f"{path} is a damaged MIDI file ({type(exc).__name__}: {exc}); skip such files with the "
                        f"midi_folder option skip_bad = true") from None
    q = mid.ticks_per_beat / steps_per_quarter
    notes = []
    for track in mid.tracks:
        now, sounding = 0, {}
        for msg in track:
            now += msg.time
            if msg.type not in ("note_on", "note_off") or msg.channel == 9:
                continue
            key = (msg.channel, msg.note)
            if msg.type == "note_on" and msg.velocity > 0:
                sounding.setdefault(key, []).append(now)
            elif sounding.get(key):
                notes.append((sounding[key].pop(0), now, msg.note))
        notes += [(start, now, note) for (_, note), starts in sounding.items() for start in starts]
    length = max((max(round(b / q), round(a / q) + 1) for a, b, _ in notes), default=0)
    roll = np.zeros((length, KEYS), bool)
    for a, b, pitch in notes:
        if LOW <= pitch < LOW + KEYS:
            start = round(a / q)
            roll[start:max(start + 1, round(b / q)), pitch - LOW] = True
    return roll


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------ pictures
def _pitch_axis(ax, lo: int, hi: int) -> None:
    ticks = [p for p in range(lo, hi + 1) if p % 12 == 0]             # the Cs
    ax.set_yticks(ticks)
    ax.set_yticklabels([f"C{p // 12 - 1}" for p in ticks], fontsize=7)
    ax.set_ylabel("pitch", fontsize=8)


def pitch_range(*rolls: np.ndarray, margin: int = 3) -> tuple[int, int]:
    """MIDI pitches lo..hi spanning every sounding key of ``rolls`` (with a margin)."""
    keys = np.flatnonzero(np.concatenate([r.reshape(-1, KEYS) for r in rolls]).any(0))
    if not len(keys):
        return LOW + 36, LOW + 60
    return max(LOW, LOW + keys.min() - margin), min(LOW + KEYS - 1, LOW + keys.max() + margin)


def draw_prediction(target: np.ndarray, probs: np.ndarray, nll: np.ndarray, prior_nll: np.ndarray | None,
                    title: str):
    """The piano roll of a piece (the steps predicted), the predicted probabilities under it, and the
    NLL of every step (nats), with the trivial baselines."""
    import matplotlib.pyplot as plt

    lo, hi = pitch_range(target)
    rows = slice(lo - LOW, hi - LOW + 1)
    fig, axes = plt.subplots(3, 1, figsize=(max(8.0, len(target) / 14), 8.5), sharex=True,
                             gridspec_kw={"height_ratios": [3, 3, 2]})
    extent = (-0.5, len(target) - 0.5, lo - 0.5, hi + 0.5)
    axes[0].imshow(target[:, rows].T, origin="lower", aspect="auto", cmap="Greys", extent=extent, interpolation="nearest")
    axes[0].set_title("piano roll of the piece (the notes to predict)", fontsize=9)
    im = axes[1].imshow(probs[:, rows].T, origin="lower", aspect="auto", cmap="magma", vmin=0, vmax=1, extent=extent,
                        interpolation="nearest")
    t, k = np.nonzero(target[:, rows])
    axes[1].scatter(t, k + lo, s=1.5, c="tab:cyan", marker="s", linewidths=0, label="true notes")
    axes[1].set_title("predicted probability of each note, from the steps before it (cyan: the true notes)", fontsize=9)
    fig.colorbar(im, ax=axes[1], fraction=0.02, pad=0.01)
    for ax in axes[:2]:
        _pitch_axis(ax, lo, hi)
    ax = axes[2]
    ax.plot(np.arange(len(nll)), nll, lw=1, label=f"model (mean {nll.mean():.2f})")
    if prior_nll is not None:
        ax.plot(np.arange(len(prior_nll)), prior_nll, lw=0.8, color="tab:gray",
                label=f"every note at its training-set frequency (mean {prior_nll.mean():.2f})")
    ax.set_ylim(0, max(float(nll.max()), float(prior_nll.max()) if prior_nll is not None else 0.0) * 1.1)
    ax.set_ylabel("NLL (nats)", fontsize=8)
    ax.set_xlabel("step (eighth notes)", fontsize=8)
    ax.set_title(f"negative log-likelihood of each step (every note at 0.5: {KEYS * np.log(2):.1f} nats)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))                 # room for the caption `rladder viz` puts above
    return fig


def draw_generated(roll: np.ndarray, primer: int, title: str):
    """A generated piece: the primer's notes in blue, the sampled continuation in orange."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lo, hi = pitch_range(roll)
    fig, ax = plt.subplots(figsize=(max(8.0, len(roll) / 12), 4.5))
    for part, colour, label in ((slice(0, primer), "tab:blue", "primer"), (slice(primer, None), "tab:orange",
                                                                           "sampled continuation")):
        t, k = np.nonzero(roll[part])
        ax.bar(t + (part.start or 0), 0.8, width=1.0, bottom=k + LOW - 0.4, color=colour, align="edge",
               label=f"{label} ({len(roll[part])} steps)")
    ax.axvline(primer, color="k", lw=0.8, ls="--")
    ax.set_xlim(0, max(len(roll), 1))
    ax.set_ylim(lo - 0.5, hi + 0.5)
    _pitch_axis(ax, lo, hi)
    ax.set_xlabel("step (eighth notes)", fontsize=8)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
