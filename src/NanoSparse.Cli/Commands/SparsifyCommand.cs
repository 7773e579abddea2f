using System.CommandLine;
using System.Globalization;
using NanoSparse.Training;
using Spectre.Console;

namespace NanoSparse.Cli.Commands;

/// <summary>`nanosparse sparsify`: a checkpoint whose weights hold zeros → the same model with sparse layouts (Training.Sparsify).</summary>
public static class SparsifyCommand
{
    public static Command Create(CliContext cli)
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint directory to read (training or imported)", Required = true };
        var output = new Option<string>("--out") { Description = "checkpoint directory to write (replaced as a whole)", Required = true };
        var format = new Option<string>("--format")
        {
            Description = "csr, nm:N:M (e.g. nm:2:4), bsr:RxC (e.g. bsr:4x4), or auto (per weight the fewest bytes that hold its zeros exactly; dense when sparse is not smaller)",
            DefaultValueFactory = _ => "auto",
        };
        var weights = new Option<string?>("--weights")
        {
            Description = "comma-separated weights to convert: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj (every layer) or h.<layer>.<weight>; default all",
        };
        var cmd = new Command("sparsify", "store the zeros of a checkpoint's Linear weights sparse (CSR, N:M or BSR layouts)");
        foreach (var o in new Option[] { checkpoint, output, format, weights }) cmd.Options.Add(o);
        cmd.SetAction(parse =>
        {
            string f = parse.GetValue(format)!;
            try { NanoSparse.Nn.Parts.SparseLayoutChoice.Validate(f); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            var list = parse.GetValue(weights)?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            string outDir = parse.GetValue(output)!;
            var result = Sparsify.Run(parse.GetValue(checkpoint)!, outDir, f, list);
            InspectCommand.WriteWeights(cli.Console, result.Select(r => (r, (long?)null)).ToList(), "weights written to " + outDir);
            return 0;
        });
        return cmd;
    }
}
