using NUnit.Framework;

namespace ScratchNet.Tests;

/// <summary>Requires.Package: a missing package skips the test, or fails it under SCRATCHNET_REQUIRE_ALL=1.</summary>
[TestFixture]
public sealed class RequiresTests
{
    const string Missing = "/nonexistent/scratchnet-probe";

    [Test]
    public void MissingPackage_IsSkipped_WithTheInstallCommand()
    {
        var e = Assert.Throws<IgnoreException>(() => Requires.Package("some-package", Missing, requireAll: null));
        Assert.That(e.Message, Does.Contain("needs the Debian package some-package: sudo apt-get install some-package"));
    }

    [Test]
    public void MissingPackage_FailsUnderRequireAll()
    {
        var e = Assert.Throws<AssertionException>(() => Requires.Package("some-package", Missing, requireAll: "1"));
        Assert.That(e.Message, Does.Contain("sudo apt-get install some-package").And.Contain("SCRATCHNET_REQUIRE_ALL=1"));
    }

    [TestCase(null)]
    [TestCase("1")]
    public void PresentPackage_Passes(string? requireAll) =>
        Assert.DoesNotThrow(() => Requires.Package("coreutils", "/bin/sh", requireAll));
}
