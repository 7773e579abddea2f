using System.Globalization;
using NanoSparse.Kernels.Sparse;
using NanoSparse.Sparse;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// The sparse side of <c>bench gemv --sparse D,...</c>: the decode SpMV formats on W with a random share D of its
/// weights kept, timed in the same rounds as the dense Gemv (so the ratio is of one run), with the bytes each format
/// reads per call. Each format's product is checked against a double-precision product of the masked W first.
/// </summary>
static class SparseGemv
{
    const string Prefix = "sparse ";

    public static bool IsSparse(string contender) => contender.StartsWith(Prefix, StringComparison.Ordinal);

    public static double[] Densities(string list) => list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(v =>
        double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) && d > 0 && d <= 1
            ? d : throw new ArgumentException($"--sparse: '{v}' is not a density in (0, 1]")).ToArray();

    public sealed record Contender(string Name, Action Call);

    /// <summary>Contenders named "sparse D FORMAT BYTES" (BYTES: read per call).</summary>
    public static List<Contender> Contenders(ReadOnlySpan<float> w, int outF, int inF, ReadOnlySpan<float> x, double[] densities)
    {
        var list = new List<Contender>();
        var xs = x.ToArray();
        foreach (double d in densities)
        {
            var rng = new Random((int)(d * 1e6) + outF * 7 + inF);
            var masked = new float[w.Length];
            for (int i = 0; i < masked.Length; i++) if (rng.NextDouble() < d) masked[i] = w[i];
            var csr = CsrMatrix.FromDense(masked, outF, inF);
            var expected = new double[outF];
            for (int o = 0; o < outF; o++)
                for (int i = 0; i < inF; i++) expected[o] += (double)masked[(long)o * inF + i] * xs[i];
            var sell = SellMatrix.FromCsr(csr);
            var wide = SellWideMatrix.FromCsr(csr);
            var wide128 = SellWideMatrix.FromCsr(csr, 128);
            var packed = SellWideMatrix.FromCsr(csr, 256, SellRowOrder.DefaultWindow);      // SELL-C-σ: the decode copies' layout
            var packed128 = SellWideMatrix.FromCsr(csr, 128, SellRowOrder.DefaultWindow);
            var y = new float[outF];
            long nnz = csr.NonZeroCount;
            void Add(string format, long bytes, Action call)
            {
                call();
                for (int o = 0; o < outF; o++)
                    if (Math.Abs(y[o] - expected[o]) > 1e-4 * Math.Sqrt(inF) * (1 + Math.Abs(expected[o])))
                        throw new InvalidOperationException($"bench gemv --sparse {d}: {format} row {o} gives {y[o]}, expected {expected[o]:g6}");
                list.Add(new Contender($"{Prefix}{d.ToString(CultureInfo.InvariantCulture)} {format} {bytes}", call));
            }
            Add("CSR16", 4L * (outF + 1) + (csr.HasShortIndices ? 6 : 8) * nnz, () => CsrSpmm.Multiply(csr, xs, 1, y));
            Add("SELL", sell.FootprintBytes, () => SellSpmm.Multiply(sell, xs, 1, y));
            Add("SELL-128", wide128.BytesRead, () => SellWideSpmv.Multiply(wide128, xs, y));
            Add("SELL-256", wide.BytesRead, () => SellWideSpmv.Multiply(wide, xs, y));
            Add("SELL-128-σ", packed128.BytesRead, () => SellWideSpmv.Multiply(packed128, xs, y));
            Add("SELL-256-σ", packed.BytesRead, () => SellWideSpmv.Multiply(packed, xs, y));
            var unpadded = SellPackedMatrix.FromCsr(csr, SellRowOrder.DefaultWindow);   // the sell128packed decode copy
            Add("SELL-128-σ-packed", unpadded.BytesRead, () => SellPackedSpmv.Multiply(unpadded, xs, y));
            var unpadded64 = SellPackedMatrix.FromCsr(csr, SellRowOrder.DefaultWindow, SellPackedMatrix.NarrowBlock);   // sell64packed
            Add("SELL-64-σ-packed", unpadded64.BytesRead, () => SellPackedSpmv.Multiply(unpadded64, xs, y));
            var bitmap = BitmapMatrix.FromCsr(csr);
            Add("Bitmap", bitmap.FootprintBytes, () => BitmapSpmv.Multiply(bitmap, xs, y));
        }
        return list;
    }

    public static void Render(List<(int Out, int In, int Threads, string Contender, double Ms)> results)
    {
        var table = new Table().Border(TableBorder.Rounded)
            .Title("decode SpMV formats against Gemv on the dense W (ms per call, medians; x dense = Gemv ms / format ms)")
            .AddColumn("W (Out x In)").AddColumn(new TableColumn("threads").RightAligned()).AddColumn(new TableColumn("density").RightAligned())
            .AddColumn("format").AddColumn(new TableColumn("bytes/value").RightAligned()).AddColumn(new TableColumn("ms").RightAligned())
            .AddColumn(new TableColumn("GB/s").RightAligned()).AddColumn(new TableColumn("x dense").RightAligned()).AddColumn(new TableColumn("byte ideal").RightAligned());
        foreach (var g in results.GroupBy(r => (r.Out, r.In, r.Threads)))
        {
            double dense = g.Single(r => r.Contender == "NanoSparse Gemv").Ms;
            foreach (var r in g.Where(r => IsSparse(r.Contender)))
            {
                var p = r.Contender.Substring(Prefix.Length).Split(' ');
                double d = double.Parse(p[0], CultureInfo.InvariantCulture);
                long bytes = long.Parse(p[2], CultureInfo.InvariantCulture);
                double values = d * g.Key.Out * g.Key.In;
                table.AddRow($"{g.Key.Out}x{g.Key.In}", g.Key.Threads.ToString(), p[0], p[1], $"{bytes / values:F2}", $"{r.Ms:F4}",
                    $"{bytes / (r.Ms / 1e3) / 1e9:F1}", $"{dense / r.Ms:F2}", $"{4.0 * g.Key.Out * g.Key.In / bytes:F2}");
            }
        }
        AnsiConsole.Write(table);
        Console.WriteLine("bytes/value = bytes the format reads per call / stored values (4 = values alone); byte ideal = dense bytes / format bytes (the speed-up if both ran at the same GB/s).");
    }
}
