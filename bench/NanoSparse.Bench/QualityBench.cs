using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using NanoSparse.Data;
using NanoSparse.Kernels;
using NanoSparse.Nn;
using NanoSparse.Optim;
using Spectre.Console;

namespace NanoSparse.Bench;

/// <summary>
/// <c>nanosparse bench quality</c>: trains a preset with nanoGPT's recipe on a dataset directory twice, NanoSparse
/// (this process) and PyTorch (bench/peers/quality_torch.py), and prints the validation losses side by side.
/// Recipe, both sides: random windows (nanoGPT get_batch), AdamW lr 1e-3 betas (0.9, 0.99) wd 0.1 on 2-D params,
/// clip 1.0, linear warmup then cosine decay to min_lr at max_iters, estimate_loss over eval_iters batches every
/// eval_interval, loop until iter_num &gt; max_iters; then val loss over --final-eval-iters batches. The random
/// streams differ (torch vs NanoSparse RNG), so expect agreement within noise, not equality.
/// </summary>
public static class QualityBench
{
    public static Command CreateCommand()
    {
        var data = new Option<DirectoryInfo>("--data") { Description = "dataset directory (train.bin, val.bin, meta.json)", DefaultValueFactory = _ => new DirectoryInfo("data/brown") };
        var preset = new Option<string>("--preset") { Description = string.Join(", ", ModelPreset.Names), DefaultValueFactory = _ => "baby" };
        preset.AcceptOnlyFromAmong(ModelPreset.Names);
        var iters = new Option<int>("--max-iters") { Description = "training iterations", DefaultValueFactory = _ => 2000 };
        var warmup = new Option<int>("--warmup-iters") { DefaultValueFactory = _ => 100 };
        var minLr = new Option<float>("--min-lr") { DefaultValueFactory = _ => 1e-4f };
        var evalInterval = new Option<int>("--eval-interval") { DefaultValueFactory = _ => 250 };
        var evalIters = new Option<int>("--eval-iters") { DefaultValueFactory = _ => 20 };
        var finalEvalIters = new Option<int>("--final-eval-iters") { DefaultValueFactory = _ => 200 };
        var threads = new Option<int>("--threads") { Description = "threads for both contenders", DefaultValueFactory = _ => Environment.ProcessorCount };
        var json = new Option<FileInfo?>("--json") { Description = "also write the results to this JSON file" };
        var python = new Option<string>("--python") { DefaultValueFactory = _ => TorchPeer.DefaultPython };
        var noPeer = new Option<bool>("--no-peer") { Description = "train NanoSparse only" };

        var command = new Command("quality", "validation loss after the same training recipe: NanoSparse vs PyTorch nanoGPT");
        foreach (var o in new Option[] { data, preset, iters, warmup, minLr, evalInterval, evalIters, finalEvalIters, threads, json, python, noPeer })
            command.Options.Add(o);
        command.SetAction(parseResult =>
        {
            var options = new Options(parseResult.GetValue(data)!.FullName, ModelPreset.Get(parseResult.GetValue(preset)!),
                parseResult.GetValue(iters), parseResult.GetValue(warmup), parseResult.GetValue(minLr), parseResult.GetValue(evalInterval),
                parseResult.GetValue(evalIters), parseResult.GetValue(finalEvalIters), parseResult.GetValue(threads),
                parseResult.GetValue(python)!, !parseResult.GetValue(noPeer));
            var result = Run(options);
            var file = parseResult.GetValue(json);
            if (file != null) TrainBench.WriteJson(file.FullName, result);
            return 0;
        });
        return command;
    }

    public sealed record Options(string Data, ModelPreset Preset, int MaxIters, int WarmupIters, float MinLr, int EvalInterval,
        int EvalIters, int FinalEvalIters, int Threads, string Python, bool RunPeer)
    {
        public void Validate()
        {
            if (MaxIters < 1) throw new ArgumentException($"--max-iters ({MaxIters}) must be at least 1");
            if (WarmupIters < 0 || WarmupIters >= MaxIters) throw new ArgumentException($"--warmup-iters ({WarmupIters}) must be in [0, max_iters {MaxIters})");
            if (EvalInterval < 1 || EvalIters < 1 || FinalEvalIters < 1) throw new ArgumentException("--eval-interval, --eval-iters and --final-eval-iters must be at least 1");
            if (Threads < 1) throw new ArgumentException($"--threads ({Threads}) must be at least 1");
        }
    }

    public sealed record Eval(int Iter, double Train, double Val);

    public sealed record Outcome(string Contender, List<Eval> Evals, double FinalValLong, double TrainSeconds);

    public static JsonObject Run(Options options)
    {
        options.Validate();
        var outcomes = new List<Outcome> { TrainNanoSparse(options) };
        if (options.RunPeer) outcomes.Add(TrainPyTorch(options));

        var table = new Table().Border(TableBorder.Rounded).AddColumn(new TableColumn("iter").RightAligned());
        foreach (var o in outcomes) table.AddColumn(new TableColumn($"{o.Contender} val").RightAligned());
        foreach (var it in outcomes[0].Evals.Select(e => e.Iter))
            table.AddRow([it.ToString(), .. outcomes.Select(o => o.Evals.FirstOrDefault(e => e.Iter == it) is { } e ? $"{e.Val:F4}" : "-")]);
        table.AddRow([$"final ({options.FinalEvalIters} batches)", .. outcomes.Select(o => $"{o.FinalValLong:F4}")]);
        table.AddRow(["train seconds", .. outcomes.Select(o => $"{o.TrainSeconds:F0}")]);
        AnsiConsole.Write(table);
        if (outcomes.Count == 2)
            AnsiConsole.MarkupLine($"[bold]final val loss NanoSparse − PyTorch = {outcomes[0].FinalValLong - outcomes[1].FinalValLong:+0.0000;-0.0000}[/]");

        return new JsonObject
        {
            ["bench"] = "quality", ["data"] = options.Data, ["preset"] = options.Preset.Name, ["max_iters"] = options.MaxIters,
            ["threads"] = options.Threads,
            ["results"] = new JsonArray(outcomes.Select(o => (JsonNode)new JsonObject
            {
                ["contender"] = o.Contender, ["final_val_loss_long"] = o.FinalValLong, ["train_seconds"] = o.TrainSeconds,
                ["evals"] = new JsonArray(o.Evals.Select(e => (JsonNode)new JsonObject { ["iter"] = e.Iter, ["train"] = e.Train, ["val"] = e.Val }).ToArray()),
            }).ToArray()),
        };
    }

    static Outcome TrainNanoSparse(Options options)
    {
        var p = options.Preset;
        var meta = DatasetMeta.Load(Path.Combine(options.Data, "meta.json"));
        using var train = TokenFile.OpenSplit(options.Data, "train", meta);
        using var val = TokenFile.OpenSplit(options.Data, "val", meta);
        int B = p.BatchSize, T = p.BlockSize;
        var config = p.ToConfig(meta.VocabSize);
        config.Validate();
        var gpt = new Gpt(config, B, T);
        gpt.InitializeWeights(1337);
        var segments = gpt.Parameters.Select(q => AdamW.SegmentOf(gpt.ParameterData, q.Value.Span, q.Decay));
        var optimizer = new AdamW(gpt.ParameterData.Length, segments, ModelPreset.Beta1, ModelPreset.Beta2, 1e-8f, ModelPreset.WeightDecay);
        var schedule = new CosineSchedule(ModelPreset.LearningRate, options.MinLr, options.WarmupIters, options.MaxIters);
        var trainSampler = new BatchSampler(train, B, T, 1337);
        var evalTrain = new BatchSampler(train, B, T, 2024);
        var evalVal = new BatchSampler(val, B, T, 2025);
        var x = new int[B * T];
        var y = new int[B * T];

        double MeanLoss(BatchSampler sampler, int batches)
        {
            double sum = 0;
            for (int k = 0; k < batches; k++)
            {
                sampler.Next(x, y);
                sum += gpt.Forward(x, y, training: false);
            }
            return sum / batches;
        }

        int savedMax = KernelThreads.Max;
        KernelThreads.Max = options.Threads;
        var evals = new List<Eval>();
        double trainSeconds = 0;
        try
        {
            for (int iter = 0; iter <= options.MaxIters; iter++)
            {
                if (iter % options.EvalInterval == 0)
                {
                    var e = new Eval(iter, MeanLoss(evalTrain, options.EvalIters), MeanLoss(evalVal, options.EvalIters));
                    evals.Add(e);
                    AnsiConsole.MarkupLine($"NanoSparse step {iter}: train loss {e.Train:F4}, val loss {e.Val:F4}");
                }
                long t0 = Stopwatch.GetTimestamp();
                trainSampler.Next(x, y);
                gpt.ZeroGrad();
                gpt.Forward(x, y, training: true);
                gpt.Backward();
                GradientClipping.ClipByGlobalNorm(gpt.GradientData, ModelPreset.GradClip);
                optimizer.Step(gpt.ParameterData, gpt.GradientData, (float)schedule.At(iter));
                trainSeconds += Stopwatch.GetElapsedTime(t0).TotalSeconds;
            }
            double finalVal = MeanLoss(evalVal, options.FinalEvalIters);
            AnsiConsole.MarkupLine($"NanoSparse final val loss over {options.FinalEvalIters} batches: {finalVal:F4}");
            return new Outcome("NanoSparse", evals, finalVal, trainSeconds);
        }
        finally { KernelThreads.Max = savedMax; }
    }

    static Outcome TrainPyTorch(Options options)
    {
        var r = TorchPeer.Run(options.Python, "quality_torch.py",
        [
            "--data", options.Data, "--preset", options.Preset.Name, "--threads", options.Threads.ToString(),
            "--max-iters", options.MaxIters.ToString(), "--warmup-iters", options.WarmupIters.ToString(),
            "--min-lr", options.MinLr.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--eval-interval", options.EvalInterval.ToString(), "--eval-iters", options.EvalIters.ToString(),
            "--final-eval-iters", options.FinalEvalIters.ToString(),
        ], line => AnsiConsole.MarkupLine($"PyTorch {Markup.Escape(line)}"));
        var evals = r.GetProperty("evals").EnumerateArray()
            .Select(e => new Eval(e.GetProperty("iter").GetInt32(), e.GetProperty("train").GetDouble(), e.GetProperty("val").GetDouble())).ToList();
        return new Outcome("PyTorch", evals, r.GetProperty("final_val_loss_long").GetDouble(), r.GetProperty("train_seconds").GetDouble());
    }
}
