using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// exp(x) for 16 floats, cheaper than Vector512.Exp (which widens to double) and accurate to a few ulp:
/// Cody–Waite reduction x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split in a high part exact in float and a low part),
/// e^r by its Taylor polynomial of degree 7 (truncation (ln2/2)^8/8! ≈ 5e-9 relative), then 2^n through the
/// exponent bits. Inputs are clamped to [−87, 88], so results below ~1.6e-38 come out as that, never as denormals.
/// </summary>
public static class VectorExp
{
    const float Log2E = 1.44269504088896341f;
    const float Ln2Hi = 0.693359375f;           // 355/512: n·Ln2Hi is exact for |n| < 2^15
    const float Ln2Lo = -2.12194440e-4f;        // ln 2 − Ln2Hi

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Exp(Vector512<float> x)
    {
        x = Vector512.Min(Vector512.Max(x, Vector512.Create(-87f)), Vector512.Create(88f));
        var n = Vector512.Round(x * Vector512.Create(Log2E));
        var r = Vector512.FusedMultiplyAdd(-n, Vector512.Create(Ln2Hi), x);
        r = Vector512.FusedMultiplyAdd(-n, Vector512.Create(Ln2Lo), r);
        var p = Vector512.Create(1f / 5040f);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 720f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 120f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 24f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(1f / 6f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512.Create(0.5f));
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        p = Vector512.FusedMultiplyAdd(p, r, Vector512<float>.One);
        var scale = (Vector512.ConvertToInt32(n) + Vector512.Create(127)) << 23;   // 2^n as float bits
        return p * scale.AsSingle();
    }
}
