"""The app-team commands behind the CLI: check-dockerfile, policies, lifecycle and prune, each taking
the settings and the run's parts (the CLI is glue over these)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from factory.consume import appcheck, lifecycle, policies, sarif
from factory.consume.appcheck import Checker, Finding
from factory.core.errors import UsageError
from factory.core.model import Manifest
from factory.core.reference import Ref
from factory.oci.registry import Registry
from factory.spec.config import Settings
from factory.trust import verify as verify_mod
from factory.trust.sign import Signer

DOCKERFILE_GLOBS = ("Dockerfile", "*.Dockerfile", "Dockerfile.*", "Containerfile")


def dockerfiles(paths: Sequence[Path]) -> list[Path]:
    """The files given, and the Dockerfiles under each folder given (.git and node_modules skipped)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = {p for g in DOCKERFILE_GLOBS for p in path.rglob(g)
                     if p.is_file() and not {".git", "node_modules"} & set(p.parts)}
            out += sorted(found)
        elif path.is_file():
            out.append(path)
        else:
            raise UsageError(f"{path}: no such file or folder")
    if not out:
        raise UsageError("no Dockerfile found in " + ", ".join(map(str, paths)))
    return out


@dataclass(frozen=True)
class CheckResult:
    findings: list[Finding]
    checked: int  # FROM lines
    files: int

    @property
    def errors(self) -> int:
        return sum(f.level == appcheck.ERROR for f in self.findings)

    def render(self, fmt: str) -> str:
        if fmt == "json":
            return appcheck.as_json(self.findings, self.checked)
        if fmt == "sarif":
            return sarif.dumps(self.findings)
        return appcheck.table(self.findings, self.checked)


def check_dockerfiles(settings: Settings, registry_for: Callable[[str], Registry], signer: Signer,
                      paths: Sequence[Path], *, today: date, catalog_path: Path | None = None,
                      public_key: Path | None = None, org_image: str | None = None, allow: Sequence[str] = (),
                      build_args: Mapping[str, str] | None = None) -> CheckResult:
    source: appcheck.Source
    if catalog_path is not None:
        source = appcheck.CatalogSource(catalog_path, today=today)
    else:
        target = org_image or settings.target
        host = target.split("/", 1)[0]
        source = appcheck.RegistrySource(target, registry_for(host), signer,
                                         public_key=str(public_key) if public_key else None, today=today)
    checker = Checker(source, allowed_upstreams=allow, eol_warning_days=settings.policy.eol_warning_days,
                      today=today)
    files = dockerfiles(paths)
    findings, checked = appcheck.check_files(files, checker, build_args)
    return CheckResult(findings, checked, len(files))


def write_policies(settings: Settings, signer: Signer, out_dir: Path, *, public_key: Path | None,
                   allow: Sequence[str], org_image: str | None = None) -> list[Path]:
    """Every policy file for the org's key (a file's PEM, or a KMS URI) or its keyless identity."""
    signing = settings.signing
    if signing.keyless:
        if not (signing.certificate_identity_regexp and signing.certificate_oidc_issuer):
            raise UsageError("keyless policies need signing.certificate_identity_regexp and "
                             "signing.certificate_oidc_issuer in factory.yaml")
        trust = policies.Trust(identity_regexp=signing.certificate_identity_regexp,
                               issuer=signing.certificate_oidc_issuer)
    else:
        key = str(public_key) if public_key else signer.public_key
        if "://" in key:
            trust = policies.Trust(kms=key)
        else:
            try:
                trust = policies.Trust(public_key_pem=Path(key).read_text())
            except OSError as e:
                raise UsageError(f"{key}: cannot read the public key: {e.strerror}",
                                 hint="pass --key cosign.pub, or run `factory keygen` for the development key") \
                    from None
    return policies.write(policies.Policies(org_image or settings.target, trust, tuple(allow)), out_dir)


def lifecycle_finding(signer: Signer, report: verify_mod.VerifyReport, public_key: Path | None) -> verify_mod.Finding:
    """`factory verify`'s lifecycle line: the signed state (retired fails), or that none is signed."""
    ref = Ref.parse(report.ref)
    state = lifecycle.attested(signer, f"{ref.registry}/{ref.repository}@{report.index_digest}",
                               str(public_key) if public_key else None)
    if state is None:
        return verify_mod.Finding("lifecycle", True, "no lifecycle attestation (`factory lifecycle` signs one)")
    return verify_mod.Finding("lifecycle", state.state != lifecycle.RETIRED, state.detail)


def retired_images(settings: Settings, manifests: Mapping[str, Manifest], today: date) -> list[str]:
    """Manifest names past their end of life."""
    return sorted(name for name, m in manifests.items()
                  if (eol := lifecycle.image_eol(m, manifests, settings, today)) is not None and eol < today)
