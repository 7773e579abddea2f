using NanoSparse.Kernels;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>
/// A reference sparse layout for tests: the kept positions of W (Out, In) are stored row-major, and every product
/// expands W into a dense matrix in the workspace and runs the dense Linear kernel (masked-dense: fine as a test
/// reference, never a fast path). It exercises what a real sparse layout needs from the model: fewer stored values
/// than Out·In, a workspace per call, and gradients at the stored positions only.
/// </summary>
sealed class MaskedLinearWeight : ILinearWeight
{
    public const string Name = "test-masked";
    static readonly object Gate = new();
    static bool _registered;

    readonly int[] _positions;   // flat indices o·In + i of the stored values, ascending

    public MaskedLinearWeight(int outFeatures, int inFeatures, Func<int, int, bool> keep)
    {
        OutFeatures = outFeatures;
        InFeatures = inFeatures;
        var positions = new List<int>();
        for (int o = 0; o < outFeatures; o++)
            for (int i = 0; i < inFeatures; i++)
                if (keep(o, i)) positions.Add(o * inFeatures + i);
        _positions = positions.ToArray();
    }

    /// <summary>
    /// Registers the layout as "test-masked": from a pattern when the spec has one; else "test-masked:random" keeps
    /// each position with probability 1/2 drawn from the spec's Rng, "test-masked:M" keeps (7·o + 3·i) mod M ≠ 0,
    /// and a bare "test-masked" is "test-masked:4" (3/4 kept).
    /// </summary>
    public static void EnsureRegistered()
    {
        lock (Gate)
        {
            if (_registered) return;
            LinearWeightLayouts.Register(Name, spec =>
            {
                if (spec.HasPattern)
                    return new MaskedLinearWeight(spec.OutFeatures, spec.InFeatures, (o, i) => spec.Pattern.Span[o * spec.InFeatures + i] != 0);
                string argument = spec.Arguments.Count > 0 ? spec.Arguments[0] : "4";
                if (argument == "random")
                {
                    var rng = spec.Rng ?? throw new ArgumentException("test-masked:random needs an Rng");
                    return new MaskedLinearWeight(spec.OutFeatures, spec.InFeatures, (o, i) => rng.NextDouble() < 0.5);
                }
                if (!int.TryParse(argument, out int m) || m < 2)
                    throw new ArgumentException($"test-masked:M: M ('{argument}') must be an integer of at least 2");
                return new MaskedLinearWeight(spec.OutFeatures, spec.InFeatures, (o, i) => (o * 7 + i * 3) % m != 0);
            });
            _registered = true;
        }
    }

    public string Layout => Name;
    public int OutFeatures { get; }
    public int InFeatures { get; }
    public int StoredCount => _positions.Length;

    public long WorkspaceFloats(int rows) => 2L * OutFeatures * InFeatures;   // dense W, dense dW

    public void Forward(Span<float> y, ReadOnlySpan<float> x, ReadOnlySpan<float> values, ReadOnlySpan<float> bias,
        ReadOnlySpan<float> residual, int rows, Span<float> workspace)
    {
        var w = workspace.Slice(0, OutFeatures * InFeatures);
        ToDense(values, w);
        Linear.Forward(y, x, w, bias, rows, InFeatures, OutFeatures, residual);
    }

    public void Backward(Span<float> dx, Span<float> dValues, Span<float> dBias, ReadOnlySpan<float> dy, ReadOnlySpan<float> x,
        ReadOnlySpan<float> values, ReadOnlySpan<float> dxScale, int rows, Span<float> workspace)
    {
        int size = OutFeatures * InFeatures;
        var w = workspace.Slice(0, size);
        var dw = workspace.Slice(size, size);
        ToDense(values, w);
        dw.Clear();
        Linear.Backward(dx, dw, dBias, dy, x, w, rows, InFeatures, OutFeatures, dxScale);
        for (int k = 0; k < _positions.Length; k++) dValues[k] += dw[_positions[k]];
    }

    public void ToDense(ReadOnlySpan<float> values, Span<float> dense)
    {
        dense.Slice(0, OutFeatures * InFeatures).Clear();
        for (int k = 0; k < _positions.Length; k++) dense[_positions[k]] = values[k];
    }
}
