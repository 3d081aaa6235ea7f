"""publish/current.py with security fixes: a current version with the same fingerprint and a good
signature is up to date only while no security fix its org layer could apply is pending; and the nightly's
notes and commit message that name the fixes (old -> new, suite)."""

from __future__ import annotations

from factory.core import versioning
from factory.core.errors import VerificationFailed
from factory.core.labels import CONFORMANCE_PREDICATE_TYPE
from factory.oci.layout import Descriptor
from factory.publish import current, pipeline
from factory.render import plan
from factory.security.check import FixesChecker
from factory.security.report import FixesReport, FixesRun
from factory.spec import manifest
from tests.unit.catalog_fakes import FakeSigner
from tests.unit.test_security_check import AMD, ARM, World

V100 = versioning.Version(1, 0, 0)
V101 = versioning.Version(1, 0, 1)
FP = "sha256:" + "f" * 64


class Registry:
    """The registry calls current.py makes: the labels and a HEAD of the immutable tag."""

    def __init__(self, found_labels: dict) -> None:
        self.found_labels = found_labels

    def labels(self, repo, tag):
        return self.found_labels

    def head_manifest(self, repo, tag):
        return Descriptor("application/vnd.oci.image.index.v1+json", "sha256:" + "a" * 64, 10)


class Signer:
    def __init__(self, ok=True):
        self.ok = ok

    def verify(self, ref, **kw):
        if not self.ok:
            raise VerificationFailed("no matching signatures")
        return [{}]


class Security:
    """A SecurityCheck stand-in that counts its calls."""

    def __init__(self, found: plan.ImageFixes, policy="require"):
        self.found, self.policy, self.calls = found, policy, []

    def pending(self, name, version):
        self.calls.append((name, str(version)))
        return self.found


def dest(labels):
    from factory.publish.destination import Destination

    return Destination(Registry(labels), "myorg/base", "127.0.0.1:5000/myorg/base")


def test_no_pending_fix_keeps_the_current_version():
    security = Security(plan.ImageFixes("1.0.0"))
    assert current.is_current(dest({current.labels.FINGERPRINT_LABEL: FP}), Signer(), "deb", V100, FP, security)
    assert security.calls == [("deb", "1.0.0")]


def test_a_pending_security_fix_builds_the_next_patch():
    fixes = plan.ImageFixes("1.0.0", fixable=(plan.PendingFix("libpam0g", "1.5.2-6", "1.5.2-6+deb12u1",
                                                              "bookworm-security", (AMD,)),))
    assert not current.is_current(dest({current.labels.FINGERPRINT_LABEL: FP}), Signer(), "deb", V100, FP,
                                  Security(fixes))


def test_the_check_runs_only_when_fingerprint_and_signature_match():
    security = Security(plan.ImageFixes("1.0.0"))
    assert not current.is_current(dest({current.labels.FINGERPRINT_LABEL: "sha256:other"}), Signer(), "deb", V100,
                                  FP, security)
    assert not current.is_current(dest({current.labels.FINGERPRINT_LABEL: FP}), Signer(ok=False), "deb", V100, FP,
                                  security)
    assert security.calls == []


def test_policy_off_means_no_check():
    assert current.is_current(dest({current.labels.FINGERPRINT_LABEL: FP}), Signer(), "deb", V100, FP, None)


def test_a_failed_check_rebuilds_under_require_and_keeps_under_warn():
    unknown = plan.ImageFixes("1.0.0", errors=("deb 1.0.0 linux/amd64: archive unreachable",))
    d = dest({current.labels.FINGERPRINT_LABEL: FP})
    assert not current.is_current(d, Signer(), "deb", V100, FP, Security(unknown, "require"))
    assert current.is_current(d, Signer(), "deb", V100, FP, Security(unknown, "warn"))


def test_reports_merge_per_manifest_with_debug_security_only_and_errors(tmp_path):
    world = World(tmp_path)
    found = current.image_fixes(world.run(), manifest.load_all(world.settings))
    deb = found["deb"]
    assert deb.version == "1.0.1"
    assert [(f.package, f.suite, f.platforms) for f in deb.fixable] == [("libpam0g", "bookworm-security", (AMD, ARM))]
    assert found["static"].fixable == () and found["static"].upstream == ()  # no packages in its SBOM
    assert found["child"].fixable == ()  # tzdata is an update there, not a security fix
    failed = FixesReport("deb", "1.0.1", "deb-v1.0.1", "", ARM, "", "error", error="no verified SBOM")
    merged = current.image_fixes(FixesRun((failed,)), manifest.load_all(world.settings))
    assert merged["deb"] == plan.ImageFixes("1.0.1", errors=("deb 1.0.1 linux/arm64: no verified SBOM",))


def test_security_check_caches_what_it_found_by_image_and_version(tmp_path):
    world = World(tmp_path)

    class Checker:
        def __init__(self) -> None:
            self.manifests = manifest.load_all(world.settings)
            self.calls: list[tuple[str, ...]] = []
            self.settings, self.public_key = world.settings, None
            self.signer = FakeSigner(world.settings)  # no conformance record verifies: every fix counts

        def check(self, names=()):
            self.calls.append(tuple(names))
            return world.run(names)

    checker = Checker()
    security = current.SecurityCheck(checker, "require")  # type: ignore[arg-type]
    security.check()
    assert security.pending("deb", versioning.Version(1, 0, 1)).fixable
    assert checker.calls == [()]  # the nightly's plan checked everything: publish asks nothing again
    assert security.pending("deb", versioning.Version(1, 0, 2)) == plan.ImageFixes("1.0.2")  # not current: none known


def test_nightly_notes_name_the_packages_fixed():
    fixes = (plan.PendingFix("apt", "2.6.1", "2.6.2", "bookworm-security", (AMD, ARM)),
             plan.PendingFix("tzdata", "2026b-0+deb12u1", "2026f-0+deb12u1", "bookworm-security", (AMD,)))
    base = plan.PlannedImage("base", True, ("security fixes",), FP, "1.0.0", "sha256:" + "b" * 64, "1.0.1",
                             "up:12@x", "x", (AMD, ARM), None, fixes)
    app = plan.PlannedImage("app", True, ("parent changed",), None, "1.0.0", None, "1.0.1", "base", None, (AMD,),
                            "base")
    notes = pipeline.plan_notes(plan.Plan((base, app), ("static 1.0.0: 1 security fix(es) only ...",)))
    assert notes == [
        "plan: base: security fixes",
        "security fixes for base (pending in 1.0.0): apt 2.6.1 -> 2.6.2 (bookworm-security), "
        "tzdata 2026b-0+deb12u1 -> 2026f-0+deb12u1 (bookworm-security)",
        "plan: app: parent changed",
        "note: static 1.0.0: 1 security fix(es) only ...",
    ]


def test_the_render_commit_of_a_bump_names_the_fixes_pending_in_the_bumped_images():
    fixes = {"base": plan.ImageFixes("1.0.0", fixable=(plan.PendingFix("apt", "2.6.1", "2.6.2", "bookworm-security",
                                                                       (AMD,)),)),
             "other": plan.ImageFixes("1.0.0", fixable=(plan.PendingFix("x", "1", "2", "s", (AMD,)),))}
    message = pipeline.render_commit_message(["base"], fixes)
    assert message == ("images: render after upstream bumps (base)\n\n"
                       "security fixes for base (pending in 1.0.0): apt 2.6.1 -> 2.6.2 (bookworm-security)")
    assert pipeline.render_commit_message(["app"], fixes) == "images: render after upstream bumps (app)"


def test_a_debug_variants_fixes_count_for_its_image_and_say_where():
    from factory.security.fixes import Fix

    class WithDebug:
        def variant(self, name):
            return name == "debug"

    pam = Fix("libpam0g", "amd64", "1.5.2-6", "1.5.2-6+deb12u1", "bookworm-security", "security", "pam")
    curl = Fix("curl", "amd64", "7.88.1-10", "7.88.1-10+deb12u9", "bookworm-security", "security", "curl")
    prod = FixesReport("deb", "1.0.1", "deb-v1.0.1", "", AMD, "", "fixable", fixes=(pam,))
    debug = FixesReport("deb-debug", "1.0.1", "deb-debug-v1.0.1", "", AMD, "", "fixable", fixes=(curl, pam))
    (found,) = current.image_fixes(FixesRun((prod, debug)), {"deb": WithDebug()}).values()
    assert [(f.package, f.platforms) for f in found.fixable] == [("curl", ("debug linux/amd64",)),
                                                                ("libpam0g", (AMD, "debug linux/amd64"))]


def test_a_fix_its_build_already_left_pending_does_not_rebuild_again(tmp_path):
    """Held or kept back: under warn the build published with it pending; a rebuild would not apply it
    either, so it must not write a new version every night. It is set apart, and noted."""
    world = World(tmp_path)
    checker = FixesChecker(world.settings, lambda host: world.registry, None, manifest.load_all(world.settings),
                           world.archives)
    left = {"policy": "warn", "checked": "2026-12-01T03:17:00Z", "platforms": {p: {
        "status": "fixable", "suites": [], "applied": [], "pendingSecurity": 1,
        "pending": [{"package": "libpam0g", "arch": p.split("/")[1], "installed": "1.5.2-6",
                     "candidate": "1.5.2-6+deb12u1", "suite": "bookworm-security", "kind": "security"}]}
        for p in (AMD, ARM)}}

    class Signer(FakeSigner):
        def verify_attestation(self, ref, predicate_type, *, public_key=None):
            if predicate_type == CONFORMANCE_PREDICATE_TYPE and ref.endswith(world.deb):
                return [{"predicate": {"passed": True, "securityFixes": left}}]
            return super().verify_attestation(ref, predicate_type, public_key=public_key)

    checker.signer = Signer(world.settings, sboms=world.sboms)
    found = current.SecurityCheck(checker, "warn").check(["deb"])["deb"]
    assert found.fixable == () and [f.package for f in found.left] == ["libpam0g"]
    (note,) = plan.fixes_notes({"deb": found}, ["deb"])
    assert note.startswith("deb 1.0.1: 1 security fix(es) its build could not apply")
    # a newer candidate than the one the build saw is a new fix: it counts again
    left["platforms"][AMD]["pending"][0]["candidate"] = "1.5.2-6+deb12u0"
    again = current.SecurityCheck(checker, "warn").check(["deb"])["deb"]
    assert [(f.package, f.platforms) for f in again.fixable] == [("libpam0g", (AMD,))]
