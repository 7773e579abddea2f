namespace NanoSparse.Data;

/// <summary>One document of an input corpus: its name (file path relative to the input, or corpus id), genre and text.</summary>
public sealed record CorpusDocument(string Name, string? Genre, string Text);
