"""factory.security.check over in-memory stand-ins for the registry, cosign and the archives (the
integration test, tests/integration/test_fixes.py, runs it against the real ones and apt)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from factory.archive.types import ArchiveIndex, Package, Suite
from factory.core.errors import UsageError
from factory.security.check import FixesChecker, Release, release_of
from factory.spec import manifest
from factory.spec.config import default_archives
from tests.unit.catalog_fakes import FakeRegistry, FakeSigner, settings

AMD, ARM = "linux/amd64", "linux/arm64"
DIGEST = "sha256:" + "1" * 64
DATE = datetime(2026, 11, 30, tzinfo=UTC)

DEB = f"""\
apiVersion: factory/v1
name: deb
version: "1.0"
description: Debian 12
upstream: {{image: 127.0.0.1:5000/upstream/debian, tag: "12", digest: "{DIGEST}"}}
distro: debian
release: "12"
eol: "2027-03-31"
"""
CHILD = """\
apiVersion: factory/v1
name: child
version: "1.0"
description: a child of deb, no release of its own
parent: deb
distro: debian
"""
STATIC = f"""\
apiVersion: factory/v1
name: static
version: "1.0"
description: distroless static
upstream: {{image: 127.0.0.1:5000/upstream/static, tag: nonroot, digest: "{DIGEST}"}}
distro: distroless
release: "12"
eol: "2027-03-31"
"""


def deb_bom(packages: dict[str, str], arch: str = "amd64") -> dict:
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": [
        {"type": "operating-system", "name": "debian", "version": "12.12"},
        *({"type": "library", "name": n, "version": v, "purl": f"pkg:deb/debian/{n}@{v}?arch={arch}"}
          for n, v in packages.items())]}


class FakeArchives:
    """bookworm for amd64 and arm64: libpam0g has a security fix, tzdata an update."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, str, str]] = []

    def index_for(self, distro: str, codename: str, platform: str) -> ArchiveIndex:
        self.asked.append((distro, codename, platform))
        arch = platform.split("/")[1]
        release = Suite("debian", codename, codename, "release", DATE, "http://deb.debian.org/debian")
        security = Suite("debian", codename, f"{codename}-security", "security", DATE, "http://security")
        updates = Suite("debian", codename, f"{codename}-updates", "updates", DATE, "http://deb.debian.org/debian")
        packages = [Package("libpam0g", "1.5.2-6", arch, "pam", release),
                    Package("libpam0g", "1.5.2-6+deb12u1", arch, "pam", security),
                    Package("tzdata", "2026f-0+deb12u1", "all", "tzdata", updates)]
        return ArchiveIndex.of("debian", codename, arch, (release, updates, security), packages)


class World:
    def __init__(self, tmp_path: Path) -> None:
        self.registry = FakeRegistry()
        # distinct labels: the same content would be the same digest
        self.deb, self.deb_p = self.registry.image({AMD: ({"t": "deb"}, [10]), ARM: ({"t": "deb"}, [10])})
        self.static, self.static_p = self.registry.image({AMD: ({"t": "static"}, [10])})
        self.child, self.child_p = self.registry.image({AMD: ({"t": "child"}, [10])})
        for tag, digest in {"deb-v1.0.0": self.deb, "deb-v1.0.1": self.deb, "static-v1.0.0": self.static,
                            "child-v1.0.0": self.child}.items():
            self.registry.tag("myorg/base", tag, digest)
        self.settings = settings(tmp_path, {"deb": DEB, "child": CHILD, "static": STATIC,
                                            "new": DEB.replace("name: deb", "name: new")})
        packages = {"libpam0g": "1.5.2-6", "tzdata": "2026b-0+deb12u1"}
        self.sboms = {self.deb_p[AMD]: deb_bom(packages), self.deb_p[ARM]: deb_bom(packages, "arm64"),
                      self.static_p[AMD]: {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []},
                      self.child_p[AMD]: deb_bom({"tzdata": "2026f-0+deb12u1"})}
        self.archives = FakeArchives()

    def run(self, names=(), *, unverified: tuple[str, ...] = ()):
        sboms = {d: s for d, s in self.sboms.items() if d not in unverified}
        signer = FakeSigner(self.settings, sboms=sboms)
        return FixesChecker(self.settings, lambda host: self.registry, signer, manifest.load_all(self.settings),
                            self.archives).check(names)


def test_each_platform_of_the_current_version_is_matched(tmp_path):
    world = World(tmp_path)
    run = world.run(["deb"])
    assert [(r.image, r.version, r.platform, r.status) for r in run.reports] == [
        ("deb", "1.0.1", AMD, "fixable"), ("deb", "1.0.1", ARM, "fixable")]
    amd = run.reports[0]
    assert (amd.tag, amd.index_digest, amd.digest) == ("deb-v1.0.1", world.deb, world.deb_p[AMD])
    assert [(f.package, f.kind, f.suite) for f in amd.fixes] == [
        ("libpam0g", "security", "bookworm-security"), ("tzdata", "update", "bookworm-updates")]
    assert amd.packages == 2 and [s.name for s in amd.suites] == ["bookworm", "bookworm-updates", "bookworm-security"]
    assert world.archives.asked == [("debian", "bookworm", AMD), ("debian", "bookworm", ARM)]
    assert run.outcome() is not None and run.outcome().exit_code == 4


def test_an_sbom_that_does_not_verify_is_an_error_for_that_platform(tmp_path):
    world = World(tmp_path)
    run = world.run(["deb"], unverified=(world.deb_p[ARM],))
    arm = run.reports[1]
    assert (arm.platform, arm.status, arm.fixes) == (ARM, "error", ())
    assert "no verified cyclonedx attestation" in arm.error
    error = run.outcome()
    assert error is not None and error.exit_code == 2
    assert f"deb 1.0.1 {ARM}: no verified cyclonedx attestation" in str(error)


def test_no_shell_images_are_for_the_upstream_to_rebuild(tmp_path):
    world = World(tmp_path)
    (static,) = world.run(["static"]).reports
    assert static.status == "upstream must rebuild" and "no deb/apk packages" in static.note
    # distroless with a dpkg status.d: matched against its Debian release, still not fixable here
    world.sboms[world.static_p[AMD]] = deb_bom({"libpam0g": "1.5.2-6"})
    run = world.run(["static"])
    (static,) = run.reports
    assert (static.status, static.distro, static.codename) == ("upstream must rebuild", "debian", "bookworm")
    assert [f.package for f in static.fixes] == ["libpam0g"]
    assert run.outcome() is None


def test_children_take_their_parents_release_and_unpublished_ones_are_listed(tmp_path):
    world = World(tmp_path)
    run = world.run()
    assert run.unpublished == ("new",)
    child = next(r for r in run.reports if r.image == "child")
    assert (child.codename, child.fixes) == ("bookworm", ())
    assert run.note().startswith("2 security fix(es) pending")  # deb on two platforms


def test_an_unknown_name_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no manifest named nope"):
        World(tmp_path).run(["nope"])
    with pytest.raises(UsageError, match="did you mean deb"):
        World(tmp_path).run(["debb"])


def test_release_of_falls_back_to_the_sboms_operating_system(tmp_path):
    world = World(tmp_path)
    manifests = manifest.load_all(world.settings)
    no_release = {**manifests, "deb": replace(manifests["deb"], release=None)}
    assert release_of(no_release["child"], no_release, deb_bom({})) == Release("debian", "bookworm")
    assert release_of(no_release["child"], no_release, {"components": []}) is None
    alpine = replace(manifests["deb"], distro="alpine", release="3.20")
    assert release_of(alpine, manifests, {}) == Release("alpine", "v3.20")


def test_archive_settings_default_to_the_public_mirrors(tmp_path):
    s = settings(tmp_path)
    assert s.archives == default_archives()
