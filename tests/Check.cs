using NUnit.Framework;
using ScratchNet.Kernels;

namespace ScratchNet.Tests;

public static class Check
{
    /// <summary>Asserts every element within atol + rtol * |expected|, reporting the worst index.</summary>
    public static void Close(float[] actual, float[] expected, double atol, double rtol, string what)
    {
        Assert.That(actual, Has.Length.EqualTo(expected.Length), what);
        var (worst, excess, _) = Reference.Compare(actual, expected, atol, rtol);
        if (worst >= 0 && excess > 0)
            Assert.Fail($"{what}: element {worst} is {actual[worst]}, expected {expected[worst]} (tolerance {atol} + {rtol} x |expected|)");
    }
}
