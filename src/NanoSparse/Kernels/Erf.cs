using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;

namespace NanoSparse.Kernels;

/// <summary>
/// Single-precision error function, vectorisable (no table, no branch per element), max abs error about 1.3e-7
/// over the whole real line (the rounding floor of float near erf = 1).
/// Two pieces, both least-squares Chebyshev fits made in double precision (tools/fit_erf.py):
///   |x| &lt;= 1:        erf(x)  = x · P(x²),               P of degree 6
///   1 &lt; |x| &lt;= 3.93: erfc(x) = exp(−x²) · Q(1/x),        Q of degree 8
///   |x| > 3.93:      erf(x)  = ±1 (erfc(3.93) &lt; 2e-8).
/// (Abramowitz–Stegun 7.1.26 has error 1.5e-7 relative to 1 but is far worse near 0, hence this.)
/// </summary>
public static class Erf
{
    const float P0 = 1.1283791065216064f, P1 = -0.3761262595653534f, P2 = 0.11283597350120544f,
        P3 = -0.02685432694852352f, P4 = 0.00518930796533823f, P5 = -0.0008018818334676325f, P6 = 7.88237593951635e-05f;

    const float Q0 = 0.00028541492065414786f, Q1 = 0.5588007569313049f, Q2 = 0.043631039559841156f,
        Q3 = -0.477594792842865f, Q4 = 0.5100646018981934f, Q5 = -0.2597745954990387f, Q6 = 0.03854962810873985f,
        Q7 = 0.021724918857216835f, Q8 = -0.008103390224277973f;

    public static float Evaluate(float x)
    {
        float ax = MathF.Abs(x);
        if (ax <= 1f)
        {
            float t = x * x;
            float p = ((((((P6 * t + P5) * t + P4) * t + P3) * t + P2) * t + P1) * t + P0);
            return x * p;
        }
        if (ax > 3.93f) return MathF.CopySign(1f, x);
        float s = 1f / ax;
        float q = (((((((Q8 * s + Q7) * s + Q6) * s + Q5) * s + Q4) * s + Q3) * s + Q2) * s + Q1) * s + Q0;
        return MathF.CopySign(1f - MathF.Exp(-ax * ax) * q, x);
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static Vector512<float> Evaluate(Vector512<float> x)
    {
        var expMinusXSquared = VectorExp.Exp(-(x * x));
        var ax = Vector512.Abs(x);
        var t = x * x;
        var p = Vector512.Create(P6);
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(P5));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(P4));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(P3));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(P2));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(P1));
        p = Vector512.FusedMultiplyAdd(p, t, Vector512.Create(P0));
        var small = x * p;

        var axc = Vector512.Min(Vector512.Max(ax, Vector512<float>.One), Vector512.Create(3.93f));
        var s = Vector512<float>.One / axc;
        var q = Vector512.Create(Q8);
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(Q7));
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(Q6));
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(Q5));
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(Q4));
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(Q3));
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(Q2));
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(Q1));
        q = Vector512.FusedMultiplyAdd(q, s, Vector512.Create(Q0));
        var large = Vector512.FusedMultiplyAdd(-expMinusXSquared, q, Vector512<float>.One);
        large = Vector512.ConditionalSelect(Vector512.GreaterThan(ax, Vector512.Create(3.93f)), Vector512<float>.One, large);
        large = Vector512.CopySign(large, x);
        return Vector512.ConditionalSelect(Vector512.LessThanOrEqual(ax, Vector512<float>.One), small, large);
    }
}
