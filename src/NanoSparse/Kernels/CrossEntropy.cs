using System.Numerics.Tensors;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Cross-entropy fused with log-softmax over the vocabulary, mean over the N = B·T positions
/// (F.cross_entropy(logits.view(-1, V), targets.view(-1))):
///   loss_n = logsumexp(logits[n]) − logits[n, target_n],  loss = (1/N) Σ_n loss_n.
/// A target of <see cref="IgnoreTarget"/> (PyTorch's ignore_index) gives loss_n = 0 and a zero gradient row, and the
/// mean runs over the other positions only (over max(1, count), so a slice with no target gives 0, not NaN).
/// </summary>
public static unsafe class CrossEntropy
{
    /// <summary>The target id of a position that carries no loss (F.cross_entropy(..., ignore_index=-1)).</summary>
    public const int IgnoreTarget = -1;

    /// <summary>The number of targets that are not <see cref="IgnoreTarget"/>.</summary>
    public static int CountTargets(ReadOnlySpan<int> targets)
    {
        int count = 0;
        foreach (int t in targets) if (t != IgnoreTarget) count++;
        return count;
    }

    struct Args { public float* Logits, Lse, Losses; public int* Targets; public int V; public float Scale; }

    /// <summary>
    /// From logits (N, V) and targets (N) writes losses (N) and lse (N) (kept for the backward pass);
    /// returns the mean loss over the targets that are not ignored, summed in double.
    /// </summary>
    public static float Forward(Span<float> losses, Span<float> lse, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets,
        int N, int V) => (float)(ForwardSum(losses, lse, logits, targets, N, V) / Math.Max(1, CountTargets(targets.Slice(0, N))));

    /// <summary>As <see cref="Forward"/>, but returns the sum of the N losses in double (for a slice of a batch).</summary>
    public static double ForwardSum(Span<float> losses, Span<float> lse, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets,
        int N, int V)
    {
        Check.Length(logits, (long)N * V, nameof(logits));
        Check.Length(targets, N, nameof(targets));
        Check.Length(losses, N, nameof(losses));
        Check.Length(lse, N, nameof(lse));
        for (int n = 0; n < N; n++)
            if ((uint)targets[n] >= (uint)V && targets[n] != IgnoreTarget)
                throw new ArgumentOutOfRangeException(nameof(targets), targets[n], $"target at index {n} must lie in [0, {V}) (vocab_size) or be {IgnoreTarget} (ignored)");
        fixed (float* l = logits, s = lse, o = losses)
        fixed (int* t = targets)
        {
            var a = new Args { Logits = l, Lse = s, Losses = o, Targets = t, V = V };
            RowParallel.For(N, 4L * V, ref a, &ForwardRows);
        }
        double sum = 0;
        for (int n = 0; n < N; n++) sum += losses[n];
        return sum;
    }

    static void ForwardRows(ref Args a, int start, int end)
    {
        int V = a.V;
        for (int n = start; n < end; n++)
        {
            var row = new ReadOnlySpan<float>(a.Logits + (long)n * V, V);
            float max = TensorPrimitives.Max(row);
            float lse = max + MathF.Log(SumExp(a.Logits + (long)n * V, V, max));
            a.Lse[n] = lse;
            int target = a.Targets[n];
            a.Losses[n] = target == IgnoreTarget ? 0f : lse - row[target];
        }
    }

    /// <summary>Σ exp(x[v] − max) over a row, 16 lanes at a time without a temporary (a scalar exp per logit was most
    /// of the forward's cost). The last partial vector is the row's last 16 values with the already-counted lanes
    /// masked off.</summary>
    static float SumExp(float* x, int V, float max)
    {
        if (!Vector512.IsHardwareAccelerated || V < 16)
        {
            float total = 0;
            for (int v = 0; v < V; v++) total += MathF.Exp(x[v] - max);
            return total;
        }
        var m = Vector512.Create(max);
        var acc = Vector512<float>.Zero;
        int i = 0;
        for (; i + 16 <= V; i += 16) acc += VectorExp.Exp(Vector512.Load(x + i) - m);
        if (i < V)
        {
            var tail = VectorExp.Exp(Vector512.Load(x + V - 16) - m);
            var fresh = Vector512.GreaterThanOrEqual(Iota, Vector512.Create(i - (V - 16)));   // lanes not yet counted
            acc += Vector512.ConditionalSelect(fresh.AsSingle(), tail, Vector512<float>.Zero);
        }
        return Vector512.Sum(acc);
    }

    static readonly Vector512<int> Iota = Vector512.Create(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);

    /// <summary>
    /// Backward with dloss = 1 for the mean loss, IN PLACE: logits (N, V) become
    /// dlogits = (softmax(logits) − onehot(target)) / meanOver, and 0 in the rows whose target is ignored. lse from
    /// <see cref="Forward"/>. meanOver is the number of positions the mean runs over: 0 means the targets of these N
    /// rows that are not ignored (N when none is; at least 1), or the whole batch's count when these rows are a slice of it.
    /// </summary>
    public static void BackwardInPlace(Span<float> logits, ReadOnlySpan<float> lse, ReadOnlySpan<int> targets, int N, int V,
        int meanOver = 0)
    {
        if (meanOver < 0) throw new ArgumentOutOfRangeException(nameof(meanOver), meanOver, "must be 0 (meaning N) or positive");
        Check.Length(logits, (long)N * V, nameof(logits));
        fixed (float* l = logits, s = lse)
        fixed (int* t = targets)
        {
            var a = new Args { Logits = l, Lse = s, Targets = t, V = V, Scale = 1f / (meanOver == 0 ? Math.Max(1, CountTargets(targets.Slice(0, N))) : meanOver) };
            RowParallel.For(N, 4L * V, ref a, &BackwardRows);
        }
    }

    static void BackwardRows(ref Args a, int start, int end)
    {
        int V = a.V;
        for (int n = start; n < end; n++)
        {
            var row = new Span<float>(a.Logits + (long)n * V, V);
            if (a.Targets[n] == IgnoreTarget)
            {
                row.Clear();
                continue;
            }
            // in the forward pass this was: loss_n = lse_n - logits[n, target]
            TensorPrimitives.Subtract(row, a.Lse[n], row);
            TensorPrimitives.Exp(row, row);                      // softmax
            TensorPrimitives.Multiply(row, a.Scale, row);
            row[a.Targets[n]] -= a.Scale;
        }
    }
}
