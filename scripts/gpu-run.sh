#!/usr/bin/env bash
# ScratchNet on a GPU machine that has no .NET SDK, in one prepared script.
#
#   here:  scripts/gpu-run.sh pack [OUTDIR]
#          publishes ScratchNet self-contained for linux-x64 (not trimmed: trimming breaks ILGPU), and packs it
#          with the PyTorch peer (bench/peers/torch_peer.py), this script and the embedded Fashion-MNIST subset
#          into OUTDIR/scratchnet-gpu.tar.xz (default OUTDIR: artifacts/gpu). The full dataset (30 MB of gzip)
#          would take the package past the 64 MiB a device call carries, so the comparison there runs on
#          60,000 real images made of the subset's 2,000 repeated 30 times: the same work per epoch for both.
#   there: scripts/gpu-run.sh run TARBALL [DEVICE]
#          unpacks and runs, in one go: scratchnet devices; selftest; bench (with the conv net's layers); memory
#          with the device's free memory, the driver's bytes beside the tracker's and the planner, for the MLP
#          and the conv net (plus nvidia-smi's figures); the caching allocator with eager lifetimes at two
#          alternating batch sizes and --release-cache; one epoch per matmul version (and auto) and per conv
#          version; and the same workload against PyTorch for both models at batch 64 and 1024, alternating,
#          3 runs each, printing the median epoch-time ratios.
#          DEVICE defaults to cuda; `run TARBALL cpu` checks the package here on the CPU accelerator.
#          Results go to $OUT (the device tool's folder) if set, else ./gpu-results.
#          QUICK=1 (the repository's test of this script, on the CPU accelerator) skips the conv net's bench rows,
#          the per-version epochs and the conv net's comparison, and runs the MLP's comparison once at batch 1024.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-}

pack() {
  out=${1:-$here/artifacts/gpu}
  mkdir -p "$out"
  stage=$(mktemp -d)
  pkg="$stage/scratchnet-gpu"
  mkdir -p "$pkg/data/fashion-mnist"
  dotnet publish "$here/src/Cli" -c Release -r linux-x64 --self-contained true -p:PublishTrimmed=false \
    -p:DebugType=none -o "$pkg/app" >/dev/null
  cp "$here/bench/peers/torch_peer.py" "$here/scripts/gpu-run.sh" "$pkg/"
  cp "$here"/src/Data/Embedded/*-ubyte.gz "$pkg/data/fashion-mnist/"
  tar -C "$stage" -cf - scratchnet-gpu | xz -T2 -6 > "$out/scratchnet-gpu.tar.xz"
  rm -rf "$stage"
  ls -l "$out/scratchnet-gpu.tar.xz"
}

run() {
  tarball=$1
  device=${2:-cuda}
  results=${OUT:-$PWD/gpu-results}
  mkdir -p "$results"
  work=$(mktemp -d)
  tar -C "$work" -xJf "$tarball"
  pkg="$work/scratchnet-gpu"
  sn="$pkg/app/scratchnet"
  data="$pkg/data/tiled"
  mkdir -p "$data"
  # 60,000 training images: the subset's 2,000 real images repeated 30 times; the 500 test images as they are.
  python3 - "$pkg/data/fashion-mnist" "$data" <<'PY'
import gzip, shutil, struct, sys
src, dst = sys.argv[1], sys.argv[2]
def read(name):
    with gzip.open(f"{src}/{name}.gz", "rb") as f:
        return f.read()
images, labels = read("train-images-idx3-ubyte"), read("train-labels-idx1-ubyte")
n = struct.unpack(">I", images[4:8])[0]
with gzip.open(f"{dst}/train-images-idx3-ubyte.gz", "wb", compresslevel=1) as f:
    f.write(struct.pack(">IIII", 0x803, 30 * n, 28, 28) + images[16:] * 30)
with gzip.open(f"{dst}/train-labels-idx1-ubyte.gz", "wb", compresslevel=1) as f:
    f.write(struct.pack(">II", 0x801, 30 * n) + labels[8:] * 30)
for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
    shutil.copy(f"{src}/{name}", f"{dst}/{name}")
PY
  dataopt="--data $data"
  log="$results/gpu-run.log"
  : > "$log"
  step() { echo; echo "### $*" | tee -a "$log"; "$@" 2>&1 | tee -a "$log"; }

  if command -v nvidia-smi >/dev/null; then
    step nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,memory.free --format=csv
  fi
  step "$sn" devices
  step "$sn" selftest --device "$device" || true
  quick=${QUICK:-0}
  if [ "$quick" = 1 ]; then
    step "$sn" bench --device "$device"
    "$sn" bench --device "$device" --json > "$results/bench.json" 2>>"$log" || true
  else
    step "$sn" bench --device "$device" --model cnn || true
    "$sn" bench --device "$device" --model cnn --json > "$results/bench.json" 2>>"$log" || true
  fi
  if [ "$device" = cpu ]; then
    step "$sn" memory --device "$device" $dataopt --memory-limit 8MiB --budget 0.8 || true
  else
    step "$sn" memory --device "$device" $dataopt --budget 0.8 || true
    step "$sn" memory --device "$device" $dataopt --model cnn --budget 0.8 || true
    command -v nvidia-smi >/dev/null && step nvidia-smi --query-gpu=memory.total,memory.used,memory.free --format=csv
  fi
  # PyTorch's allocator rules and autograd's lifetimes on the device: reserved beside allocated, and what empty_cache gives back.
  allocmodel=cnn; [ "$quick" = 1 ] && allocmodel=mlp
  step "$sn" memory --device "$device" $dataopt --model "$allocmodel" --allocator caching --lifetime eager --alternate 64,100 --rounds 2 --release-cache || true
  if [ "$quick" != 1 ]; then
    for v in naive blocked tiled vector auto; do step "$sn" train --device "$device" $dataopt --matmul "$v" || true; done
    for c in im2col direct; do step "$sn" train --device "$device" $dataopt --model cnn --conv "$c" || true; done
  fi

  # The same workload, ScratchNet and PyTorch alternating. ScratchNet's epoch seconds come from its --json.
  py=$(command -v python3 || true)
  : > "$results/compare.tsv"
  models="mlp cnn"; batches="64 1024"; reps="1 2 3"
  if [ "$quick" = 1 ]; then models=mlp; batches=1024; reps=1; fi
  for model in $models; do
  for batch in $batches; do
    for rep in $reps; do
      s=$("$sn" train --device "$device" $dataopt --model "$model" --batch-size "$batch" --json 2>>"$log" \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); r=d["results"][0]; print(r["seconds"], r["testAccuracy"])' 2>>"$log" || echo "nan nan")
      echo -e "scratchnet\t$model\t$batch\t$rep\t$s" | tee -a "$results/compare.tsv"
      if [ -n "$py" ] && "$py" -c 'import torch' 2>/dev/null; then
        t=$("$py" "$pkg/torch_peer.py" --device "$device" --data "$data" --model "$model" --batch-size "$batch" --json 2>>"$log" \
          | "$py" -c 'import json,sys; d=json.load(sys.stdin); r=d["results"][0]; print(r["seconds"], r["test_accuracy"])' || echo "nan nan")
        echo -e "pytorch\t$model\t$batch\t$rep\t$t" | tee -a "$results/compare.tsv"
      fi
    done
  done
  done
  if [ -n "$py" ]; then
    "$py" - "$results/compare.tsv" <<'PY' | tee -a "$log"
import sys, statistics, collections
rows = collections.defaultdict(list)
for line in open(sys.argv[1]):
    who, model, batch, rep, *rest = line.split()
    seconds = float(rest[0]) if rest and rest[0] != "nan" else float("nan")
    rows[(who, model, int(batch))].append(seconds)
for model in ("mlp", "cnn"):
    for batch in (64, 1024):
        ours, theirs = rows.get(("scratchnet", model, batch), []), rows.get(("pytorch", model, batch), [])
        if not ours: continue
        med = lambda xs: statistics.median(xs) if xs else float("nan")
        ratio = med(ours) / med(theirs) if theirs else float("nan")
        print(f"{model} batch {batch}: scratchnet median {med(ours):.3f} s, pytorch median {med(theirs):.3f} s, ratio {ratio:.2f} (below 1 = ScratchNet faster)")
PY
  fi
  rm -rf "$work"
  echo "results in $results"
}

case "$mode" in
  pack) shift; pack "$@" ;;
  run) shift; run "$@" ;;
  *) sed -n '2,16p' "$0"; exit 2 ;;
esac
