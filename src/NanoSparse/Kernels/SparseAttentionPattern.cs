namespace NanoSparse.Kernels;

/// <summary>The attention patterns the sparse kernels implement (dense causal runs here too, as FlashAttention).</summary>
public enum AttentionKind { Dense, Window, Block, TopK, Nsa }

/// <summary>
/// One attention pattern and its parameters (all causal: query t sees keys j ≤ t, and among those):
///   Dense:  every key.
///   Window: keys t − Window &lt; j ≤ t (local attention of Window positions).
///   Block:  key blocks of Block positions: the query's own block and the Local − 1 before it, the first Global blocks,
///           and, when Stride &gt; 0, every block kb with kb mod Stride = Stride − 1 (Longformer / BigBird style, fixed).
///   TopK:   the query's own block plus the TopK complete earlier blocks whose mean key scores highest against the
///           query (q · mean(K_block)); exact softmax attention over those keys only. The choice is not differentiated.
///   Nsa:    DeepSeek's Native Sparse Attention: three branches per head, each its own softmax, mixed by gates:
///           compressed: keys and values averaged over blocks of Block positions every Stride positions (block i covers
///           [i·Stride, i·Stride + Block), seen by queries t ≥ i·Stride + Block − 1);
///           selected: the query's own block plus the TopK earlier blocks of Block positions with the largest summed
///           compressed attention probability (over the compressed blocks that overlap them);
///           window: keys t − Window &lt; j ≤ t.
///           y = g_cmp · o_cmp + g_slc · o_slc + g_win · o_win, the gates (per position and head) given by the caller.
/// Block sizes are multiples of 16 (the kernels skip work in 16-key chunks).
/// </summary>
public readonly record struct SparsePattern(AttentionKind Kind, int Window = 0, int Block = 0, int Local = 0, int Global = 0,
    int Stride = 0, int TopK = 0)
{
    /// <summary>Floats kept per position between forward and backward for NH heads of total width C (see <see cref="SparseAttention"/>).</summary>
    public int KeptWidth(int C, int NH) => Kind switch
    {
        AttentionKind.TopK => NH + NH * TopK,
        AttentionKind.Nsa => 3 * NH + NH * TopK + 3 * C,
        _ => NH,
    };

    /// <summary>Gate values per position the pattern mixes its branches with (NSA: 3 per head), 0 for the others.</summary>
    public int Gates(int NH) => Kind == AttentionKind.Nsa ? 3 * NH : 0;

    /// <summary>Number of NSA compressed blocks among T keys.</summary>
    public int CompressedBlocks(int T) => T < Block ? 0 : (T - Block) / Stride + 1;

    /// <summary>Throws an ArgumentException naming the first parameter out of range for a context of T positions and head size hs.</summary>
    public void Validate(int T, int hs)
    {
        if (Kind == AttentionKind.Dense) return;
        if (hs % 16 != 0)
            throw new ArgumentException($"attention \"{Name}\" needs a head size (n_embd / n_head) that is a multiple of 16, got {hs}");
        if (Kind is AttentionKind.Window or AttentionKind.Nsa && (Window <= 0 || Window > T))
            throw new ArgumentException($"attn_window ({Window}) must lie in [1, {T}] (block_size)");
        if (Kind is AttentionKind.Block or AttentionKind.TopK or AttentionKind.Nsa)
        {
            if (Block <= 0 || Block > T)
                throw new ArgumentException($"attn_block ({Block}) must lie in [1, {T}] (block_size)");
            if (Block % 16 != 0)
                throw new ArgumentException($"attn_block ({Block}) must be a multiple of 16");
        }
        if (Kind == AttentionKind.Block)
        {
            if (Local < 1) throw new ArgumentException($"attn_local ({Local}) must be at least 1 (the query's own block)");
            if (Global < 0) throw new ArgumentException($"attn_global ({Global}) must not be negative");
            if (Stride < 0) throw new ArgumentException($"attn_stride ({Stride}) must not be negative (0: no strided blocks)");
        }
        if (Kind is AttentionKind.TopK or AttentionKind.Nsa)
        {
            int blocks = T / Block;
            if (TopK < 1 || TopK > blocks)
                throw new ArgumentException($"attn_topk ({TopK}) must lie in [1, {blocks}]: the blocks of {Block} keys in block_size {T}");
        }
        if (Kind == AttentionKind.Nsa && (Stride < 1 || Stride > Block || Block % Stride != 0))
            throw new ArgumentException($"attn_stride ({Stride}) must divide attn_block ({Block}) (the compression stride)");
    }

    public string Name => Kind switch
    {
        AttentionKind.Dense => "dense",
        AttentionKind.Window => "window",
        AttentionKind.Block => "block",
        AttentionKind.TopK => "topk",
        _ => "nsa",
    };

    /// <summary>The pattern and its parameters in one line, e.g. "nsa (block 64, stride 32, top 16, window 256)".</summary>
    public string Describe() => Kind switch
    {
        AttentionKind.Dense => "dense",
        AttentionKind.Window => $"window ({Window})",
        AttentionKind.Block => $"block ({Block}: local {Local}, global {Global}, stride {Stride})",
        AttentionKind.TopK => $"topk (block {Block}, top {TopK})",
        _ => $"nsa (block {Block}, stride {Stride}, top {TopK}, window {Window})",
    };
}
