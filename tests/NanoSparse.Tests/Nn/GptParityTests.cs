using System.Text.Json;
using NanoSparse.Nn;

namespace NanoSparse.Tests.Nn;

/// <summary>
/// Logits, loss and every parameter gradient against PyTorch (tools/make_parity_fixture.py; the fixture is committed,
/// PyTorch is not needed here). Per tensor: max |ours − torch| / (max |torch| + 1e-6) ≤ 1e-4.
/// </summary>
public class GptParityTests
{
    sealed record TensorEntry(string Name, int[] Shape, int Offset, int Length);

    sealed record Fixture(GptConfig Config, int BatchSize, int SeqLen, int[] Tokens, int[] Targets, float Loss,
        Dictionary<string, (int[] Shape, float[] Data)> Tensors);

    static Fixture Load(string name)
    {
        string dir = Path.Combine(AppContext.BaseDirectory, "Fixtures", "parity");
        using var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(dir, name + ".json")));
        var root = json.RootElement;
        var config = root.GetProperty("config").Deserialize<GptConfig>()!;
        byte[] bytes = File.ReadAllBytes(Path.Combine(dir, name + ".bin"));
        var all = new float[bytes.Length / 4];
        for (int i = 0; i < all.Length; i++) all[i] = BitConverter.ToSingle(bytes, 4 * i);   // little-endian file
        var tensors = new Dictionary<string, (int[], float[])>();
        foreach (var t in root.GetProperty("tensors").EnumerateArray())
        {
            var e = t.Deserialize<TensorEntry>(new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;
            tensors[e.Name] = (e.Shape, all.AsSpan(e.Offset, e.Length).ToArray());
        }
        return new Fixture(config, root.GetProperty("batch_size").GetInt32(), root.GetProperty("seq_len").GetInt32(),
            root.GetProperty("tokens").Deserialize<int[]>()!, root.GetProperty("targets").Deserialize<int[]>()!,
            root.GetProperty("loss").GetSingle(), tensors);
    }

    static void AssertTensor(string name, ReadOnlySpan<float> ours, float[] torch)
    {
        Assert.Equal(torch.Length, ours.Length);
        double maxRef = 0, maxDiff = 0;
        for (int i = 0; i < torch.Length; i++)
        {
            maxRef = Math.Max(maxRef, Math.Abs(torch[i]));
            maxDiff = Math.Max(maxDiff, Math.Abs(ours[i] - torch[i]));
        }
        double relative = maxDiff / (maxRef + 1e-6);
        Assert.True(relative <= 1e-4, $"{name}: max |diff| {maxDiff:g3} / max |torch| {maxRef:g3} = {relative:g3} > 1e-4");
        Assert.True(maxRef > 0, $"{name}: the reference is all zeros");
    }

    [Theory]
    [InlineData("tiny_bias")]
    [InlineData("tiny_nobias")]
    public void LogitsLossAndGradientsMatchPyTorch(string name)
    {
        var f = Load(name);
        var gpt = new Gpt(f.Config, f.BatchSize, f.SeqLen);
        foreach (var p in gpt.Parameters)
        {
            Assert.True(f.Tensors.ContainsKey("param:" + p.Name), $"fixture lacks {p.Name}");
            var (shape, data) = f.Tensors["param:" + p.Name];
            Assert.Equal(shape, p.Shape);
            data.CopyTo(p.Value);
        }
        Assert.Equal(gpt.Parameters.Count, f.Tensors.Keys.Count(k => k.StartsWith("param:")));

        gpt.ZeroGrad();
        float loss = gpt.Forward(f.Tokens, f.Targets, training: true);
        AssertTensor("logits", gpt.Logits, f.Tensors["logits"].Data);
        Assert.True(Math.Abs(loss - f.Loss) <= 1e-5 * Math.Abs(f.Loss), $"loss {loss} vs torch {f.Loss}");
        gpt.Backward();
        foreach (var p in gpt.Parameters)
            AssertTensor("grad of " + p.Name, p.Grad.Span, f.Tensors["grad:" + p.Name].Data);
    }
}
