namespace NanoSparse.Data;

/// <summary>Element type of a flat little-endian token file (nanoGPT writes uint16).</summary>
public enum TokenDtype { UInt16, UInt32 }

public static class TokenDtypes
{
    /// <summary>uint16 holds ids below 65536, so a vocabulary of up to 65536 symbols; larger ones need uint32.</summary>
    public static TokenDtype ForVocabSize(int vocabSize) => vocabSize <= 65536 ? TokenDtype.UInt16 : TokenDtype.UInt32;

    public static int SizeInBytes(this TokenDtype dtype) => dtype switch
    {
        TokenDtype.UInt16 => 2,
        TokenDtype.UInt32 => 4,
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "token dtype must be UInt16 or UInt32"),
    };

    /// <summary>The name used in meta.json: "uint16" or "uint32".</summary>
    public static string ToJsonName(this TokenDtype dtype) => dtype switch
    {
        TokenDtype.UInt16 => "uint16",
        TokenDtype.UInt32 => "uint32",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "token dtype must be UInt16 or UInt32"),
    };

    public static bool TryParse(string? name, out TokenDtype dtype)
    {
        switch (name)
        {
            case "uint16": dtype = TokenDtype.UInt16; return true;
            case "uint32": dtype = TokenDtype.UInt32; return true;
            default: dtype = default; return false;
        }
    }
}
