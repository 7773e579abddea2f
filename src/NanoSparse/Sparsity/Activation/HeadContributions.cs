using System.Globalization;
using NanoSparse.Kernels;
using NanoSparse.Sparsity.Dst;

namespace NanoSparse.Sparsity.Activation;

/// <summary>
/// What each attention head adds to the residual stream at each position, the quantity Deja Vu's head predictors are
/// trained to rank (Liu et al. 2023, §4: a head whose output is small for this token can be skipped):
///   o_h = W_proj[:, h·hs .. (h+1)·hs] · y_h          (C) head h's share of c_proj's output (bias excluded)
///   n_h = ‖o_h‖₂                                      one norm per head and position
/// and the labels made from the norms of a position's NH heads:
///   top:F    the round(F·NH) heads (at least 1) with the largest n_h
///   share:F  the heads with n_h ≥ F · Σ_h n_h  (at least the largest one)
/// </summary>
public static class HeadContributions
{
    /// <summary>("top" or "share", F) of a head label; anything else is a one-line error naming the value.</summary>
    public static (string Kind, double Fraction) ParseLabel(string label)
    {
        foreach (var kind in new[] { "top", "share" })
            if (label.StartsWith(kind + ":", StringComparison.Ordinal)
                && double.TryParse(label.AsSpan(kind.Length + 1), NumberStyles.Float, CultureInfo.InvariantCulture, out double f) && f > 0 && f < 1)
                return (kind, f);
        throw new ArgumentException($"head label \"{label}\" must be \"top:F\" (the F·NH heads with the largest output) or \"share:F\" (the heads whose output norm is at least F of the heads' total), 0 < F < 1");
    }

    /// <summary>c_proj (C, A) cut into per-head blocks (NH, C, hs): block h row c = W_proj[c, h·hs .. (h+1)·hs].</summary>
    public static float[] HeadBlocks(ReadOnlySpan<float> wProj, int C, int A, int headSize)
    {
        Check.Length(wProj, (long)C * A, nameof(wProj));
        int NH = A / headSize;
        var blocks = new float[C * A];
        for (int h = 0; h < NH; h++)
            for (int c = 0; c < C; c++)
                wProj.Slice(c * A + h * headSize, headSize).CopyTo(blocks.AsSpan((h * C + c) * headSize, headSize));
        return blocks;
    }

    /// <summary>
    /// norms (N, NH) = ‖o_h‖₂ of every position and head, from the heads' attention outputs y (N, A) and c_proj's
    /// per-head blocks (<see cref="HeadBlocks"/>). One product per head: (N, hs) · (C, hs)ᵀ, as dense as c_proj itself.
    /// </summary>
    public static void Norms(Span<float> norms, ReadOnlySpan<float> y, float[] blocks, int N, int C, int A, int headSize)
    {
        int NH = A / headSize;
        Check.Length(norms, (long)N * NH, nameof(norms));
        Check.Length(y, (long)N * A, nameof(y));
        var yh = new float[N * headSize];
        var oh = new float[N * C];
        for (int h = 0; h < NH; h++)
        {
            for (int n = 0; n < N; n++) y.Slice(n * A + h * headSize, headSize).CopyTo(yh.AsSpan(n * headSize, headSize));
            Linear.Forward(oh, yh, blocks.AsSpan(h * C * headSize, C * headSize), default, N, headSize, C);
            for (int n = 0; n < N; n++) norms[n * NH + h] = System.Numerics.Tensors.TensorPrimitives.Norm(oh.AsSpan(n * C, C));
        }
    }

    /// <summary>labels (N, NH) in {0, 1} from norms (N, NH) by the head label (see the class summary).</summary>
    public static void Labels(ReadOnlySpan<float> norms, Span<byte> labels, int N, int NH, string label)
    {
        var (kind, f) = ParseLabel(label);
        labels.Slice(0, N * NH).Clear();
        var scratch = new float[NH];
        var chosen = new int[NH];
        int k = Math.Clamp((int)Math.Round(f * NH), 1, NH);
        for (int n = 0; n < N; n++)
        {
            var row = norms.Slice(n * NH, NH);
            var out_ = labels.Slice(n * NH, NH);
            if (kind == "top")
            {
                TopK.Largest(row, k, scratch, chosen);
                for (int i = 0; i < k; i++) out_[chosen[i]] = 1;
                continue;
            }
            float total = System.Numerics.Tensors.TensorPrimitives.Sum(row), bar = (float)(f * total);
            int best = System.Numerics.Tensors.TensorPrimitives.IndexOfMax(row);
            for (int h = 0; h < NH; h++) if (row[h] >= bar || h == best) out_[h] = 1;
        }
    }
}
