using NanoSparse.Data;

namespace NanoSparse.Tests.Data;

public class TokenFileTests
{
    [Theory]
    [InlineData(TokenDtype.UInt16, 65536, 2)]
    [InlineData(TokenDtype.UInt32, 70000, 4)]
    public void Written_tokens_read_back_with_the_dtype_size(TokenDtype dtype, int vocab, int bytesPerToken)
    {
        using var dir = new TempDir();
        string path = dir["t.bin"];
        int[] ids = Enumerable.Range(0, 5000).Select(i => (int)((i * 7919L) % vocab)).Append(vocab - 1).ToArray();
        TokenFileWriter.Write(path, ids, dtype, vocab);
        Assert.Equal((long)ids.Length * bytesPerToken, new FileInfo(path).Length);
        // Independent check of the layout: little-endian integers of the dtype's size.
        byte[] raw = File.ReadAllBytes(path);
        int last = bytesPerToken == 2 ? BitConverter.ToUInt16(raw, raw.Length - 2) : (int)BitConverter.ToUInt32(raw, raw.Length - 4);
        Assert.Equal(vocab - 1, last);

        using var file = TokenFile.Open(path, dtype, vocab, fullScan: true);
        Assert.Equal(ids.Length, file.Length);
        var back = new int[ids.Length];
        file.Read(0, back);
        Assert.Equal(ids, back);
        var mid = new int[10];
        file.Read(1234, mid);
        Assert.Equal(ids.AsSpan(1234, 10).ToArray(), mid);
    }

    [Fact]
    public void Dtype_is_uint32_only_above_65536_symbols()
    {
        Assert.Equal(TokenDtype.UInt16, TokenDtypes.ForVocabSize(65));
        Assert.Equal(TokenDtype.UInt16, TokenDtypes.ForVocabSize(65536));
        Assert.Equal(TokenDtype.UInt32, TokenDtypes.ForVocabSize(65537));
    }

    [Fact]
    public void Writer_refuses_uint16_for_a_vocabulary_above_65536()
    {
        var e = Assert.Throws<ArgumentException>(() => TokenFileWriter.Write(new MemoryStream(), [1, 2], TokenDtype.UInt16, 70000));
        Assert.Contains("uint32", e.Message);
    }

    [Fact]
    public void Missing_file_names_the_path()
    {
        using var dir = new TempDir();
        string path = dir["nope.bin"];
        var e = Assert.Throws<FileNotFoundException>(() => TokenFile.Open(path, TokenDtype.UInt16, 10));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void Truncated_file_is_rejected()
    {
        using var dir = new TempDir();
        string path = dir["t.bin"];
        File.WriteAllBytes(path, [1, 0, 2, 0, 3]);
        var e = Assert.Throws<InvalidDataException>(() => TokenFile.Open(path, TokenDtype.UInt16, 10));
        Assert.Contains("truncated", e.Message);
        Assert.Contains("5 bytes", e.Message);
        File.WriteAllBytes(path, [1, 0, 0, 0, 2, 0]);
        Assert.Throws<InvalidDataException>(() => TokenFile.Open(path, TokenDtype.UInt32, 10));
    }

    [Fact]
    public void Empty_file_is_rejected()
    {
        using var dir = new TempDir();
        string path = dir["t.bin"];
        File.WriteAllBytes(path, []);
        var e = Assert.Throws<InvalidDataException>(() => TokenFile.Open(path, TokenDtype.UInt16, 10));
        Assert.Contains("empty", e.Message);
    }

    [Fact]
    public void Id_beyond_vocab_is_reported_with_file_offset_and_id()
    {
        using var dir = new TempDir();
        string path = dir["t.bin"];
        ushort[] tokens = [1, 2, 3, 4, 42, 5];
        File.WriteAllBytes(path, tokens.SelectMany(BitConverter.GetBytes).ToArray());

        var scan = Assert.Throws<InvalidDataException>(() => TokenFile.Open(path, TokenDtype.UInt16, 10, fullScan: true));
        Assert.Contains(path, scan.Message);
        Assert.Contains("offset 4", scan.Message);
        Assert.Contains("id 42", scan.Message);

        using var file = TokenFile.Open(path, TokenDtype.UInt16, 10);
        var ok = new int[4];
        file.Read(0, ok); // the bad id is outside this window
        Assert.Equal([1, 2, 3, 4], ok);
        var e = Assert.Throws<InvalidDataException>(() => file.Read(2, new int[3]));
        Assert.Contains("offset 4", e.Message);
        Assert.Contains("id 42", e.Message);
    }

    [Fact]
    public void Read_outside_the_file_is_rejected()
    {
        using var dir = new TempDir();
        string path = dir["t.bin"];
        TokenFileWriter.Write(path, new int[] { 1, 2, 3 }, TokenDtype.UInt16, 10);
        using var file = TokenFile.Open(path, TokenDtype.UInt16, 10);
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Read(1, new int[3]));
        Assert.Throws<ArgumentOutOfRangeException>(() => file.Read(-1, new int[1]));
    }

    [Fact]
    public void Trimming_resident_pages_does_not_change_the_data()
    {
        using var dir = new TempDir();
        string path = dir["t.bin"];
        int[] ids = Enumerable.Range(0, 1 << 20).Select(i => i % 1000).ToArray();
        TokenFileWriter.Write(path, ids, TokenDtype.UInt16, 1000);
        using var file = TokenFile.Open(path, TokenDtype.UInt16, 1000);
        file.TrimIntervalBytes = 4096; // release after nearly every read
        var window = new int[65];
        for (long o = 0; o + 65 <= ids.Length; o += 9973)
        {
            file.Read(o, window);
            Assert.Equal(ids.AsSpan((int)o, 65).ToArray(), window);
        }
    }

    [Fact]
    public void OpenSplit_checks_the_token_count_against_meta()
    {
        using var dir = new TempDir();
        TokenFileWriter.Write(dir["train.bin"], new int[] { 0, 1, 1 }, TokenDtype.UInt16, 2);
        var meta = new DatasetMeta { VocabSize = 2, Symbols = ["a", "b"], TrainTokens = 4, ValTokens = 1 };
        var e = Assert.Throws<InvalidDataException>(() => TokenFile.OpenSplit(dir.Path, "train", meta));
        Assert.Contains("train_tokens = 4", e.Message);
        Assert.Contains("3 tokens", e.Message);
    }
}
