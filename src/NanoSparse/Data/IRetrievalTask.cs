using NanoSparse.Numerics;

namespace NanoSparse.Data;

/// <summary>
/// A retrieval task that <see cref="Training.RetrievalAccuracy"/> measures: it writes a record and, a controlled
/// distance later, its query and answer into a window of filler tokens. Two tasks implement it: the text-embedded
/// <see cref="RetrievalProbe"/> ("&amp;KEY:VALUE" over Brown) and the purely synthetic <see cref="AssociativeRecall"/>
/// (one key token, one value token, over its own stream of key-value pairs).
/// </summary>
public interface IRetrievalTask
{
    /// <summary>Tokens of a record (key and value).</summary>
    int RecordLength { get; }
    /// <summary>Tokens of the query that precede the answer.</summary>
    int QueryLength { get; }
    /// <summary>Tokens of the answer (the value that is checked).</summary>
    int ValueLength { get; }
    /// <summary>Probability of guessing one answer token, e.g. 0.1 for a digit.</summary>
    double ChancePerToken { get; }
    /// <summary>What one answer token is called in tables ("digit", "value").</summary>
    string AnswerTokenName { get; }

    /// <summary>The largest distance a window of seqLen positions leaves room for (record, gap, query, answer).</summary>
    int MaxDistance(int seqLen);

    /// <summary>
    /// Writes a record and its query into <paramref name="tokens"/> (seqLen + 1 tokens of filler on entry) so that
    /// <paramref name="distance"/> tokens lie between the record's end and the query's start and the answer ends the
    /// window. Returns the index of the answer's first token: x = tokens[..^1] predicts it at index answer − 1.
    /// </summary>
    int Write(Span<int> tokens, int distance, int distractors, Rng rng);
}
