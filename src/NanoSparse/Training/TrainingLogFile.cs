using System.Globalization;

namespace NanoSparse.Training;

/// <summary>One row of a run's log.csv (see <see cref="TrainingLog"/>): an iteration (ValLoss null) or an evaluation.</summary>
public sealed record TrainingLogRow(int Step, double TrainLoss, double? ValLoss, double LearningRate, double? MsPerIter,
    double? TokensPerSecond, double? Sparsity)
{
    /// <summary>act_sparsity: the MLP hidden activations' exact-zero fraction (null: not logged, or an older log).</summary>
    public double? ActivationSparsity { get; init; }

    public bool IsEvaluation => ValLoss is not null;
}

/// <summary>Reads the log.csv a training run writes (<see cref="TrainingLog.Header"/>), to compare runs after the fact.</summary>
public static class TrainingLogFile
{
    static readonly string[] Columns = TrainingLog.Header.Split(',');

    /// <summary>
    /// Every row of <paramref name="path"/>. A missing file, another header, or a field that is not what its column
    /// holds throws InvalidDataException naming the file, the line, the column, the value found and what was expected.
    /// </summary>
    public static IReadOnlyList<TrainingLogRow> Read(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path} does not exist (expected a training run's {TrainingLog.FileName})", path);
        var rows = new List<TrainingLogRow>();
        int lineNumber = 0, columns = Columns.Length;
        foreach (string line in File.ReadLines(path))
        {
            lineNumber++;
            if (lineNumber == 1)
            {
                if (line.Trim() == TrainingLog.HeaderWithoutActivationSparsity) columns = Columns.Length - 1;
                else if (line.Trim() != TrainingLog.Header)
                    throw new InvalidDataException($"{path} line 1 is '{Clip(line)}', expected the header '{TrainingLog.Header}'");
                continue;
            }
            if (line.Length == 0) continue;
            var f = line.Split(',');
            if (f.Length != columns)
                throw new InvalidDataException($"{path} line {lineNumber} has {f.Length} fields, expected {columns} ({string.Join(',', Columns.Take(columns))})");
            int step = int.TryParse(f[0], NumberStyles.Integer, CultureInfo.InvariantCulture, out int s) && s >= 0
                ? s : throw Bad(path, lineNumber, 0, f[0], "a step count >= 0");
            rows.Add(new TrainingLogRow(step, Number(path, lineNumber, f, 1)!.Value, Number(path, lineNumber, f, 2, optional: true),
                Number(path, lineNumber, f, 3)!.Value, Number(path, lineNumber, f, 4, optional: true),
                Number(path, lineNumber, f, 5, optional: true), Number(path, lineNumber, f, 6, optional: true))
            {
                ActivationSparsity = columns > 7 ? Number(path, lineNumber, f, 7, optional: true) : null,
            });
        }
        if (lineNumber == 0) throw new InvalidDataException($"{path} is empty, expected the header '{TrainingLog.Header}' and rows");
        return rows;
    }

    static double? Number(string path, int line, string[] f, int column, bool optional = false)
    {
        string text = f[column];
        if (text.Length == 0)
            return optional ? null : throw Bad(path, line, column, text, "a number");
        return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double v) && double.IsFinite(v)
            ? v : throw Bad(path, line, column, text, optional ? "a finite number or nothing" : "a finite number");
    }

    static InvalidDataException Bad(string path, int line, int column, string value, string expected) =>
        new($"{path} line {line}: {Columns[column]} is '{Clip(value)}', expected {expected}");

    static string Clip(string s) => s.Length <= 80 ? s : s[..77] + "...";
}
