using NanoSparse.IO;
using NanoSparse.Nn;
using NanoSparse.Numerics;
using NanoSparse.Optim;
using NanoSparse.Training;

namespace NanoSparse.Tests.Training;

/// <summary>
/// A trained training checkpoint (with AdamW state) whose Linear weights were then given zeros, as a pruning tool
/// would leave them, and saved dense:
///   attn.c_attn  2:4 (two random inputs kept in every group of four)
///   attn.c_proj  no zeros
///   mlp.c_fc     1:4 with half the kept ones zeroed too (density about 1/8)
///   mlp.c_proj   4x4 blocks, a quarter of them kept
/// </summary>
public sealed class SparseCheckpointFixture : IDisposable
{
    public TinyDataset Data { get; } = new();
    public string DenseDir { get; }
    int _copies;

    public SparseCheckpointFixture()
    {
        var c = Data.Config("trained", maxIters: 2);
        using (var t = new Trainer(c)) t.Run();
        var gpt = Checkpoint.LoadModel(c.OutDir, 1, 16, out var state);
        var optimizer = NewOptimizer(gpt, state.Config);
        Checkpoint.LoadOptimizer(c.OutDir, gpt, optimizer, state);
        var rng = new Rng(7);
        foreach (var p in gpt.Parameters)
        {
            if (p.Layout is null) continue;
            var w = p.Value.Span;
            int rows = p.Shape[0], cols = p.Shape[1];
            if (p.Name.EndsWith("attn.c_attn.weight")) KeepPerGroup(w, 2, 4, rng);
            else if (p.Name.EndsWith("mlp.c_fc.weight"))
            {
                KeepPerGroup(w, 1, 4, rng);
                for (int i = 0; i < w.Length; i++) if (rng.NextInt(2) == 0) w[i] = 0;
            }
            else if (p.Name.EndsWith("mlp.c_proj.weight"))
                for (int r0 = 0; r0 < rows; r0 += 4)
                    for (int c0 = 0; c0 < cols; c0 += 4)
                        if (rng.NextInt(4) != 0)
                            for (int r = r0; r < r0 + 4; r++) w.Slice(r * cols + c0, 4).Clear();
        }
        DenseDir = Data.Run("dense-zeros");
        state.SaveId = null;
        state.Files = null;
        Checkpoint.Save(DenseDir, gpt, optimizer, state, Path.Combine(c.OutDir, Checkpoint.MetaFile));
    }

    static void KeepPerGroup(Span<float> w, int n, int m, Rng rng)
    {
        Span<int> order = stackalloc int[m];
        for (int g = 0; g < w.Length; g += m)
        {
            for (int j = 0; j < m; j++) order[j] = j;
            for (int s = 0; s < m; s++) { int k = s + rng.NextInt(m - s); (order[s], order[k]) = (order[k], order[s]); }
            for (int s = n; s < m; s++) w[g + order[s]] = 0;
        }
    }

    public static AdamW NewOptimizer(Gpt gpt, TrainConfig c) =>
        new(gpt.ParameterData.Length, gpt.Parameters.Select(p => AdamW.SegmentOf(gpt.ParameterData, p.Value.Span, p.Decay)).ToArray(),
            c.Beta1, c.Beta2, 1e-8f, c.WeightDecay);

    /// <summary>A new folder path under the dataset's root.</summary>
    public string NewDir(string name) => Data.Run($"{name}-{Interlocked.Increment(ref _copies)}");

    /// <summary>A copy of <paramref name="source"/> under a new name.</summary>
    public string Copy(string source, string name)
    {
        string dir = NewDir(name);
        Directory.CreateDirectory(dir);
        foreach (var f in Directory.GetFiles(source)) File.Copy(f, Path.Combine(dir, Path.GetFileName(f)));
        return dir;
    }

    /// <summary>Every tensor of a safetensors file: dtype, shape and raw bytes.</summary>
    public static Dictionary<string, (SafeTensorsDtype Dtype, int[] Shape, byte[] Bytes)> Raw(string path, out Dictionary<string, string> metadata)
    {
        using var f = SafeTensorsFile.Open(path);
        metadata = new Dictionary<string, string>(f.Metadata);
        return f.Tensors.ToDictionary(t => t.Name, t => (t.Dtype, t.Shape, f.GetBytes(t).ToArray()));
    }

    /// <summary>Rewrites a safetensors file: integer tensors through <paramref name="indices"/>, float tensors through <paramref name="floats"/> (null drops it).</summary>
    public static void Rewrite(string path, Func<string, int[], int[]>? indices = null, Func<string, float[], float[]?>? floats = null,
        Action<Dictionary<string, string>>? metadata = null)
    {
        var tensors = new List<SafeTensor>();
        Dictionary<string, string> meta;
        using (var f = SafeTensorsFile.Open(path))
        {
            meta = new Dictionary<string, string>(f.Metadata);
            foreach (var t in f.Tensors)
            {
                var bytes = f.GetBytes(t);
                if (t.Dtype is SafeTensorsDtype.U8 or SafeTensorsDtype.U16 or SafeTensorsDtype.I32)
                {
                    var v = new int[t.Shape[0]];
                    for (int i = 0; i < v.Length; i++)
                        v[i] = t.Dtype switch
                        {
                            SafeTensorsDtype.U8 => bytes[i],
                            SafeTensorsDtype.U16 => BitConverter.ToUInt16(bytes.Slice(2 * i, 2)),
                            _ => BitConverter.ToInt32(bytes.Slice(4 * i, 4)),
                        };
                    tensors.Add(SafeTensor.Integers(t.Name, t.Dtype, indices?.Invoke(t.Name, v) ?? v));
                }
                else
                {
                    var data = f.ReadFloat32Array(t.Name);
                    var edited = floats is null ? data : floats(t.Name, data);
                    if (edited is not null) tensors.Add(new SafeTensor(t.Name, edited.Length == data.Length ? t.Shape : [edited.Length], edited));
                }
            }
        }
        metadata?.Invoke(meta);
        SafeTensors.Write(path, tensors, meta);
    }

    public void Dispose() => Data.Dispose();
}
