"""Every error class and every exit code of the factory: one exception tree, one table.

Expected failures are typed errors carrying an exit code and a message; only ``factory.cli.main``
exits the process, and it maps exceptions to codes through this table alone.

Exit codes (documented in the README and relied on by CI):

====  ==================  ==================================================================
code  name                meaning
====  ==================  ==================================================================
0     EXIT_OK             ok
1     EXIT_PROBLEM        the work found a problem: invalid manifest, failed policy or gate, failed
                          build/test/publish, stale rendered contexts, not verified
2     EXIT_ENVIRONMENT    usage or environment error: bad config or arguments, missing tool,
                          unreachable daemon or registry, refused credentials
3     EXIT_DRIFT          drift: an upstream tag moved (``factory drift`` only)
4     EXIT_FIXES_PENDING  security fixes pending that a rebuild of the org image applies
                          (``factory fixes`` only; other updates alone, or fixes only a new
                          upstream can bring, are 0 with a note; a check that failed is 2)
70    EXIT_BUG            internal error: a bug in the factory (the traceback is printed)
130   EXIT_INTERRUPTED    interrupted (Ctrl-C), as shells report a SIGINT death (128 + 2)
====  ==================  ==================================================================
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from dataclasses import dataclass

EXIT_OK = 0
EXIT_PROBLEM = 1
EXIT_ENVIRONMENT = 2
EXIT_DRIFT = 3
EXIT_FIXES_PENDING = 4
EXIT_BUG = 70
EXIT_INTERRUPTED = 130


class FactoryError(Exception):
    """An expected failure: printed as one message, no traceback."""

    exit_code = EXIT_PROBLEM

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


class EnvironmentProblem(FactoryError):
    """The machine lacks something: a tool, a daemon, a service."""

    exit_code = EXIT_ENVIRONMENT


class ConfigError(FactoryError):
    """factory.yaml or an environment override is invalid."""

    exit_code = EXIT_ENVIRONMENT


class UsageError(FactoryError):
    exit_code = EXIT_ENVIRONMENT


@dataclass(frozen=True)
class Problem:
    """One finding in one file: rendered as ``path:line: key.path: message``."""

    path: str
    line: int | None
    key: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class ManifestError(FactoryError):
    """One or more manifests are invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        files = len({p.path for p in self.problems})
        super().__init__(
            "\n".join(str(p) for p in self.problems)
            + f"\n{len(self.problems)} problem(s) in {files} file(s)"
        )


class CommandError(FactoryError):
    """An external command failed. Carries argv, exit code and stderr: never an empty result."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, *, step: str = "") -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        self.step = step
        tail = "\n".join(stderr.strip().splitlines()[-20:])
        # Without the step: what a caller that names the step itself (StepFailed) shows.
        self.detail = f"`{' '.join(self.argv[:3])} ...` {exit_words(returncode)}:\n{tail}"
        super().__init__(f"{step}: {self.detail}" if step else self.detail)


def exit_words(returncode: int) -> str:
    """`exited 1`, or for a process that crashed or was killed, `was killed by SIGSEGV` (subprocess
    reports death by signal N as the return code -N)."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"was killed by {name}"
    return f"exited {returncode}"


class StepFailed(FactoryError):
    """A pipeline step failed for one image (and maybe one platform); nothing was tagged."""

    def __init__(self, image: str, step: str, message: str, *, platform: str | None = None,
                 hint: str | None = None) -> None:
        self.image, self.step, self.platform = image, step, platform
        where = f"{image} [{platform}]" if platform else image
        super().__init__(f"{where}: {step} failed: {message}", hint=hint)


# --- environment and usage (exit 2) ---------------------------------------------------------------


class DoctorFailed(EnvironmentProblem):
    """`factory doctor` found a tool or service missing; its report was printed before this."""

    def __init__(self, missing: Sequence[str]) -> None:
        super().__init__(f"environment incomplete: {', '.join(missing)}")


# --- spec: manifests, certificates ------------------------------------------------------------------


class ValidationFailed(FactoryError):
    """`factory validate` found errors; they were printed one per line before this."""

    def __init__(self, errors: int) -> None:
        super().__init__(f"{errors} error(s) in the manifests; see the lines above",
                         hint="docs/manifests.md describes every key")


class CertificateError(FactoryError):
    """A listed CA file cannot be trusted: missing, outside the repository, not PEM, not a CA, expired ..."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class RepoFileError(FactoryError):
    """A file of the repository cannot be read or written safely: outside it (through a link), not a
    regular file, too large (``factory.spec.repofs``)."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class IgnoreFileError(ManifestError):
    """The vulnerability ignore file is invalid: every problem, each with file, line and key."""


# --- render --------------------------------------------------------------------------------------


class RenderError(FactoryError):
    """A manifest value cannot be rendered safely. ``render_manifest`` turns it into a ManifestError
    that names the file, line and key."""

    def __init__(self, key: str, reason: str) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"{key}: {reason}")


class StaleRender(FactoryError):
    """``factory render --check``: the committed build contexts differ from what the manifests render."""


class StaleContexts(FactoryError):
    """publish refuses contexts that differ from what the manifests render: it builds only what was reviewed."""

    def __init__(self, diff: str) -> None:
        super().__init__("rendered build contexts are stale; publish builds only what was rendered and reviewed:\n"
                         + diff, hint="run `factory render` and commit images/")


# --- oci: registries and layouts ----------------------------------------------------------------------


class RegistryError(FactoryError):
    """A registry request failed: carries the method, URL, HTTP status and the registry's error."""

    def __init__(self, message: str, *, method: str = "", url: str = "", status: int | None = None,
                 code: str = "", detail: str = "", hint: str | None = None) -> None:
        self.method, self.url, self.status, self.code, self.detail = method, url, status, code, detail
        where = f"{method} {url}: " if method else ""
        super().__init__(f"{where}{message}", hint=hint)


class RegistryAuthError(RegistryError):
    """Credentials missing or refused: an environment problem, not a problem with the image."""

    exit_code = EXIT_ENVIRONMENT


class RegistryUnreachable(RegistryError):
    exit_code = EXIT_ENVIRONMENT


class TagExists(RegistryError):
    """The immutable-tag guard: the tag already points at another manifest."""


class LayoutError(FactoryError):
    """The OCI layout is missing, malformed, or does not match its own digests."""


class ImageNotFound(FactoryError):
    """A reference names no image, or the image has no such platform."""


# --- build and gates ------------------------------------------------------------------------------------


class BuildFailed(CommandError):
    """buildx failed. ``platforms``: those BuildKit reports a failed step for, read from its output
    for the message only (nothing decides on them); empty when the output names none."""

    def __init__(self, error: CommandError, platforms: list[str]) -> None:
        super().__init__(error.argv, error.returncode, error.stderr, step=error.step)
        self.platforms = platforms


class SbomError(FactoryError):
    """A generator ran but did not produce a usable CycloneDX document."""


class ScanError(FactoryError):
    """A scanner report could not be read."""


# --- trust ---------------------------------------------------------------------------------------------


class VerificationFailed(FactoryError):
    """A signature or attestation did not verify."""


class NotVerified(FactoryError):
    """`factory verify` found a check failing; the report was printed before this."""

    def __init__(self, ref: str, failed: Sequence[str]) -> None:
        super().__init__(f"{ref}: not verified: {', '.join(failed)}")


class BasesRefused(FactoryError):
    """`factory check-dockerfile` found a base an app may not build on; the findings were printed before this."""

    def __init__(self, errors: int, files: int) -> None:
        super().__init__(f"{errors} base image problem(s) in {files} Dockerfile(s)")


# --- publish and drift ----------------------------------------------------------------------------------


class PublishFailed(FactoryError):
    """Some images failed or were skipped; ``lines`` says which, where and why. Nothing of theirs was tagged."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("publish failed; no tag of these images was written or moved:\n  " + "\n  ".join(lines))


class DriftFound(FactoryError):
    """`factory drift`: an upstream tag points at another digest than the manifest pins."""

    exit_code = EXIT_DRIFT


# --- archive: distribution indexes (exit 2: without a trusted index nothing can be said about fixes) -----


class ArchiveError(EnvironmentProblem):
    """A distribution archive index cannot be used; carries the URL (or file) concerned.
    Never turned into "no fixes": without a verified index nothing is known."""

    def __init__(self, message: str, *, url: str = "", hint: str | None = None) -> None:
        self.url = url
        super().__init__(f"{url}: {message}" if url else message, hint=hint)


class ArchiveUnreachable(ArchiveError):
    """The mirror did not answer, answered with an HTTP error, or sent more than the size bound."""


class ArchiveSignatureError(ArchiveError):
    """InRelease did not verify with the distro keyring (gpgv), or APKINDEX.tar.gz's RSA signature did
    not verify with the configured keys, or the keyring/keys are missing."""


class ArchiveHashMismatch(ArchiveError):
    """A Packages file's SHA256 or size differs from the one its signed InRelease lists, or is not listed."""


class ArchiveFormatError(ArchiveError):
    """An index file is not in its documented format (InRelease, Packages, APKINDEX)."""


# --- security fixes (`factory fixes`) ------------------------------------------------------------------


class VulnerableImages(FactoryError):
    """`factory scan` found a blocking vulnerability in a current version (or could not scan where the policy
    says fail); the findings were printed before this."""

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("current versions that fail the vulnerability gate:\n  " + "\n  ".join(lines),
                         hint="rebuild them (`factory publish NAME`; the nightly plans them as 'vulnerable'), or "
                              "waive a finding in vuln-ignore.yaml with a reason and an expiry")


class FixesPending(FactoryError):
    """`factory fixes`: security fixes the org layer can apply are pending; the report was printed before this."""

    exit_code = EXIT_FIXES_PENDING

    def __init__(self, count: int, images: Sequence[str]) -> None:
        super().__init__(f"{count} security fix(es) pending in {', '.join(images)}",
                         hint="`factory publish` rebuilds these images with the fixes")


class FixesCheckFailed(FactoryError):
    """`factory fixes` could not check some images (an SBOM that did not verify, an archive not read):
    nothing is known about their fixes, which is never "none pending"."""

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, lines: Sequence[str]) -> None:
        super().__init__("fixes not checked for:\n  " + "\n  ".join(lines))
