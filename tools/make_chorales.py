#!/usr/bin/env python
"""Make the Bach chorales fixture that the `bach_chorales` dataset reads (the JSB Chorales stand-in).

Converts every four-part chorale of the music21 corpus (Riemenschneider numbering, 351 of 371) into
a piano roll at eighth-note resolution: one step per eighth note, each step the sorted MIDI pitches
sounding in it (a note sounds in every step whose start lies in [onset, onset + duration); the
Boulanger-Lewandowski format), and writes them as canonical JSON, gzipped without a timestamp, to
plugins/fixtures/bach_chorales.json.gz. The sha256 of the JSON text (not of the gzip bytes, which
depend on the zlib version) is printed; it must equal FIXTURE_SHA256 in plugins/music_data.py.

music21 is needed only here (the optional extra `rladder[chorales]`):

    .venv/bin/pip install 'rladder[chorales]'
    .venv/bin/python tools/make_chorales.py            # about a minute the first time
    .venv/bin/python tools/make_chorales.py --check    # compare with the shipped fixture, write nothing
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "plugins" / "fixtures" / "bach_chorales.json.gz"
STEP = 0.5          # quarter lengths per step: an eighth note


def to_steps(score, step: float = STEP) -> list[list[int]]:
    """The pitches sounding in each step of ``score`` (every part)."""
    steps = [set() for _ in range(math.ceil(float(score.highestTime) / step))]
    for el in score.flatten().notes:                           # Notes and Chords of all parts
        a, b = float(el.offset) / step, float(el.offset + el.quarterLength) / step
        for k in range(math.ceil(a - 1e-9), math.ceil(b - 1e-9)):
            steps[k].update(p.midi for p in el.pitches)
    return [sorted(s) for s in steps]


def convert() -> dict:
    import music21
    from music21 import corpus

    it = corpus.chorales.Iterator(returnType="filename")      # Riemenschneider order, 1..371
    numbers = list(it.numberList)
    names = list(it)
    if len(numbers) != len(names):
        sys.exit(f"music21 lists {len(numbers)} Riemenschneider numbers but {len(names)} chorales")
    pieces = []
    for number, name in zip(numbers, names):
        score = corpus.parse(name)
        if len(score.parts) != 4:
            continue
        pieces.append({"number": int(number), "name": name.split("/")[-1], "steps": to_steps(score)})
    return {"format": "rladder piano rolls 1", "resolution": "eighth note",
            "source": f"music21 {music21.__version__} corpus.chorales.Iterator (Riemenschneider numbering), "
                      f"the chorales with exactly four parts",
            "pieces": pieces}


def canonical(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=FIXTURE)
    ap.add_argument("--check", action="store_true", help="Compare with the file at --out instead of writing it.")
    args = ap.parse_args(argv)
    text = canonical(convert())
    digest = hashlib.sha256(text).hexdigest()
    pieces = json.loads(text)["pieces"]
    print(f"{len(pieces)} chorales, {sum(len(p['steps']) for p in pieces)} eighth-note steps; sha256 of the JSON: {digest}")
    if args.check:
        shipped = hashlib.sha256(gzip.decompress(args.out.read_bytes())).hexdigest()
        print(f"shipped {args.out}: {shipped}: {'same' if shipped == digest else 'DIFFERENT'}")
        return 0 if shipped == digest else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(gzip.compress(text, compresslevel=9, mtime=0))
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
