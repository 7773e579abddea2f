using System.CommandLine;
using NanoSparse.IO;

namespace NanoSparse.Cli.Commands;

/// <summary>
/// `nanosparse import` and `nanosparse export`: nanoGPT / Hugging Face GPT-2 checkpoints ↔ NanoSparse checkpoints.
/// Errors propagate as exceptions whose messages name the file, tensor or field; Program.Run prints them as `error: ...`.
/// </summary>
public static class InteropCommands
{
    public static Command CreateImportCommand()
    {
        var format = new Option<string>("--format") { Description = "format of the weights: nanogpt or gpt2", Required = true };
        format.AcceptOnlyFromAmong("nanogpt", "gpt2");
        var weights = new Argument<string>("weights") { Description = "the .safetensors file to import" };
        var config = new Option<string?>("--config")
        {
            Description = "model config JSON (nanogpt: n_layer n_head n_embd block_size vocab_size bias; gpt2: Hugging Face config.json); default: config.json beside the weights",
        };
        var output = new Option<string>("--out") { Description = "NanoSparse checkpoint directory to write (model.safetensors + config.json)", Required = true };
        var cmd = new Command("import", "convert a nanoGPT or Hugging Face GPT-2 checkpoint into a NanoSparse checkpoint directory");
        cmd.Arguments.Add(weights);
        cmd.Options.Add(format);
        cmd.Options.Add(config);
        cmd.Options.Add(output);
        cmd.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var f = ModelImporter.ParseFormat(parse.GetValue(format)!);
            string outDir = parse.GetValue(output)!;
            var dims = ModelImporter.Import(f, parse.GetValue(weights)!, parse.GetValue(config), outDir);
            stdout.WriteLine($"imported {f} model (n_layer={dims.NLayer}, n_head={dims.NHead}, n_embd={dims.NEmbd}, block_size={dims.BlockSize}, vocab_size={dims.VocabSize}, bias={dims.Bias.ToString().ToLowerInvariant()}, activation={dims.Activation}) into {outDir}");
            if (dims.Activation != GptDims.GeluExact)
                stdout.WriteLine($"note: this model uses the {dims.Activation} activation (tanh-approximated GELU), recorded in config.json");
            return 0;
        });
        return cmd;
    }

    public static Command CreateExportCommand()
    {
        var format = new Option<string>("--format") { Description = "format to write: nanogpt or gpt2", Required = true };
        format.AcceptOnlyFromAmong("nanogpt", "gpt2");
        var checkpoint = new Argument<string>("checkpoint") { Description = "NanoSparse checkpoint directory (model.safetensors + config.json or state.json)" };
        var output = new Option<string>("--out") { Description = "directory to write model.safetensors + config.json into", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "element type: f32, f16 or bf16", DefaultValueFactory = _ => "f32" };
        dtype.AcceptOnlyFromAmong("f32", "f16", "bf16");
        var cmd = new Command("export", "write a NanoSparse checkpoint as a nanoGPT state_dict or a Hugging Face GPT-2 model");
        cmd.Arguments.Add(checkpoint);
        cmd.Options.Add(format);
        cmd.Options.Add(output);
        cmd.Options.Add(dtype);
        cmd.SetAction(parse =>
        {
            var stdout = parse.InvocationConfiguration.Output;
            var f = ModelImporter.ParseFormat(parse.GetValue(format)!);
            var dt = parse.GetValue(dtype) switch { "f16" => SafeTensorsDtype.F16, "bf16" => SafeTensorsDtype.BF16, _ => SafeTensorsDtype.F32 };
            string outDir = parse.GetValue(output)!;
            var dims = ModelImporter.Export(f, parse.GetValue(checkpoint)!, outDir, dt);
            stdout.WriteLine($"exported {dims.NLayer}-layer model as {f} ({dt}) to {outDir}");
            if (f == ModelFormat.NanoGpt && dims.Activation != GptDims.GeluExact)
                stdout.WriteLine($"note: the model uses {dims.Activation}; nanoGPT's MLP computes the exact GELU (nn.GELU()), so change its model.py to nn.GELU(approximate='tanh') to reproduce it");
            return 0;
        });
        return cmd;
    }
}
