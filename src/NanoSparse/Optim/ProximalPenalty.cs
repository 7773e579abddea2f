namespace NanoSparse.Optim;

/// <summary>
/// L1 and elastic-net penalties λ1·|w| + (λ2/2)·w² applied by their proximal operator after each optimizer step
/// (proximal gradient: the smooth loss takes the AdamW step, the penalty its exact prox with step size lr):
///   w ← sign(w) · max(|w| − lr·λ1, 0) / (1 + lr·λ2)
/// The soft-threshold sets small weights to exactly 0 (the L1 part); the division is the prox of the L2 part
/// (a proximal L2 term, separate from AdamW's decoupled weight decay, which still applies). Allocates nothing.
/// </summary>
public readonly record struct ProximalPenalty(float L1, float L2)
{
    public bool IsActive => L1 > 0 || L2 > 0;

    /// <summary>Applies the prox with step size <paramref name="learningRate"/> to <paramref name="weights"/> in place.</summary>
    public void Apply(Span<float> weights, float learningRate)
    {
        float threshold = learningRate * L1;
        float shrink = 1f / (1f + learningRate * L2);
        for (int i = 0; i < weights.Length; i++)
        {
            float w = weights[i];
            float magnitude = MathF.Abs(w) - threshold;
            weights[i] = magnitude > 0 ? MathF.CopySign(magnitude * shrink, w) : 0f;
        }
    }
}
