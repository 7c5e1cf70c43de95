namespace ScratchNet.Training;

/// <summary>
/// Activation checkpointing (--recompute), as torch.utils.checkpoint does it per block. A block is a layer with parameters
/// and the ReLU and max-pool layers right after it (conv, ReLU, max-pool; linear, ReLU). Only each block's output, which
/// is the next block's input, keeps a buffer of its own; what a block makes on the way (the conv's output before the
/// pool, the pool's int32 indices) goes into buffers that all blocks share, so the forward pass of the next block
/// overwrites it. Backward, block by block from the last, first runs the block's forward again from its kept input,
/// which refills the shared buffers, and then the block's backward:
/// <code>
/// forward    block 1: conv1 -> recompute.out0 (ReLU in place) -> pool1.out, indices -> recompute.indices0
///            block 2: conv2 -> recompute.out0 (overwrites block 1's) -> pool2.out, indices -> recompute.indices0
/// backward   block 2: forward of block 2 again from pool1.out; backward of pool2, ReLU, conv2
///            block 1: forward of block 1 again from the images;  backward of pool1, ReLU, conv1
/// </code>
/// The shared buffer in slot k holds, per sample, the largest slot-k buffer of any block; a block with nothing of its own
/// to share (linear, ReLU: its output is the block's output) is not run twice. The kernels are deterministic, so the
/// recomputed values, and so the weights, are bit-identical to a run without --recompute; the cost is one more forward
/// pass through the blocks that share something.
/// </summary>
public static class Recompute
{
    /// <summary>Layers First..Last: a layer with parameters and the ReLU and max-pool layers after it.</summary>
    public readonly record struct Block(int First, int Last);

    /// <summary>The blocks of a stack, in order (layers before the first one with parameters, and Flatten, are in none).</summary>
    public static List<Block> Blocks(IReadOnlyList<Layer> layers)
    {
        var blocks = new List<Block>();
        for (int i = 0; i < layers.Count; i++)
        {
            if (layers[i].ParameterCount == 0) continue;
            int last = i;
            while (last + 1 < layers.Count && layers[last + 1] is Relu or MaxPool2d) last++;
            blocks.Add(new Block(i, last));
            i = last;
        }
        return blocks;
    }

    /// <summary>
    /// Per layer, the shared slot its output goes to (-1: a buffer of its own, or in place) and the slot of its max-pool
    /// indices (-1: none). A layer's output is shared when it is not its block's output.
    /// </summary>
    public static (int[] Output, int[] Indices) Slots(IReadOnlyList<Layer> layers)
    {
        int[] output = Enumerable.Repeat(-1, layers.Count).ToArray(), indices = Enumerable.Repeat(-1, layers.Count).ToArray();
        foreach (var block in Blocks(layers))
        {
            int blockOutput = StepBuffers.Producer(layers, block.Last);
            int outs = 0, pools = 0;
            for (int i = block.First; i <= block.Last; i++)
            {
                if (!layers[i].InPlace && i != blockOutput) output[i] = outs++;
                if (layers[i] is MaxPool2d) indices[i] = pools++;
            }
        }
        return (output, indices);
    }

    /// <summary>The blocks that share a buffer, so that backward runs their forward again.</summary>
    public static List<Block> Recomputed(IReadOnlyList<Layer> layers)
    {
        var (output, indices) = Slots(layers);
        return Blocks(layers).Where(b => Enumerable.Range(b.First, b.Last - b.First + 1).Any(i => output[i] >= 0 || indices[i] >= 0)).ToList();
    }

    /// <summary>Values per sample of each shared slot: float32 outputs and int32 indices (the largest of any block's, per slot).</summary>
    public static (long[] Outputs, long[] Indices) SlotSizes(IReadOnlyList<Layer> layers)
    {
        var (output, indices) = Slots(layers);
        long[] outs = new long[output.DefaultIfEmpty(-1).Max() + 1], idx = new long[indices.DefaultIfEmpty(-1).Max() + 1];
        for (int i = 0; i < layers.Count; i++)
        {
            if (output[i] >= 0) outs[output[i]] = Math.Max(outs[output[i]], layers[i].Out.Size);
            if (indices[i] >= 0) idx[indices[i]] = Math.Max(idx[indices[i]], layers[i].Out.Size);
        }
        return (outs, idx);
    }

    /// <summary>The shared buffers' names: "recompute.out0", "recompute.indices0".</summary>
    public static string OutputName(int slot) => $"recompute.out{slot}";
    public static string IndicesName(int slot) => $"recompute.indices{slot}";
}
