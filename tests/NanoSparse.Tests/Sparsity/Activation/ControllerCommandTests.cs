using NanoSparse.Bench;
using NanoSparse.Cli;

namespace NanoSparse.Tests.Sparsity.Activation;

/// <summary>`nanosparse gate`'s bad input, and the controller bench's gates keeping the fraction they were set to.</summary>
public class ControllerCommandTests
{
    static (int Code, string Out, string Err) Run(params string[] args)
    {
        var o = new StringWriter();
        var e = new StringWriter();
        int code = Program.Run(args, o, e);
        return (code, o.ToString(), e.ToString());
    }

    [Theory]
    [InlineData("gate_budget=1.5", "error: --set gate_budget (1.5) must lie in (0, 1]")]
    [InlineData("gate_budget=0", "error: --set gate_budget (0) must lie in (0, 1]")]
    [InlineData("gate_group=0", "error: --set gate_group (0) must be positive")]
    [InlineData("gate_budget", "error: --set \"gate_budget\" must be key=value")]
    public void BadSet_IsOneLineErrorAndNonZeroExit(string set, string expected)
    {
        var (code, _, err) = Run("gate", "--checkpoint", "nowhere", "--data", "nowhere", "--out", "o", "--set", set);
        Assert.NotEqual(0, code);
        Assert.Equal(expected, err.Trim());
    }

    [Fact]
    public void GateGroupThatDoesNotDivideHidden_NamesTheLayer()
    {
        string root = Path.Combine(Path.GetTempPath(), "nanosparse-gatecmd-" + Guid.NewGuid().ToString("N"));
        try
        {
            // a tiny imported-style checkpoint (model.safetensors + config.json); the keys are checked before the data is read
            var config = new NanoSparse.Nn.GptConfig { NLayer = 1, NHead = 2, NEmbd = 16, BlockSize = 8, VocabSize = 5 };
            var gpt = new NanoSparse.Nn.Gpt(config, 1, 8);
            gpt.InitializeWeights(1);
            string ckpt = Path.Combine(root, "ckpt"), data = Path.Combine(root, "data");
            NanoSparse.Training.Checkpoint.SaveModel(ckpt, gpt, null);
            var (code, _, err) = Run("gate", "--checkpoint", ckpt, "--data", data, "--out", Path.Combine(root, "out"), "--set", "gate_group=24");
            Assert.True(code != 0, err);
            Assert.Equal("error: --set gate_group (24) must divide the MLP hidden width of layer 0 (64)", err.Trim());
            Assert.False(Directory.Exists(Path.Combine(root, "out")));
        }
        finally { if (Directory.Exists(root)) Directory.Delete(root, true); }
    }

    [Fact]
    public void ControllerBench_GatesKeepAboutTheTargetFraction()
    {
        var rows = ActivationControllerBench.Run(TextWriter.Null, [0.5, 0.2], layers: 1, vocab: 11, prompt: 4, tokens: 48, rounds: 1);
        Assert.Equal(3, rows.Count);
        Assert.Equal(1, rows[0].Kept);
        Assert.InRange(rows[1].Kept, 0.35, 0.65);
        Assert.InRange(rows[2].Kept, 0.08, 0.32);
        Assert.All(rows, r => Assert.True(r.CpuTokensPerSecond > 0 && double.IsFinite(r.CpuTokensPerSecond)));
        Assert.Throws<ArgumentException>(() => ActivationControllerBench.Run(TextWriter.Null, [0.0], layers: 1));
    }
}
