"""The pluggable stage implementations of a publish: cosign in production and the integration tests,
syft or trivy for SBOMs, trivy or a recorded report for vulnerabilities; fakes in unit tests."""

from __future__ import annotations

from dataclasses import dataclass

from factory.build.sbom import SbomGenerator
from factory.build.scan import Ignore, Scanner
from factory.trust.sign import Signing


@dataclass(frozen=True)
class Stages:
    signer: Signing
    sbom: SbomGenerator
    scanner: Scanner
    vuln_ignores: tuple[Ignore, ...] = ()
