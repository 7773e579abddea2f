using System.CommandLine;
using NanoSparse.Data;
using NanoSparse.Nn;
using NanoSparse.Nn.Parts;
using NanoSparse.Numerics;
using NanoSparse.Training;

namespace NanoSparse.Cli.Commands;

public static class SampleCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint directory", Required = true };
        var start = new Option<string>("--start") { Description = "prompt text", DefaultValueFactory = _ => "\n" };
        var tokens = new Option<int>("--tokens") { Description = "new tokens to generate", DefaultValueFactory = _ => 200 };
        var temperature = new Option<float>("--temperature") { Description = "softmax temperature (> 0)", DefaultValueFactory = _ => 0.8f };
        var topK = new Option<int>("--top-k") { Description = "sample among the k most likely tokens (0 = all)", DefaultValueFactory = _ => 200 };
        var seed = new Option<ulong>("--seed") { Description = "random seed", DefaultValueFactory = _ => 1337UL };
        var cropTo = new Option<int>("--crop-to")
        {
            Description = "when the context reaches block_size, keep this many tokens and go on with the KV cache " +
                          "(0 = nanoGPT's exact full window, which recomputes the whole window for every further token)",
            DefaultValueFactory = _ => 0,
        };
        var decodeCopy = new Option<string>("--decode-copy")
        {
            Description = "sparse weights' copies for one-token steps: auto (per CSR weight the format with the least estimated time, " +
                          "N:M values on 64-byte lines), none (decode from the stored layouts: the least memory, a slower SpMV), " +
                          "or one format for every CSR weight: sell, sell128, sell256, bitmap, sell128packed, sell64packed",
            DefaultValueFactory = _ => "auto",
        };
        decodeCopy.AcceptOnlyFromAmong("auto", "none", "sell", "sell128", "sell256", "bitmap", "sell128packed", "sell64packed");
        var tokenizerOptions = new TokenizerOptions();
        var cmd = new Command("sample", "generate text from a checkpoint (trained, or imported with --tokenizer)");
        foreach (var o in new Option[] { checkpoint, start, tokens, temperature, topK, seed, cropTo, decodeCopy }) cmd.Options.Add(o);
        tokenizerOptions.AddTo(cmd);
        var kvOptions = new KvCacheOptions();
        kvOptions.AddTo(cmd);
        var actSparsity = new ActSparsityOptions();
        actSparsity.AddTo(cmd);
        cmd.SetAction(parse =>
        {
            cli.ApplyThreads(parse);
            string dir = parse.GetValue(checkpoint)!;
            int n = parse.GetValue(tokens);
            float temp = parse.GetValue(temperature);
            int k = parse.GetValue(topK);
            if (n < 0) throw new UsageException($"--tokens ({n}) must be >= 0");
            if (!(temp > 0) || !float.IsFinite(temp)) throw new UsageException($"--temperature ({temp}) must be a positive number");
            if (k < 0) throw new UsageException($"--top-k ({k}) must be >= 0");
            var kvCache = kvOptions.Resolve(parse);
            actSparsity.Resolve(parse, dir);
            // The sampler returns prompt + new tokens as one array, and the prompt has at least one token.
            if (n > Array.MaxLength - 1) throw new UsageException($"--tokens ({n}) must be at most {Array.MaxLength - 1:N0} (the prompt and the new tokens must fit one array)");

            // The model, its activations for one window and the KV cache must fit before any is allocated.
            var modelConfig = Checkpoint.ReadAnyConfig(dir);
            GptSize.Check(GptSize.DimsOf(modelConfig, 1, modelConfig.BlockSize), GptUse.Decoding, GptSize.ModelKeys(modelConfig), $"checkpoint {dir}: ");
            // Sampling runs ForwardCached only (the KV cache has its own buffers): the model's training-pass activations
            // are for one position, and sparse layouts drop their training structures.
            var gpt = Checkpoint.LoadAnyModel(dir, 1, 1, out var state);
            // Decode copies (as bench sparse-model --keep-sell measures): the SpMV formats a one-token step reads fastest.
            string copy = parse.GetValue(decodeCopy)!;
            if (copy == "none") gpt.PrepareForInference();
            else gpt.PrepareForInference(keepSellCopy: true, Enum.Parse<DecodeCopyFormat>(copy, ignoreCase: true));
            // TEAL / WINA: decode reads the kept inputs' columns only; predictor: Deja Vu MLPs compute the predicted neurons only
            gpt = actSparsity.Apply(parse, dir, gpt, decodeCopies: true, out _, out _);
            var tokenizer = tokenizerOptions.Resolve(parse, dir, state);
            if (tokenizer.VocabSize > gpt.Config.VocabSize)
                throw new InvalidDataException($"the {tokenizer.Kind} tokenizer has {tokenizer.VocabSize} tokens but the model's vocab_size is {gpt.Config.VocabSize}");
            int[] prompt = tokenizer.Encode(parse.GetValue(start) ?? "");
            if (prompt.Length == 0) throw new UsageException("--start must encode to at least one token");
            if ((long)prompt.Length + n > Array.MaxLength)
                throw new UsageException($"--tokens ({n}) plus the prompt's {prompt.Length} tokens exceed {Array.MaxLength:N0}, the most tokens one sample holds");
            int crop = parse.GetValue(cropTo);
            if (crop < 0 || crop > gpt.Config.BlockSize) throw new UsageException($"--crop-to ({crop}) must lie in [0, block_size ({gpt.Config.BlockSize})]");
            var rng = new Rng(parse.GetValue(seed));
            cli.Out.Write(tokenizer.Decode(prompt));
            // Byte-level tokenizers can cut a character between tokens: print whole characters only.
            var decoder = new StreamingDecoder(tokenizer);
            Sampler.Generate(gpt, prompt, n, temp, k, rng, id =>
            {
                cli.Out.Write(decoder.Push(id));
                cli.Out.Flush();
            }, parse.GetValue(cropTo), kvCache);
            cli.Out.Write(decoder.Flush());
            cli.Out.WriteLine();
            return 0;
        });
        return cmd;
    }
}
