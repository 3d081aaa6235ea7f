"""The version the registry holds now: whether it was built from the same inputs, verifies with our
key and has no security fix pending that its org layer could apply, in which case a publish builds
nothing.

The security check (``SecurityCheck``, policy.security_fixes ``require`` or ``warn``) runs only for a
version whose fingerprint matches and whose signature verifies: a version that is rebuilt anyway costs
nothing more. It is `factory fixes` for that one image (``factory.security.check``), and what it found
is kept for the run by (image, version), so that the nightly's plan and its publish check each version
once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set

from factory.core import labels, log, versioning
from factory.core.errors import FactoryError
from factory.core.model import Manifest
from factory.publish.destination import Destination
from factory.publish.report import VariantResult
from factory.render.plan import ImageFixes, PendingFix
from factory.security import record
from factory.security.check import FixesChecker
from factory.security.report import ERROR, FIXABLE, UPSTREAM_MUST_REBUILD, FixesReport, FixesRun
from factory.trust.sign import Signing


class SecurityCheck:
    """One run's view of pending security fixes: one ``FixesChecker`` (one ``Archives``: each index is
    read once), and what it found by (image, version)."""

    def __init__(self, checker: FixesChecker, policy: str) -> None:
        self.checker = checker
        self.policy = policy  # require | warn (off: no SecurityCheck at all)
        self._found: dict[tuple[str, str], ImageFixes] = {}

    def check(self, names: Sequence[str] = ()) -> dict[str, ImageFixes]:
        """manifest name -> what its current version has pending (names: all when empty). A fix its build
        recorded as still pending (same package and candidate: held, kept back) is not one a rebuild would
        apply: it is set apart, or every publish would write a new version that has it again."""
        run = self.checker.check(names)
        found = image_fixes(run, self.checker.manifests, self._left_at_build(run))
        self._found.update({(name, f.version): f for name, f in found.items()})
        return found

    def _left_at_build(self, run: FixesRun) -> set[tuple[str, str, str, str]]:
        """(image, platform, package, candidate) of each pending security fix that the version's own
        conformance record says its build left pending. Read only for versions with fixes pending."""
        left: set[tuple[str, str, str, str]] = set()
        indexes = {(r.image, r.index_digest) for r in run.of(FIXABLE) if r.security and r.index_digest}
        for image, digest in sorted(indexes):
            ref = f"{self.checker.settings.target}@{digest}"
            try:
                statements = self.checker.signer.verify_attestation(ref, labels.CONFORMANCE_PREDICATE_TYPE,
                                                                    public_key=self.checker.public_key)
                doc = (statements[-1].get("predicate") or {}).get(record.KEY)
                recorded = record.SecurityFixes.from_json(doc) if doc is not None else None
            except (FactoryError, ValueError) as e:  # no record to go by: every pending fix counts
                log.get("publish").info("no build record of pending fixes", image=image, reason=str(e))
                continue
            for platform, p in (recorded.platforms.items() if recorded else ()):
                left |= {(image, platform, f.package, f.candidate) for f in p.pending_security}
        return left

    def pending(self, name: str, version: versioning.Version) -> ImageFixes:
        key = (name, str(version))
        if key not in self._found:
            self.check([name])
        return self._found.get(key) or ImageFixes(str(version))


LEFT = "left"  # pending at build too


def image_fixes(run: FixesRun, manifests: Mapping[str, Manifest],
                left_at_build: Set[tuple[str, str, str, str]] = frozenset()) -> dict[str, ImageFixes]:
    """`factory fixes`'s reports, per manifest: its prod and debug variants' security fixes merged by
    package and version (the platforms where each is pending listed), the ones only a new upstream brings
    and the ones its build already left pending (``left_at_build``: image, platform, package, candidate)
    apart, and the checks that failed. Other updates (not security fixes) do not rebuild anything."""
    names = {versioning.tag_prefix(n, debug=True): n for n, m in manifests.items() if m.variant("debug")}
    names |= {n: n for n in manifests}
    grouped: dict[str, list[FixesReport]] = {}
    for r in run.reports:
        grouped.setdefault(names.get(r.image, r.image), []).append(r)
    return {name: _merged(name, reports, left_at_build) for name, reports in grouped.items()}


def _merged(name: str, reports: Sequence[FixesReport], left_at_build: Set[tuple[str, str, str, str]]) -> ImageFixes:
    prod = [r for r in reports if r.image == name] or list(reports)
    found: dict[str, dict[tuple[str, str, str, str], list[str]]] = {FIXABLE: {}, UPSTREAM_MUST_REBUILD: {}, LEFT: {}}
    for r in reports:
        where = r.platform if r.image == name else f"debug {r.platform}"
        for f in r.security if r.status in found else ():
            kind = LEFT if (r.image, r.platform, f.package, f.candidate) in left_at_build else r.status
            found[kind].setdefault((f.package, f.installed, f.candidate, f.suite), []).append(where)

    def fixes(status: str) -> tuple[PendingFix, ...]:
        return tuple(PendingFix(*key, platforms=tuple(where)) for key, where in sorted(found[status].items()))

    return ImageFixes(version=prod[0].version, fixable=fixes(FIXABLE), upstream=fixes(UPSTREAM_MUST_REBUILD),
                      errors=tuple(f"{r.where}: {r.error}" for r in reports if r.status == ERROR), left=fixes(LEFT))


def is_current(dest: Destination, signer: Signing, name: str, version: versioning.Version, fp: str,
               security: SecurityCheck | None = None) -> bool:
    """``version`` of ``name`` has fingerprint ``fp``, a signature that verifies and (with ``security``)
    no security fix pending that its org layer could apply."""
    return (published_fingerprint(dest, name, version) == fp and verifies(dest, signer, name, version)
            and fresh(security, name, version))


def fresh(security: SecurityCheck | None, name: str, version: versioning.Version) -> bool:
    """No security fix the org layer could apply is pending in ``version`` (always, with no check). When
    the check failed nothing is known: under ``require`` a new version is built (its gate checks again),
    under ``warn`` the current one stays, with a warning."""
    if security is None:
        return True
    found = security.pending(name, version)
    logger = log.get("publish")
    if found.fixable:
        logger.info("current version has security fixes pending: publishing a new version", image=name,
                    version=str(version), fixes=[str(f) for f in found.fixable])
        return False
    if found.errors:
        logger.warning("security fixes of the current version not checked", image=name, version=str(version),
                       errors=list(found.errors), policy=security.policy,
                       outcome="publishing a new version" if security.policy == "require" else "kept")
        return security.policy != "require"
    return True


def published_fingerprint(dest: Destination, name: str, version: versioning.Version) -> str | None:
    tag = versioning.immutable_tag(name, version)
    return dest.registry.labels(dest.repository, tag).get(labels.FINGERPRINT_LABEL)


def verifies(dest: Destination, signer: Signing, name: str, version: versioning.Version) -> bool:
    """The current version counts as ours only when its signature verifies with our key: an image
    whose label matches but that we cannot verify is replaced by a new, verifiable version."""
    found = dest.registry.head_manifest(dest.repository, versioning.immutable_tag(name, version))
    try:
        if found is None:  # the tag went away since its labels were read
            raise FactoryError(f"{versioning.immutable_tag(name, version)} is not in {dest.name}")
        signer.verify(dest.by_digest(found.digest))
    except FactoryError as e:
        log.get("publish").warning("current version does not verify: publishing a new one", image=name,
                                   version=str(version), reason=e.message)
        return False
    return True


def current_result(dest: Destination, prefix: str, version: versioning.Version, fp: str) -> VariantResult:
    """The result of a variant that is already published (no tags written yet)."""
    found = dest.registry.head_manifest(dest.repository, versioning.immutable_tag(prefix, version))
    return VariantResult(tag_prefix=prefix, version=str(version), fingerprint=fp,
                         index_digest=found.digest if found else "", tags=[])
