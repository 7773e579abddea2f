namespace NanoSparse.Nn.Parts;

/// <summary>
/// Rotary position embedding (RoPE; Su et al. 2021, "RoFormer"), in the half-split layout of GPT-NeoX and Llama:
/// per head of hs entries and position p, for i &lt; hs/2 with θ_i = base^(−2i/hs),
///   q'_i        = q_i · cos(p·θ_i) − q_{i+hs/2} · sin(p·θ_i)
///   q'_{i+hs/2} = q_{i+hs/2} · cos(p·θ_i) + q_i · sin(p·θ_i)
/// and the same for k, so q'·k' depends on the positions only through their difference. An attention part applies it
/// to q and k in place right after c_attn (training pass and decode alike, so the KV cache holds rotated keys); the
/// backward applies the transposed rotation (the rotation by −p·θ_i) to dq and dk. Config switch: rope (default off).
/// </summary>
public static class RotaryEmbedding
{
    public const double Base = 10000;

    /// <summary>
    /// Rotates the q and k thirds of qkv (rows, 3A; A = heads · hs) in place: row r sits at position
    /// firstPosition + r mod seqLen (a training pass: B sequences of seqLen from 0; decode: n rows from the cache's
    /// position). inverse: rotate by the negative angle (the backward of the forward rotation).
    /// </summary>
    public static void Apply(Span<float> qkv, int rows, int seqLen, int firstPosition, int width, int heads, bool inverse = false)
    {
        int hs = width / heads, half = hs / 2;
        if (hs % 2 != 0) throw new ArgumentException($"RoPE needs an even head size, got {hs}", nameof(heads));
        if (qkv.Length < (long)rows * 3 * width) throw new ArgumentException($"qkv holds {qkv.Length} floats, fewer than {rows}·3·{width}", nameof(qkv));
        Span<float> cos = stackalloc float[half], sin = stackalloc float[half];
        Span<double> theta = stackalloc double[half];   // θ_i: the same for every row
        for (int i = 0; i < half; i++) theta[i] = Math.Pow(Base, -2.0 * i / hs);
        for (int r = 0; r < rows; r++)
        {
            int p = firstPosition + r % seqLen;
            for (int i = 0; i < half; i++)
            {
                double angle = p * theta[i];
                cos[i] = (float)Math.Cos(angle);
                sin[i] = (float)(inverse ? -Math.Sin(angle) : Math.Sin(angle));
            }
            // q then k: the first two thirds of the row
            var row = qkv.Slice(r * 3 * width, 2 * width);
            for (int h = 0; h < 2 * heads; h++)
            {
                var x = row.Slice(h * hs, hs);
                for (int i = 0; i < half; i++)
                {
                    float a = x[i], b = x[i + half];
                    x[i] = a * cos[i] - b * sin[i];
                    x[i + half] = b * cos[i] + a * sin[i];
                }
            }
        }
    }
}
