namespace NanoSparse.Nn;

/// <summary>
/// Keys and values of every layer for the positions seen so far of one sequence (batch 1), up to block_size,
/// plus the small working buffers <see cref="Gpt.ForwardCached"/> needs, so decoding allocates nothing.
/// </summary>
public sealed class KvCache
{
    internal KvCache(GptConfig config)
    {
        Config = config;
        int C = config.NEmbd, Tmax = config.BlockSize;
        // The largest buffer (Fch) holds 4 × block_size × n_embd floats; sizes below are int products.
        if (4L * Tmax * C > Array.MaxLength)
            throw new ArgumentException($"block_size ({Tmax}) × n_embd ({C}) is too large for a KV cache: its MLP buffer needs 4 × {Tmax} × {C} = {4L * Tmax * C} floats, more than the {Array.MaxLength} one array holds");
        Keys = new float[config.NLayer][];
        Values = new float[config.NLayer][];
        for (int l = 0; l < config.NLayer; l++)
        {
            Keys[l] = new float[Tmax * C];        // (block_size, C), heads side by side as in qkv
            Values[l] = new float[Tmax * C];
        }
        X = new float[Tmax * C];
        Ln = new float[Tmax * C];
        Mean = new float[Tmax];
        Rstd = new float[Tmax];
        Qkv = new float[Tmax * 3 * C];
        Atty = new float[Tmax * C];
        Tmp = new float[Tmax * C];
        Fch = new float[Tmax * 4 * C];
        Scores = new float[Tmax];
        Logits = new float[config.VocabSize];
    }

    public GptConfig Config { get; }
    /// <summary>Positions filled so far.</summary>
    public int Length { get; internal set; }
    public int Capacity => Config.BlockSize;

    /// <summary>Forgets all positions (the next ForwardCached starts at position 0).</summary>
    public void Reset() => Length = 0;

    internal float[][] Keys { get; }
    internal float[][] Values { get; }
    internal float[] X { get; }
    internal float[] Ln { get; }
    internal float[] Mean { get; }
    internal float[] Rstd { get; }
    internal float[] Qkv { get; }
    internal float[] Atty { get; }
    internal float[] Tmp { get; }
    internal float[] Fch { get; }
    internal float[] Scores { get; }
    internal float[] Logits { get; }
}
