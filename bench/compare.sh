#!/usr/bin/env bash
# ScratchNet against the PyTorch peer on the same workload, back to back, alternating, RUNS times each:
# the lesson's MLP 784-128-10, Adam lr 1e-3, batch 64, full Fashion-MNIST, one epoch, training time only.
# Prints every run and the median epoch seconds and their ratio (below 1: ScratchNet is faster).
#
#   bench/compare.sh [RUNS=5] [DEVICE=host] [BATCH=64]
#
# Needs Debian's dataset-fashion-mnist, python3-torch and libopenblas0-openmp (the peer runs as
# /usr/bin/python3 with torch.set_num_threads(2)).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
device=${2:-host}
batch=${3:-64}
data=/usr/share/datasets/fashion-mnist
python=${PYTHON:-/usr/bin/python3}

dotnet build -c Release src/Cli >/dev/null
sn="dotnet src/Cli/bin/Release/net10.0/scratchnet.dll"
ours=()
theirs=()
for i in $(seq "$runs"); do
  o=$($sn train --device "$device" --data "$data" --batch-size "$batch" --json \
      | "$python" -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print("%.3f %.4f" % (r["seconds"], r["testAccuracy"]))')
  t=$("$python" bench/peers/torch_mlp.py --data "$data" --batch-size "$batch" --threads 2 --json \
      | "$python" -c 'import json,sys; d=json.load(sys.stdin); r=d["results"][0]; print("%.3f %.4f %s" % (r["seconds"], r["test_accuracy"], d["torch"]))')
  echo "run $i: scratchnet ($device) ${o% *} s, test acc ${o#* }; pytorch ${t%% *} s, test acc $(echo "$t" | cut -d' ' -f2) (torch $(echo "$t" | cut -d' ' -f3))"
  ours+=("${o% *}")
  theirs+=("${t%% *}")
done
"$python" - "${ours[*]}" "${theirs[*]}" <<'PY'
import statistics, sys
ours = [float(x) for x in sys.argv[1].split()]
theirs = [float(x) for x in sys.argv[2].split()]
mo, mt = statistics.median(ours), statistics.median(theirs)
print(f"median epoch: scratchnet {mo:.3f} s, pytorch {mt:.3f} s, ratio {mo / mt:.2f} (scratchnet / pytorch; below 1 = ScratchNet faster)")
PY
