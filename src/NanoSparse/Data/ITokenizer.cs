namespace NanoSparse.Data;

/// <summary>Maps text to token ids in [0, VocabSize) and back.</summary>
public interface ITokenizer
{
    /// <summary>Short name stored in meta.json ("char").</summary>
    string Kind { get; }

    int VocabSize { get; }

    /// <summary>Token ids of <paramref name="text"/>; throws naming the first symbol that is not in the vocabulary.</summary>
    int[] Encode(string text);

    /// <summary>Text of <paramref name="ids"/>; throws naming the first id outside [0, VocabSize).</summary>
    string Decode(ReadOnlySpan<int> ids);
}
