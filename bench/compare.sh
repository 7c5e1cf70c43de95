#!/usr/bin/env bash
# ScratchNet against the PyTorch peer (bench/peers/torch_peer.py) on the same workload, back to back,
# alternating, RUNS times each: MODEL (mlp: the lesson's MLP 784-128-10; cnn: the conv net of
# `scratchnet train --model cnn`, 421,642 parameters), Adam lr 1e-3, batch BATCH, full Fashion-MNIST, one epoch,
# training time only. Prints every run and the median epoch seconds and their ratio (below 1: ScratchNet is
# faster).
#
#   bench/compare.sh [RUNS=5] [DEVICE=host] [BATCH=64] [MODEL=both]
#
# MODEL both (the default) runs the MLP's RUNS pairs, then the conv net's, and ends with both ratios. The first
# line says which machine, .NET and torch ran it.
# DEVICE is ScratchNet's; the peer always runs on the CPU. Needs Debian's dataset-fashion-mnist, python3-torch
# and libopenblas0-openmp (the peer runs as /usr/bin/python3, or $PYTHON, with torch.set_num_threads(2)).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
device=${2:-host}
batch=${3:-64}
model=${4:-both}
case "$model" in mlp|cnn) models=$model ;; both) models="mlp cnn" ;; *) echo "error: MODEL must be mlp, cnn or both, not '$model'" >&2; exit 2 ;; esac
data=/usr/share/datasets/fashion-mnist
python=${PYTHON:-/usr/bin/python3}

dotnet build -c Release src/Cli >/dev/null
sn="dotnet src/Cli/bin/Release/net10.0/scratchnet.dll"
cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'); family=$(grep -m1 "cpu family" /proc/cpuinfo | cut -d: -f2 | tr -d ' ')
echo "machine: $(hostname), $(nproc) cores, $cpu (family $family), $(grep -o -m1 -w avx512f /proc/cpuinfo || echo no-avx512), .NET $(dotnet --version), torch $("$python" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo missing)"
summary=()
for model in $models; do
ours=()
theirs=()
for i in $(seq "$runs"); do
  o=$($sn train --model "$model" --device "$device" --data "$data" --batch-size "$batch" --json \
      | "$python" -c 'import json,sys; r=json.load(sys.stdin)["results"][0]; print("%.3f %.4f" % (r["seconds"], r["testAccuracy"]))')
  t=$("$python" bench/peers/torch_peer.py --model "$model" --data "$data" --batch-size "$batch" --threads 2 --json \
      | "$python" -c 'import json,sys; d=json.load(sys.stdin); r=d["results"][0]; print("%.3f %.4f %s" % (r["seconds"], r["test_accuracy"], d["torch"]))')
  echo "run $i ($model, batch $batch): scratchnet ($device) ${o% *} s, test acc ${o#* }; pytorch ${t%% *} s, test acc $(echo "$t" | cut -d' ' -f2) (torch $(echo "$t" | cut -d' ' -f3))"
  ours+=("${o% *}")
  theirs+=("${t%% *}")
done
line=$("$python" - "${ours[*]}" "${theirs[*]}" "$model" <<'PY'
import statistics, sys
ours = [float(x) for x in sys.argv[1].split()]
theirs = [float(x) for x in sys.argv[2].split()]
mo, mt = statistics.median(ours), statistics.median(theirs)
print(f"median epoch ({sys.argv[3]}): scratchnet {mo:.3f} s, pytorch {mt:.3f} s, ratio {mo / mt:.2f} (scratchnet / pytorch; below 1 = ScratchNet faster)")
PY
)
echo "$line"
summary+=("$line")
done
if [ "${#summary[@]}" -gt 1 ]; then
  echo "both models (batch $batch, $runs alternating runs each):"
  printf '  %s\n' "${summary[@]}"
fi
