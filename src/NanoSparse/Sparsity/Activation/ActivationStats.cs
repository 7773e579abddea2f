using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;

namespace NanoSparse.Sparsity.Activation;

/// <summary>Per-layer activation sparsity of the MLP hidden activation a = act(c_fc(x)) over some positions.</summary>
/// <param name="Zeros">per layer: the fraction of elements of a that are exactly 0.</param>
/// <param name="NearZeros">per layer: the fraction with |a| &lt; Epsilon (what a GELU model has instead of zeros).</param>
/// <param name="Positions">positions (tokens) counted.</param>
public sealed record ActivationSparsityReport(IReadOnlyList<double> Zeros, IReadOnlyList<double> NearZeros, float Epsilon, long Positions)
{
    public double MeanZeros => Zeros.Count == 0 ? 0 : Zeros.Average();
    public double MeanNearZeros => NearZeros.Count == 0 ? 0 : NearZeros.Average();
}

/// <summary>
/// Counts the zeros of each layer's MLP hidden activation (Mlp.GeluOutputs, the input of c_proj) after forward passes.
/// The mean over layers weights layers equally (they have the same width unless structured pruning changed it).
/// </summary>
public sealed class ActivationStats
{
    readonly Mlp[] _mlps;
    readonly long[] _zeros, _near, _elements;
    long _positions;

    public ActivationStats(Gpt model, float epsilon)
    {
        if (!(epsilon > 0 && float.IsFinite(epsilon))) throw new ArgumentOutOfRangeException(nameof(epsilon), epsilon, "epsilon must be finite and > 0");
        _mlps = ActivationL1.Mlps(model);
        if (_mlps.Length != model.Blocks.Count)
            throw new ArgumentException($"activation statistics need every block's feed-forward to be an MLP; {model.Blocks.Count - _mlps.Length} of {model.Blocks.Count} are not");
        Epsilon = epsilon;
        _zeros = new long[_mlps.Length];
        _near = new long[_mlps.Length];
        _elements = new long[_mlps.Length];
    }

    public float Epsilon { get; }

    /// <summary>Adds the kept activations of <paramref name="model"/>'s last forward pass (all B·T positions).</summary>
    public void Add(Gpt model)
    {
        for (int l = 0; l < _mlps.Length; l++)
        {
            var a = model.KeptActivation(_mlps[l].GeluOutputs);
            _zeros[l] += Kernels.ActivationZeros.CountZeros(a);
            _near[l] += Kernels.ActivationZeros.CountBelow(a, Epsilon);
            _elements[l] += a.Length;
        }
        _positions += (long)model.BatchSize * model.SeqLen;
    }

    public ActivationSparsityReport Report() => new(
        _zeros.Select((z, l) => _elements[l] == 0 ? 0 : (double)z / _elements[l]).ToArray(),
        _near.Select((z, l) => _elements[l] == 0 ? 0 : (double)z / _elements[l]).ToArray(), Epsilon, _positions);

    /// <summary>The mean over layers of the exact-zero fraction of the last forward pass alone (the training log's act_sparsity).</summary>
    public static double LastPassZeros(Gpt model)
    {
        var mlps = ActivationL1.Mlps(model);
        if (mlps.Length == 0) return double.NaN;
        double sum = 0;
        foreach (var mlp in mlps)
        {
            var a = model.KeptActivation(mlp.GeluOutputs);
            sum += (double)Kernels.ActivationZeros.CountZeros(a) / a.Length;
        }
        return sum / mlps.Length;
    }

    /// <summary>
    /// Activation sparsity over <paramref name="batches"/> batches of <paramref name="file"/> (eval mode), drawn as the
    /// evaluator draws them (same seed: the same batches as the val loss).
    /// </summary>
    public static ActivationSparsityReport Measure(Gpt model, TokenFile file, int batches, ulong seed, float epsilon, Action<int>? progress = null)
    {
        if (batches <= 0) throw new ArgumentOutOfRangeException(nameof(batches), batches, "batches must be positive");
        var stats = new ActivationStats(model, epsilon);
        var sampler = new BatchSampler(file, model.BatchSize, model.SeqLen, seed);
        var x = new int[model.BatchSize * model.SeqLen];
        var y = new int[x.Length];
        for (int i = 0; i < batches; i++)
        {
            sampler.Next(x, y);
            model.Forward(x, default, training: false);
            stats.Add(model);
            progress?.Invoke(i + 1);
        }
        return stats.Report();
    }
}
