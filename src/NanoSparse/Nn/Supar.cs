namespace NanoSparse.Nn;

/// <summary>
/// SμPar, the sparse maximal update parameterisation (Cerebras: Dey et al. 2024, "Sparse maximal update
/// parameterization: a holistic approach to sparse training dynamics", on top of µP, Yang et al. 2021). A model is
/// described against a base model whose hyperparameters were tuned: width multiplier m_d = n_embd / base_width and,
/// per hidden weight, density multiplier m_ρ = density / base_density. Then
///   hidden weights (the blocks' Linear weights): init variance σ²_base / (m_d · m_ρ), Adam learning rate η / (m_d · m_ρ)
///   embeddings (wte, wpe), LayerNorms, biases: as the base model (µP with Adam: init and learning rate unchanged)
///   output logits: multiplied by 1 / m_d (µP's output multiplier; the lm_head is tied to wte)
/// so that each layer's update keeps the size it had in the base model whatever the width and the density
/// (a hidden neuron sums m_d · m_ρ times more active inputs). The attention logits keep nanoGPT's 1/√head_size: the
/// sweeps here vary density at fixed width (m_d = 1), where µP's 1/head_size changes nothing relative to the base.
/// </summary>
public sealed class Supar
{
    readonly Func<Parameter, double> _density;

    /// <param name="width">the model's n_embd</param>
    /// <param name="baseWidth">the base model's n_embd (&gt; 0)</param>
    /// <param name="baseDensity">the base model's weight density, in (0, 1]</param>
    /// <param name="density">the density of a hidden weight (fraction of its positions in use)</param>
    public Supar(int width, int baseWidth, double baseDensity, Func<Parameter, double> density)
    {
        if (width <= 0) throw new ArgumentOutOfRangeException(nameof(width), width, "n_embd must be positive");
        if (baseWidth <= 0) throw new ArgumentOutOfRangeException(nameof(baseWidth), baseWidth, "supar_base_width must be positive");
        if (!(baseDensity > 0 && baseDensity <= 1)) throw new ArgumentOutOfRangeException(nameof(baseDensity), baseDensity, "supar_base_density must be in (0, 1]");
        WidthMultiplier = (double)width / baseWidth;
        BaseDensity = baseDensity;
        _density = density ?? throw new ArgumentNullException(nameof(density));
    }

    /// <summary>m_d = n_embd / base_width.</summary>
    public double WidthMultiplier { get; }
    public double BaseDensity { get; }
    /// <summary>The model's logit_scale: 1 / m_d.</summary>
    public float LogitScale => (float)(1.0 / WidthMultiplier);

    /// <summary>Whether <paramref name="p"/> is a hidden weight (a block's Linear weight, the parameters with a layout).</summary>
    public static bool IsHidden(Parameter p) => p.Layout is not null;

    /// <summary>m_ρ of a hidden weight: its density / base density.</summary>
    public double DensityMultiplier(Parameter p) => _density(p) / BaseDensity;

    /// <summary>1 / (m_d · m_ρ) for a hidden weight, 1 for every other parameter: the Adam learning-rate factor.</summary>
    public double LearningRateFactor(Parameter p) => IsHidden(p) ? 1.0 / (WidthMultiplier * DensityMultiplier(p)) : 1.0;

    /// <summary>√(1 / (m_d · m_ρ)) for a hidden weight, 1 otherwise: the init std factor (variance 1 / (m_d · m_ρ)).</summary>
    public double InitStdFactor(Parameter p) => Math.Sqrt(LearningRateFactor(p));

    /// <summary>Scales the freshly initialised hidden weights of <paramref name="model"/> (N(0, σ²) → N(0, σ² / (m_d · m_ρ))).</summary>
    public void ScaleInitialization(Gpt model)
    {
        foreach (var p in model.Parameters)
        {
            float factor = (float)InitStdFactor(p);
            if (factor != 1f) System.Numerics.Tensors.TensorPrimitives.Multiply(p.Value.Span, factor, p.Value.Span);
        }
    }
}
