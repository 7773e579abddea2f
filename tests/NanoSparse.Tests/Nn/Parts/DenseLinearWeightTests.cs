using NanoSparse.Nn.Parts;

namespace NanoSparse.Tests.Nn.Parts;

/// <summary>DenseLinearWeight against plain loops in double: y = x·Wᵀ + b + r and its backward.</summary>
public class DenseLinearWeightTests
{
    const int Rows = 5, In = 7, Out = 6;

    static float[] Random(Random r, int n) => GradCheck.RandomArray(r, n);

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, true)]
    public void ForwardIsXTimesWTransposedPlusBiasPlusResidual(bool bias, bool residual)
    {
        var r = new Random(1);
        var x = Random(r, Rows * In);
        var w = Random(r, Out * In);
        var b = bias ? Random(r, Out) : [];
        var res = residual ? Random(r, Rows * Out) : [];
        var weight = new DenseLinearWeight(Out, In);
        Assert.Equal("dense", weight.Layout);
        Assert.Equal(Out * In, weight.StoredCount);
        Assert.Equal(0, weight.WorkspaceFloats(Rows));
        var y = new float[Rows * Out];
        weight.Forward(y, x, w, b, res, Rows, default);

        var expected = new double[Rows * Out];
        for (int n = 0; n < Rows; n++)
            for (int o = 0; o < Out; o++)
            {
                double s = (bias ? b[o] : 0) + (residual ? res[n * Out + o] : 0);
                for (int i = 0; i < In; i++) s += (double)x[n * In + i] * w[o * In + i];
                expected[n * Out + o] = s;
            }
        GradCheck.AssertClose(y, expected, 1e-5, "y");
    }

    [Fact]
    public void BackwardAccumulatesWeightAndBiasGradientsAndScalesDx()
    {
        var r = new Random(2);
        var x = Random(r, Rows * In);
        var w = Random(r, Out * In);
        var dy = Random(r, Rows * Out);
        var scale = Random(r, Rows * In);
        var dw = Random(r, Out * In);     // gradients accumulate onto what is there
        var db = Random(r, Out);
        var dw0 = (float[])dw.Clone();
        var db0 = (float[])db.Clone();
        var dx = new float[Rows * In];
        new DenseLinearWeight(Out, In).Backward(dx, dw, db, dy, x, w, scale, Rows, default);

        var edw = new double[Out * In];
        var edb = new double[Out];
        var edx = new double[Rows * In];
        for (int o = 0; o < Out; o++)
        {
            edb[o] = db0[o];
            for (int n = 0; n < Rows; n++) edb[o] += dy[n * Out + o];
            for (int i = 0; i < In; i++)
            {
                double s = dw0[o * In + i];
                for (int n = 0; n < Rows; n++) s += (double)dy[n * Out + o] * x[n * In + i];
                edw[o * In + i] = s;
            }
        }
        for (int n = 0; n < Rows; n++)
            for (int i = 0; i < In; i++)
            {
                double s = 0;
                for (int o = 0; o < Out; o++) s += (double)dy[n * Out + o] * w[o * In + i];
                edx[n * In + i] = s * scale[n * In + i];
            }
        GradCheck.AssertClose(dw, edw, 1e-5, "dW");
        GradCheck.AssertClose(db, edb, 1e-5, "dBias");
        GradCheck.AssertClose(dx, edx, 1e-5, "dx");
    }

    [Fact]
    public void ToDenseIsTheStoredMatrixAndShapesArePositive()
    {
        var w = Random(new Random(3), Out * In);
        var dense = new float[Out * In];
        new DenseLinearWeight(Out, In).ToDense(w, dense);
        Assert.Equal(w, dense);
        Assert.Throws<ArgumentException>(() => new DenseLinearWeight(0, In));
    }
}
