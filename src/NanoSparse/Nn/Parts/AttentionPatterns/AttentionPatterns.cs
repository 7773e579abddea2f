using NanoSparse.Kernels;

namespace NanoSparse.Nn.Parts.AttentionPatterns;

/// <summary>
/// The attention patterns a config can name (GptConfig.Attention) and the part each builds: "dense" is nanoGPT's
/// <see cref="CausalSelfAttention"/> (untouched); the others are <see cref="SparseSelfAttention"/> with the pattern's
/// parameters from the config (attn_window, attn_block, attn_local, attn_global, attn_stride, attn_topk).
/// </summary>
public static class AttentionPatternRegistry
{
    public static readonly IReadOnlyList<string> Names = ["dense", "window", "block", "topk", "nsa"];

    public static bool IsRegistered(string? name) => name is null || Names.Contains(name);

    /// <summary>The pattern a config names, its parameters filled in (defaults: attn_local 1, NSA's attn_stride = attn_block).</summary>
    public static SparsePattern Pattern(GptConfig config)
    {
        string name = config.Attention ?? "dense";
        return name switch
        {
            "dense" => new SparsePattern(AttentionKind.Dense),
            "window" => new SparsePattern(AttentionKind.Window, Window: config.AttnWindow),
            "block" => new SparsePattern(AttentionKind.Block, Block: config.AttnBlock, Local: config.AttnLocal == 0 ? 1 : config.AttnLocal,
                Global: config.AttnGlobal, Stride: config.AttnStride),
            "topk" => new SparsePattern(AttentionKind.TopK, Block: config.AttnBlock, TopK: config.AttnTopK),
            "nsa" => new SparsePattern(AttentionKind.Nsa, Window: config.AttnWindow, Block: config.AttnBlock,
                Stride: config.AttnStride == 0 ? config.AttnBlock : config.AttnStride, TopK: config.AttnTopK),
            _ => throw new ArgumentException($"attention (\"{name}\") must be one of: {string.Join(", ", Names)}"),
        };
    }

    /// <summary>Throws an ArgumentException naming the field when the config's pattern or its parameters are out of range.</summary>
    public static void Validate(GptConfig config) => Pattern(config).Validate(config.BlockSize, config.HeadSize);

    /// <summary>The attention part of one block for the config's pattern.</summary>
    public static IAttention Create(GptConfig config, string name, ILinearWeight cAttn, ILinearWeight cProj, BufferLayout layout)
    {
        var pattern = Pattern(config);
        if (Gated.GateSettings.GatesHeads(config)) return new Gated.GatedSelfAttention(config, name, cAttn, cProj, layout);
        return pattern.Kind == AttentionKind.Dense
            ? new CausalSelfAttention(config, name, cAttn, cProj, layout)
            : new SparseSelfAttention(config, pattern, name, cAttn, cProj, layout);
    }
}
