using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Tests.Nn;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>loss_targets: a loss restricted to a set of target tokens, against double-precision references.</summary>
[Collection("KernelThreads")]   // the sharded and the trainer tests set KernelThreads.Max
public sealed class LossTargetsTests : IDisposable
{
    readonly int _savedThreads = KernelThreads.Max;
    TinyDataset? _data;
    TinyDataset Data => _data ??= new TinyDataset();

    public void Dispose()
    {
        KernelThreads.Max = _savedThreads;
        _data?.Dispose();
    }

    // mean over the kept positions of logsumexp(logits[n]) − logits[n, target_n], in double
    static double ReferenceLoss(ReadOnlySpan<float> logits, int[] targets, int V)
    {
        double sum = 0;
        int kept = 0;
        for (int n = 0; n < targets.Length; n++)
        {
            if (targets[n] < 0) continue;
            double max = double.NegativeInfinity;
            for (int v = 0; v < V; v++) max = Math.Max(max, logits[n * V + v]);
            double s = 0;
            for (int v = 0; v < V; v++) s += Math.Exp(logits[n * V + v] - max);
            sum += max + Math.Log(s) - logits[n * V + targets[n]];
            kept++;
        }
        return sum / kept;
    }

    [Theory]
    [InlineData(11)]
    [InlineData(37)]
    public void CrossEntropyOverKeptTargetsMatchesDoubleAndFiniteDifferences(int V)
    {
        int N = 7;
        var r = new Random(3);
        var logits = GradCheck.RandomArray(r, N * V, 4);
        int[] targets = [r.Next(V), -1, r.Next(V), -1, -1, r.Next(V), r.Next(V)];
        var losses = new float[N];
        var lse = new float[N];
        float loss = CrossEntropy.Forward(losses, lse, logits, targets, N, V);
        Assert.Equal(ReferenceLoss(logits, targets, V), loss, 5);
        Assert.Equal(0f, losses[1]);

        var grad = (float[])logits.Clone();
        CrossEntropy.Forward(losses, lse, grad, targets, N, V);
        CrossEntropy.BackwardInPlace(grad, lse, targets, N, V);
        for (int n = 0; n < N; n++)
            if (targets[n] < 0)
                for (int v = 0; v < V; v++) Assert.Equal(0f, grad[n * V + v]);
        GradCheck.Assert("dlogits", logits, grad, () => CrossEntropy.Forward(losses, lse, logits, targets, N, V), eps: 1e-3, atol: 2e-4);
    }

    [Fact]
    public void CrossEntropyWithEveryTargetIgnoredGivesZeroLossAndZeroGradient()
    {
        int N = 3, V = 5;
        var logits = GradCheck.RandomArray(new Random(1), N * V, 2);
        int[] targets = [-1, -1, -1];
        var lse = new float[N];
        Assert.Equal(0f, CrossEntropy.Forward(new float[N], lse, logits, targets, N, V));
        CrossEntropy.BackwardInPlace(logits, lse, targets, N, V);
        Assert.All(logits, g => Assert.Equal(0f, g));
        var ex = Assert.Throws<ArgumentOutOfRangeException>(() => CrossEntropy.Forward(new float[2], new float[2], new float[10], [0, -2], 2, V));
        Assert.Contains("index 1", ex.Message);
    }

    static Gpt TinyModel(int B, int T)
    {
        var gpt = new Gpt(new GptConfig { NLayer = 2, NHead = 2, NEmbd = 8, BlockSize = T, VocabSize = 11, Bias = true }, B, T);
        var r = new Random(7);
        foreach (var p in gpt.Parameters)
        {
            var v = p.Value.Span;
            bool lnWeight = p.Name.Contains(".ln_") && p.Name.EndsWith("weight");
            for (int i = 0; i < v.Length; i++) v[i] = (float)((lnWeight ? 1 : 0) + (r.NextDouble() * 2 - 1) * 0.4);
        }
        return gpt;
    }

    static (int[] Tokens, int[] Targets) Batch(int N, int seed)
    {
        var r = new Random(seed);
        return (Enumerable.Range(0, N).Select(_ => r.Next(11)).ToArray(), Enumerable.Range(0, N).Select(_ => r.Next(11)).ToArray());
    }

    [Fact]
    public void GptLossOverSelectedTargetsMatchesDoubleReferenceAndItsGradientFiniteDifferences()
    {
        KernelThreads.Max = 1;
        int B = 2, T = 6;
        var gpt = TinyModel(B, T);
        var (tokens, targets) = Batch(B * T, 5);
        var masked = (int[])targets.Clone();
        int kept = LossTargets.Parse("1-5,8", 11)!.Apply(masked);
        Assert.InRange(kept, 2, B * T - 2);   // the mask keeps some positions and drops others
        Assert.All(masked, t => Assert.True(t == -1 || t is (>= 1 and <= 5) or 8));

        gpt.Forward(tokens, [], training: false);
        double expected = ReferenceLoss(gpt.Logits, masked, 11);
        float loss = gpt.Forward(tokens, masked, training: true);
        Assert.Equal(expected, loss, 5);
        Assert.NotEqual(gpt.Forward(tokens, targets, training: true), loss, 3);   // the mask changes the loss

        double Loss() => gpt.Forward(tokens, masked, training: true);
        Loss();
        gpt.ZeroGrad();
        gpt.Backward();
        var grads = gpt.GradientData.ToArray();
        foreach (var p in gpt.Parameters)
        {
            var x = p.Value.ToArray();
            var analytic = grads.AsSpan(p.Offset, p.Length).ToArray();
            double LossOf()
            {
                x.CopyTo(p.Value);
                return Loss();
            }
            // the mean over a few kept positions is more curved than over all: the dropout test's looser bound
            GradCheck.Assert(p.Name, x, analytic, LossOf, eps: 1e-3, atol: 3e-4, rtol: 3e-2, maxChecks: 10);
        }
    }

    [Fact]
    public void GptMaskedLossAndGradientAreTheSameOnTwoShards()
    {
        int B = 4, T = 5;
        var (tokens, targets) = Batch(B * T, 9);
        // the kept targets fall unevenly on the shards: the mean must run over the whole batch's count
        var masked = targets.Select((t, i) => i < 3 || i % 7 == 0 ? t : -1).ToArray();
        (float Loss, float[] Grads) Run(int threads)
        {
            KernelThreads.Max = threads;
            var gpt = TinyModel(B, T);
            gpt.ZeroGrad();
            float loss = gpt.Forward(tokens, masked, training: true);
            gpt.Backward();
            return (loss, gpt.GradientData.ToArray());
        }
        var one = Run(1);
        var two = Run(2);
        Assert.Equal(one.Loss, two.Loss, 5);
        for (int i = 0; i < one.Grads.Length; i++) Assert.Equal(one.Grads[i], two.Grads[i], 1e-6f + Math.Abs(one.Grads[i]) * 1e-4f);
    }

    [Fact]
    public void ParseSelectsIdsAndInclusiveRanges()
    {
        Assert.Null(LossTargets.Parse("", 11));
        Assert.Null(LossTargets.Parse(null, 11));
        var t = LossTargets.Parse("0, 3-5,10", 11)!;
        Assert.Equal(5, t.Count);
        Assert.Equal(new[] { 0, 3, 4, 5, 10 }, Enumerable.Range(0, 11).Where(t.Contains));
        Assert.False(t.Contains(-1));
        Assert.False(t.Contains(11));
    }

    [Theory]
    [InlineData("abc", "'abc'")]
    [InlineData("5-3", "'5-3'")]
    [InlineData("0-11", "[0, 10]")]
    [InlineData("-1", "'-1'")]
    [InlineData("3,", "part ''")]
    public void BadSpecIsAOneLineErrorNamingTheFieldAndTheValue(string spec, string mentions)
    {
        var ex = Assert.Throws<ArgumentException>(() => LossTargets.Parse(spec, 11));
        Assert.Contains("loss_targets", ex.Message);
        Assert.Contains(mentions, ex.Message);
        Assert.DoesNotContain('\n', ex.Message);
    }

    [Fact]
    public void TrainerLossIsTheMaskedLossOfItsFirstBatchAndResumeIsBitIdentical()
    {
        KernelThreads.Max = 1;
        var config = Data.Config("masked");
        config.Dropout = 0f;
        config.GradientAccumulationSteps = 1;
        config.Prefetch = false;
        config.LossTargets = "1-6";

        // the first iteration's loss: the model's initial weights on the sampler's first batch, masked, in double
        using (var trainer = new Trainer(config))
        {
            var x = new int[config.BatchSize * config.BlockSize];
            var y = new int[x.Length];
            using var file = TokenFile.OpenSplit(config.Dataset, "train", trainer.Meta);
            new BatchSampler(file, config.BatchSize, config.BlockSize, config.Seed).Next(x, y);
            for (int i = 0; i < y.Length; i++) if (y[i] is < 1 or > 6) y[i] = -1;
            Assert.InRange(y.Count(t => t >= 0), 1, y.Length - 1);
            trainer.Model.Forward(x, [], training: false);
            double expected = ReferenceLoss(trainer.Model.Logits, y, trainer.Meta.VocabSize);
            trainer.Run();
            Assert.Equal(expected, trainer.Losses[0], 4);
        }

        var straight = Data.Config("straight");
        straight.LossTargets = "1-6";
        using var a = new Trainer(straight);
        a.Run();
        var half = Data.Config("split", maxIters: 4);
        half.LossTargets = "1-6";
        using (var b1 = new Trainer(half)) b1.Run();
        var resumed = half.Clone();
        resumed.MaxIters = 8;
        resumed.InitFrom = "resume";
        using var b2 = new Trainer(resumed);
        b2.Run();
        Assert.Equal(a.Losses.Skip(4), b2.Losses);   // float equality: bit-identical
        Assert.Equal(a.Model.ParameterData.ToArray(), b2.Model.ParameterData.ToArray());
        Assert.Equal("1-6", b2.Config.LossTargets);
    }

    [Fact]
    public void TrainerRejectsLossTargetsOutsideTheVocabularyBeforeWritingAnything()
    {
        var config = Data.Config("bad");
        config.LossTargets = "1-500";
        var ex = Assert.Throws<ArgumentException>(() => new Trainer(config));
        Assert.Contains("loss_targets", ex.Message);
        Assert.Contains("1-500", ex.Message);
        Assert.False(Directory.Exists(config.OutDir));
    }
}
