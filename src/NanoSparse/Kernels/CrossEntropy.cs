using System.Numerics.Tensors;

namespace NanoSparse.Kernels;

/// <summary>
/// Cross-entropy fused with log-softmax over the vocabulary, mean over the N = B·T positions
/// (F.cross_entropy(logits.view(-1, V), targets.view(-1))):
///   loss_n = logsumexp(logits[n]) − logits[n, target_n],  loss = (1/N) Σ_n loss_n.
/// </summary>
public static unsafe class CrossEntropy
{
    struct Args { public float* Logits, Lse, Losses; public int* Targets; public int V; public float Scale; }

    /// <summary>
    /// From logits (N, V) and targets (N) writes losses (N) and lse (N) (kept for the backward pass);
    /// returns the mean loss, summed in double.
    /// </summary>
    public static float Forward(Span<float> losses, Span<float> lse, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets,
        int N, int V) => (float)(ForwardSum(losses, lse, logits, targets, N, V) / N);

    /// <summary>As <see cref="Forward"/>, but returns the sum of the N losses in double (for a slice of a batch).</summary>
    public static double ForwardSum(Span<float> losses, Span<float> lse, ReadOnlySpan<float> logits, ReadOnlySpan<int> targets,
        int N, int V)
    {
        Check.Length(logits, (long)N * V, nameof(logits));
        Check.Length(targets, N, nameof(targets));
        Check.Length(losses, N, nameof(losses));
        Check.Length(lse, N, nameof(lse));
        for (int n = 0; n < N; n++)
            if ((uint)targets[n] >= (uint)V)
                throw new ArgumentOutOfRangeException(nameof(targets), targets[n], $"target at index {n} must lie in [0, {V}) (vocab_size)");
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
            // Σ exp(x − max) without a temporary: a short scalar loop is fine for one row (V is small here).
            float sum = 0;
            for (int v = 0; v < V; v++) sum += MathF.Exp(row[v] - max);
            float lse = max + MathF.Log(sum);
            a.Lse[n] = lse;
            a.Losses[n] = lse - row[a.Targets[n]];
        }
    }

    /// <summary>
    /// Backward with dloss = 1 for the mean loss, IN PLACE: logits (N, V) become
    /// dlogits = (softmax(logits) − onehot(target)) / meanOver. lse from <see cref="Forward"/>. meanOver is the number
    /// of positions the mean runs over: N (0 means N), or the whole batch's count when these N rows are a slice of it.
    /// </summary>
    public static void BackwardInPlace(Span<float> logits, ReadOnlySpan<float> lse, ReadOnlySpan<int> targets, int N, int V,
        int meanOver = 0)
    {
        if (meanOver < 0) throw new ArgumentOutOfRangeException(nameof(meanOver), meanOver, "must be 0 (meaning N) or positive");
        Check.Length(logits, (long)N * V, nameof(logits));
        fixed (float* l = logits, s = lse)
        fixed (int* t = targets)
        {
            var a = new Args { Logits = l, Lse = s, Targets = t, V = V, Scale = 1f / (meanOver == 0 ? N : meanOver) };
            RowParallel.For(N, 4L * V, ref a, &BackwardRows);
        }
    }

    static void BackwardRows(ref Args a, int start, int end)
    {
        int V = a.V;
        for (int n = start; n < end; n++)
        {
            var row = new Span<float>(a.Logits + (long)n * V, V);
            // in the forward pass this was: loss_n = lse_n - logits[n, target]
            TensorPrimitives.Subtract(row, a.Lse[n], row);
            TensorPrimitives.Exp(row, row);                      // softmax
            TensorPrimitives.Multiply(row, a.Scale, row);
            row[a.Targets[n]] -= a.Scale;
        }
    }
}
