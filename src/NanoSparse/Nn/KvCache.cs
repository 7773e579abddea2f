using NanoSparse.Nn.Parts;

namespace NanoSparse.Nn;

/// <summary>
/// The decoding state of one sequence (batch 1) up to block_size positions: each layer's keys and values
/// (<see cref="IKvCache"/>), plus the working buffers <see cref="Gpt.ForwardCached"/> needs, so decoding allocates
/// nothing.
/// </summary>
public sealed class KvCache
{
    internal KvCache(GptConfig config, IKvCache[] layers, long scratchFloats, long workspaceFloats)
    {
        Config = config;
        Layers = layers;
        int C = config.NEmbd, Tmax = config.BlockSize;
        // The largest buffer (the parts' decode scratch) holds about 4 × block_size × n_embd floats.
        if (scratchFloats > Array.MaxLength)
            throw new ArgumentException($"block_size ({Tmax}) × n_embd ({C}) is too large for a KV cache: its decode scratch needs {scratchFloats} floats (4 × {Tmax} × {C} + {Tmax}), more than the {Array.MaxLength} one array holds");
        X = new float[Tmax * C];
        Ln = new float[Tmax * C];
        Mean = new float[Tmax];
        Rstd = new float[Tmax];
        Branch = new float[Tmax * C];
        Scratch = new float[scratchFloats];
        Workspace = workspaceFloats == 0 ? [] : new float[workspaceFloats];
        Logits = new float[config.VocabSize];
    }

    public GptConfig Config { get; }
    /// <summary>Positions filled so far.</summary>
    public int Length { get; internal set; }
    public int Capacity => Config.BlockSize;
    /// <summary>Each layer's keys and values.</summary>
    public IReadOnlyList<IKvCache> Layers { get; }

    /// <summary>Bytes the layers' caches hold for the positions filled so far (keys, values and any index).</summary>
    public long Bytes => Layers.Sum(l => l.Bytes(Length));

    /// <summary>Forgets all positions (the next ForwardCached starts at position 0).</summary>
    public void Reset() => Length = 0;

    internal float[] X { get; }        // (block_size, C) the residual stream of the new positions
    internal float[] Ln { get; }       // (block_size, C) a LayerNorm's output
    internal float[] Mean { get; }
    internal float[] Rstd { get; }
    internal float[] Branch { get; }   // (block_size, C) attention's or the MLP's output before the residual add
    internal float[] Scratch { get; }  // the parts' decode scratch
    internal float[] Workspace { get; }// the Linear weights' workspace
    internal float[] Logits { get; }   // (V) of the last new position
}
