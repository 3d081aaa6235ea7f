"""In-memory stand-ins for the registry and cosign, for unit tests of the catalog's collection.

The integration tests (tests/integration/test_catalog.py) run the same code against the real
registry and the real cosign; these fakes only make the logic testable without processes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from factory.adapters.tools import Runner
from factory.core.errors import VerificationFailed
from factory.oci.layout import OCI_INDEX, OCI_MANIFEST, Descriptor, sha256_digest
from factory.spec import config
from factory.trust.sign import Signer

OCI = "org.opencontainers.image."


class FakeRegistry:
    """The read side of ``factory.registry.Registry``, over dicts. One instance serves every host."""

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[bytes, str]] = {}  # digest -> (raw, media type)
        self.blobs: dict[str, bytes] = {}
        self.tags: dict[tuple[str, str], str] = {}  # (repo, tag) -> digest

    # --- building images ------------------------------------------------------------------------

    def _put(self, doc: dict, media_type: str) -> str:
        raw = json.dumps(doc, indent=2).encode()
        digest = sha256_digest(raw)
        self.manifests[digest] = (raw, media_type)
        return digest

    def image(self, platforms: dict[str, tuple[dict, list[int]]]) -> tuple[str, dict[str, str]]:
        """An index over one image per platform: platform -> (labels, layer sizes)."""
        entries, digests = [], {}
        for platform, (labels, layers) in platforms.items():
            os_, arch = platform.split("/")
            config_raw = json.dumps({"architecture": arch, "os": os_, "config": {"Labels": labels}}).encode()
            self.blobs[sha256_digest(config_raw)] = config_raw
            doc = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                   "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                              "digest": sha256_digest(config_raw), "size": len(config_raw)},
                   "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                               "digest": "sha256:" + f"{i:02x}{size:062x}"[-64:], "size": size}
                              for i, size in enumerate(layers)]}
            digests[platform] = self._put(doc, OCI_MANIFEST)
            raw = self.manifests[digests[platform]][0]
            entries.append({"mediaType": OCI_MANIFEST, "digest": digests[platform], "size": len(raw),
                            "platform": {"architecture": arch, "os": os_}})
        return self._put({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}, OCI_INDEX), digests

    def tag(self, repo: str, tag: str, digest: str) -> None:
        self.tags[(repo, tag)] = digest

    # --- the Registry API the catalog uses ------------------------------------------------------

    def list_tags(self, repo: str) -> list[str]:
        return sorted(t for r, t in self.tags if r == repo)

    def _resolve(self, repo: str, reference: str) -> str | None:
        return reference if reference.startswith("sha256:") else self.tags.get((repo, reference))

    def head_manifest(self, repo: str, reference: str) -> Descriptor | None:
        digest = self._resolve(repo, reference)
        if digest is None or digest not in self.manifests:
            return None
        raw, media_type = self.manifests[digest]
        return Descriptor(media_type, digest, len(raw))

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str, str]:
        digest = self._resolve(repo, reference)
        raw, media_type = self.manifests[digest]
        return raw, media_type, digest

    def get_blob(self, repo: str, digest: str) -> bytes:
        return self.blobs[digest]


class FakeSigner(Signer):
    """The real Signer's argv (so the catalog's cosign commands are the real ones); verification
    answers from what the test declared instead of running cosign."""

    def __init__(self, settings, *, unsigned: set[str] = frozenset(), sboms: dict[str, dict] | None = None) -> None:
        super().__init__(settings, Runner())
        self.unsigned = set(unsigned)  # index digests whose signature "does not verify"
        self.sboms = sboms or {}  # platform digest -> CycloneDX document (absent: no verified SBOM)
        self.calls: list[tuple[str, str]] = []

    def verify(self, ref: str, *, public_key: Path | None = None) -> list[dict]:
        self.calls.append(("verify", ref))
        if ref.rsplit("@", 1)[-1] in self.unsigned:
            raise VerificationFailed(f"signature of {ref} does not verify: no matching signatures")
        return [{"critical": {}}]

    def verify_attestation(self, ref: str, predicate_type: str, *, public_key: Path | None = None) -> list[dict]:
        self.calls.append((predicate_type, ref))
        document = self.sboms.get(ref.rsplit("@", 1)[-1])
        if predicate_type != "cyclonedx" or document is None:
            raise VerificationFailed(f"no verified {predicate_type} attestation on {ref}: none found")
        return [{"predicateType": "https://cyclonedx.org/bom", "predicate": document}]


def bom(packages: dict[str, str]) -> dict:
    return {"bomFormat": "CycloneDX", "components": [
        {"type": "library", "name": n, "version": v, "purl": f"pkg:deb/debian/{n}@{v}"} for n, v in packages.items()]}


def settings(tmp_path: Path, manifests: dict[str, str] | None = None):
    """Built-in defaults (registry 127.0.0.1:5000, repository myorg/base) with these manifests."""
    root = tmp_path / "repo"
    (root / "manifests").mkdir(parents=True, exist_ok=True)
    (root / "factory.yaml").write_text("")
    for name, text in (manifests or {}).items():
        (root / "manifests" / f"{name}.yaml").write_text(text)
    s = dataclasses.replace(config.load(root / "factory.yaml", environ={}), state_dir=tmp_path / "state")
    public_key = s.dev_key.with_suffix(".pub")  # the key the fake signer "verifies" with
    public_key.parent.mkdir(parents=True, exist_ok=True)
    public_key.write_text("-----BEGIN PUBLIC KEY-----\nfake\n-----END PUBLIC KEY-----\n")
    return s


def labels(title: str, version: str, base_name: str, base_digest: str, *, variant: str = "prod",
           created: str = "2026-11-01T00:00:00Z") -> dict:
    return {OCI + "title": title, OCI + "version": version, OCI + "created": created,
            OCI + "base.name": base_name, OCI + "base.digest": base_digest,
            "io.github.base-image-factory.variant": variant,
            "io.github.base-image-factory.fingerprint": "sha256:" + "f" * 64,
            OCI + "description": f"{title} from its labels"}
