using NanoSparse.Bench;

namespace NanoSparse.Tests.Cli;

/// <summary>
/// The bench suites find their peers through one search (BenchUtil.FindPeer): bench/peers above the working directory,
/// then above the executable's directory, which is where the installed tool keeps its copy.
/// </summary>
public class BenchPeerTests
{
    [Theory]
    [InlineData("gemm_numpy.py")]      // bench gemm
    [InlineData("train_torch.py")]     // bench train
    [InlineData("sample_torch.py")]    // bench sample
    [InlineData("quality_torch.py")]   // bench quality
    [InlineData("torch_gpt.py")]       // the model the three above import
    [InlineData("sparse_peers.py")]    // bench kernels: SciPy and torch CSR
    [InlineData("eigen_spmm.cpp")]     // bench kernels: Eigen, compiled on first use
    public void EveryPeerTheSuitesRunIsFoundInABenchPeersFolder(string script)
    {
        string path = BenchUtil.FindPeer(script);
        Assert.True(File.Exists(path), path);
        Assert.Equal(script, Path.GetFileName(path));
        var folder = new DirectoryInfo(Path.GetDirectoryName(path)!);
        Assert.Equal(("bench", "peers"), (folder.Parent!.Name, folder.Name));
    }

    [Fact]
    public void AMissingPeerNamesTheFileAndTheFoldersSearched()
    {
        var e = Assert.Throws<FileNotFoundException>(() => BenchUtil.FindPeer("no_such_peer.py"));
        Assert.Contains("bench/peers/no_such_peer.py", e.Message);
        Assert.Contains(Directory.GetCurrentDirectory(), e.Message);
        Assert.Contains(AppContext.BaseDirectory, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }
}
