#!/usr/bin/env python3
"""The peer: the lesson's workloads in PyTorch, identical to `scratchnet train`'s defaults.

--model mlp (default): MLP 784-128-10.
--model cnn: the conv net of `scratchnet train --model cnn`, on NCHW input (B, 1, 28, 28):
  Conv2d(1, 32, 3, padding=1), ReLU, MaxPool2d(2), Conv2d(32, 64, 3, padding=1), ReLU, MaxPool2d(2),
  Flatten, Linear(64*7*7, 128), ReLU, Linear(128, 10): 421,642 parameters.
Both: PyTorch's default initialisation, Adam lr 1e-3 (betas 0.9/0.999, eps 1e-8), batch 64, a shuffled pass
over the 60,000 Fashion-MNIST training images per epoch with the last partial batch kept, images normalised
with (x/255 - 0.2860) / 0.3530. The IDX files are read with gzip and numpy (no torchvision). Prints, per
epoch, the training seconds (training only: the evaluation is timed apart) and the test accuracy; with
--json one JSON line (torch version, model, parameter count, per-epoch results).

Here (2 cores, no GPU): Debian's python3-torch with libopenblas0-openmp, run as /usr/bin/python3.
On a GPU machine: any PyTorch with CUDA, --device cuda.
"""
import argparse
import gzip
import json
import os
import struct
import sys
import time

import numpy as np
import torch
from torch import nn


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndims = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndims, data[4:4 + 4 * ndims])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndims).reshape(dims)


def find(folder, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(folder, candidate)
        if os.path.exists(path):
            return path
    sys.exit(f"error: {os.path.join(folder, name)}[.gz] not found")


def build(model, channels, height, width):
    """The model named by --model, for (B, channels, height, width) input."""
    if model == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, 128), nn.ReLU(), nn.Linear(128, 10))
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * (height // 4) * (width // 4), 128), nn.ReLU(), nn.Linear(128, 10))


# ScratchNet's parameter counts on 1x28x28 (Fashion-MNIST); the peer checks it builds the same model.
EXPECTED_PARAMETERS = {"mlp": 101_770, "cnn": 421_642}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--model", choices=("mlp", "cnn"), default="mlp")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    device = torch.device(a.device)

    def load(images, labels):
        x = read_idx(find(a.data, images)).astype(np.float32)
        x = x.reshape(x.shape[0], 1, *x.shape[1:])  # NCHW: (N, 1, H, W)
        x = (x / 255.0 - 0.2860) / 0.3530
        return torch.from_numpy(x), torch.from_numpy(read_idx(find(a.data, labels)).astype(np.int64))

    train_x, train_y = load("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
    test_x, test_y = load("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    if device.type == "cuda":
        # Page-locked host memory: batches go to the GPU the way ScratchNet's do, one copy per step.
        train_x, train_y = train_x.pin_memory(), train_y.pin_memory()

    model = build(a.model, *train_x.shape[1:]).to(device)
    parameters = sum(t.numel() for t in model.parameters())
    if tuple(train_x.shape[1:]) == (1, 28, 28) and parameters != EXPECTED_PARAMETERS[a.model]:
        sys.exit(f"error: {a.model} has {parameters:,} parameters, ScratchNet's has {EXPECTED_PARAMETERS[a.model]:,}")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(a.seed)
    results = []
    for epoch in range(a.epochs):
        order = torch.randperm(len(train_x), generator=generator)
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        model.train()
        total_loss = 0.0
        for i in range(0, len(order), a.batch_size):
            idx = order[i:i + a.batch_size]
            x = train_x[idx].to(device, non_blocking=True)
            y = train_y[idx].to(device, non_blocking=True)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += loss.detach() * len(idx)
        total_loss = float(total_loss) / len(order)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        model.eval()
        with torch.no_grad():
            correct = 0
            for i in range(0, len(test_x), 1000):
                correct += (model(test_x[i:i + 1000].to(device)).argmax(1).cpu() == test_y[i:i + 1000]).sum().item()
        accuracy = correct / len(test_x)
        results.append({"epoch": epoch + 1, "seconds": seconds, "loss": total_loss, "test_accuracy": accuracy})
        if not a.json:
            print(f"epoch {epoch + 1}/{a.epochs}: loss {total_loss:.4f}, test acc {100 * accuracy:.2f}%, {seconds:.3f} s "
                  f"(torch {torch.__version__}, {a.model}, {parameters:,} parameters, {device}, batch {a.batch_size}, "
                  f"{torch.get_num_threads()} threads)")
    if a.json:
        print(json.dumps({"torch": torch.__version__, "model": a.model, "parameters": parameters, "device": str(device),
                          "batch_size": a.batch_size, "threads": torch.get_num_threads(), "results": results}))


if __name__ == "__main__":
    main()
