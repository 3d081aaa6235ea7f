"""`factory policies --out DIR`: the enforcement policies app teams' tools need, written for the
org's repository and its key (or keyless identity):

- ``kyverno-clusterpolicy.yaml``: a Kyverno ClusterPolicy whose ``verifyImages`` rule admits an
  org image only with a signature by the org key and a verified conformance attestation that says
  ``passed``;
- ``sigstore-clusterimagepolicy.yaml``: the same for the sigstore policy-controller;
- ``hadolint.yaml``: hadolint's ``trustedRegistries`` (rule DL3026 refuses a FROM from elsewhere);
- ``conftest/org_base.rego``: a conftest policy on Dockerfiles (org base pinned by digest, allowed
  upstreams in build stages only, no debug variant in the final stage).

Pure: the caller reads the key; nothing here touches a registry or a cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from factory.core.labels import CONFORMANCE_PREDICATE_TYPE
from factory.core.reference import Ref

NAME = "org-base-images"
FILES = ("kyverno-clusterpolicy.yaml", "sigstore-clusterimagepolicy.yaml", "hadolint.yaml", "conftest/org_base.rego")


@dataclass(frozen=True)
class Trust:
    """Who must have signed: a PEM public key, a KMS URI, or a keyless identity (regexp) and issuer."""

    public_key_pem: str | None = None
    kms: str | None = None
    identity_regexp: str | None = None
    issuer: str | None = None


@dataclass(frozen=True)
class Policies:
    target: str  # <registry>/<repository>
    trust: Trust
    allowed_upstreams: Sequence[str] = ()  # registry/repository globs, for build stages

    @property
    def registry(self) -> str:
        return Ref.parse(self.target).registry


def _kyverno_attestor(trust: Trust) -> dict[str, Any]:
    if trust.identity_regexp:
        return {"keyless": {"subjectRegExp": trust.identity_regexp, "issuer": trust.issuer or "",
                            "rekor": {"url": "https://rekor.sigstore.dev"}}}
    keys: dict[str, Any] = {"kms": trust.kms} if trust.kms else {"publicKeys": trust.public_key_pem or ""}
    # The factory signs without a transparency log by default (air-gapped): do not ask for one.
    return {"keys": {**keys, "rekor": {"ignoreTlog": True}, "ctlog": {"ignoreSCT": True}}}


def kyverno(p: Policies) -> dict[str, Any]:
    attestors = [{"entries": [_kyverno_attestor(p.trust)]}]
    return {
        "apiVersion": "kyverno.io/v1", "kind": "ClusterPolicy",
        "metadata": {"name": NAME, "annotations": {
            "policies.kyverno.io/title": "Org base images are signed and passed conformance",
            "policies.kyverno.io/description": f"Images from {p.target} run only with a signature by the org key "
                                               "and a verified hardening-conformance attestation that passed."}},
        "spec": {
            "validationFailureAction": "Enforce", "background": False, "webhookTimeoutSeconds": 30,
            "rules": [{
                "name": "signed-and-conformant",
                "match": {"any": [{"resources": {"kinds": ["Pod"]}}]},
                "verifyImages": [{
                    "imageReferences": [f"{p.target}:*", f"{p.target}@*"],
                    "mutateDigest": True, "verifyDigest": True, "required": True,
                    "attestors": attestors,
                    "attestations": [{
                        "type": CONFORMANCE_PREDICATE_TYPE, "attestors": attestors,
                        "conditions": [{"all": [{"key": "{{ passed }}", "operator": "Equals", "value": True}]}],
                    }],
                }],
            }],
        },
    }


def _sigstore_authority(trust: Trust) -> dict[str, Any]:
    if trust.identity_regexp:
        return {"keyless": {"url": "https://fulcio.sigstore.dev",
                            "identities": [{"issuer": trust.issuer or "", "subjectRegExp": trust.identity_regexp}]}}
    return {"key": {"kms": trust.kms} if trust.kms else {"data": trust.public_key_pem or "", "hashAlgorithm": "sha256"}}


def sigstore(p: Policies) -> dict[str, Any]:
    cue = f'predicateType: "{CONFORMANCE_PREDICATE_TYPE}"\npredicate: passed: true\n'
    return {
        "apiVersion": "policy.sigstore.dev/v1beta1", "kind": "ClusterImagePolicy",
        "metadata": {"name": NAME},
        "spec": {
            "images": [{"glob": f"{p.target}**"}],
            "authorities": [{
                "name": "org-key", **_sigstore_authority(p.trust),
                "attestations": [{"name": "conformance-passed", "predicateType": CONFORMANCE_PREDICATE_TYPE,
                                  "policy": {"type": "cue", "data": cue}}],
            }],
        },
    }


def hadolint(p: Policies) -> dict[str, Any]:
    upstream_registries = sorted({Ref.parse(f"{u.rstrip('*/')}:x").registry for u in p.allowed_upstreams})
    return {"failure-threshold": "error", "trustedRegistries": [p.registry, *upstream_registries]}


def rego(p: Policies) -> str:
    env = jinja2.Environment(loader=jinja2.PackageLoader("factory.consume", "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.get_template("policies/org_base.rego.j2").render(target=p.target, allowed=list(p.allowed_upstreams))


def _yaml(doc: dict[str, Any], what: str) -> str:
    return f"# Written by `factory policies`: {what}. Regenerate, do not edit.\n" + \
        yaml.safe_dump(doc, sort_keys=False, width=120)


def render(p: Policies) -> dict[str, str]:
    """file name (relative) -> content."""
    return {
        "kyverno-clusterpolicy.yaml": _yaml(kyverno(p), "Kyverno ClusterPolicy (kubectl apply -f)"),
        "sigstore-clusterimagepolicy.yaml": _yaml(sigstore(p), "sigstore policy-controller ClusterImagePolicy"),
        "hadolint.yaml": _yaml(hadolint(p), "hadolint --config"),
        "conftest/org_base.rego": rego(p),
    }


def write(p: Policies, out_dir: Path) -> list[Path]:
    written = []
    for name, text in render(p).items():
        path = out_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
