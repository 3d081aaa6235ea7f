"""Lifecycle of published versions: current, superseded, deprecated or retired, and the signed
lifecycle attestation that carries the state to where app teams check it.

- *superseded*: a newer version of the same major exists (Renovate's digest update moves to it);
- *deprecated*: the image's manifest says so, naming its successor;
- *retired*: the image is past its end of life (the same date the ``eol-passed`` policy rule judges).

Retired wins over deprecated, deprecated over superseded. The registry's tag list says what is
superseded at any time; deprecation and end of life live in the factory's manifests, so `factory
lifecycle` signs each version's state as an in-toto attestation (``LIFECYCLE_PREDICATE_TYPE``) that
``cosign verify-attestation`` checks at deploy time, and that `factory verify` and
`factory check-dockerfile` read (only after it verified).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any

from factory.core import log, versioning
from factory.core.errors import VerificationFailed
from factory.core.labels import LIFECYCLE_PREDICATE_TYPE
from factory.core.model import Deprecation, Manifest
from factory.core.versioning import Version
from factory.oci.registry import Registry
from factory.spec import policy
from factory.spec.config import Settings
from factory.trust.sign import Signing

CURRENT, SUPERSEDED, DEPRECATED, RETIRED = "current", "superseded", "deprecated", "retired"
STATES = (CURRENT, SUPERSEDED, DEPRECATED, RETIRED)


@dataclass(frozen=True)
class State:
    state: str  # one of STATES
    version: str
    newest: str  # the newest version of the same major
    successor: str | None = None  # deprecated: the org image to move to
    eol: str | None = None  # YYYY-MM-DD, when known
    reason: str = ""

    @property
    def detail(self) -> str:
        """One line for people: what the state means and what to do."""
        if self.state == RETIRED:
            return f"retired: past its end of life {self.eol}; move to a supported image"
        if self.state == DEPRECATED:
            why = f" ({self.reason})" if self.reason else ""
            return f"deprecated{why}: move to {self.successor}"
        if self.state == SUPERSEDED:
            return f"superseded: {self.newest} is the newest of major {self.version.split('.')[0]}"
        return "current"


def state_of(version: Version, versions: Iterable[Version], *, eol: date | None, today: date,
             deprecated: Deprecation | None) -> State:
    """The state of ``version`` among the published ``versions`` of its image."""
    newest = max((v for v in versions if v.major == version.major), default=version)
    newest = max(newest, version)
    common: dict[str, Any] = {"version": str(version), "newest": str(newest),
                              "eol": eol.isoformat() if eol else None}
    if eol is not None and eol < today:
        return State(RETIRED, **common)
    if deprecated is not None:
        return State(DEPRECATED, successor=deprecated.successor, reason=deprecated.reason, **common)
    return State(SUPERSEDED if newest > version else CURRENT, **common)


def image_eol(m: Manifest | None, manifests: Mapping[str, Manifest], settings: Settings,
              today: date) -> date | None:
    """The image's effective end of life: the earliest of the distro's, its own and its parents'."""
    if m is None:
        return None
    found = policy.effective_eol(m, manifests, settings, today)
    return found[0] if found else None


def predicate(prefix: str, state: State, checked: datetime) -> dict[str, Any]:
    """The lifecycle attestation's predicate (docs/app-teams.md)."""
    return {"image": prefix, **asdict(state), "checked": checked.strftime("%Y-%m-%dT%H:%M:%SZ")}


def parse_predicate(found: Mapping[str, Any]) -> State | None:
    """A State from a verified predicate; None when it is not one (a bug or a foreign attestation)."""
    if found.get("state") not in STATES or not isinstance(found.get("version"), str):
        return None
    return State(state=found["state"], version=found["version"], newest=str(found.get("newest", found["version"])),
                 successor=found.get("successor"), eol=found.get("eol"), reason=str(found.get("reason") or ""))


def attested(signer: Signing, ref: str, public_key: str | None = None) -> State | None:
    """The newest verified lifecycle state of ``ref`` (by its ``checked`` time); None when none verifies."""
    try:
        statements = signer.verify_attestation(ref, LIFECYCLE_PREDICATE_TYPE, public_key=public_key)
    except VerificationFailed:
        return None
    predicates = sorted((s.get("predicate") or {} for s in statements), key=lambda p: str(p.get("checked", "")))
    return parse_predicate(predicates[-1]) if predicates else None


@dataclass(frozen=True)
class Attested:
    tag: str
    digest: str
    state: State
    signed: bool  # False: the state was already attested, nothing signed


def prefix_of(prefix: str) -> str:
    """The manifest name of a tag prefix (a debug variant's is its prod image's)."""
    return prefix.removesuffix(versioning.DEBUG_SUFFIX)


def attest_all(settings: Settings, registry: Registry, signer: Signing, manifests: Mapping[str, Manifest], *,
               today: date, now: datetime, prefixes: Sequence[str] = ()) -> list[Attested]:
    """`factory lifecycle`: sign the state of every published version whose verified state differs
    (a new attestation each time a state changes, none when nothing did)."""
    from factory.consume.catalog import prefixes_in  # the one tag-prefix reader

    repo, target = settings.repository, settings.target
    tags = registry.list_tags(repo)
    out: list[Attested] = []
    for prefix in prefixes or prefixes_in(tags):
        m = manifests.get(prefix_of(prefix))
        versions = versioning.versions_in(tags, prefix)
        eol = image_eol(m, manifests, settings, today)
        for version in versions:
            state = state_of(version, versions, eol=eol, today=today, deprecated=m.deprecated if m else None)
            tag = versioning.immutable_tag(prefix, version)
            found = registry.head_manifest(repo, tag)
            if found is None:
                continue
            ref = f"{target}@{found.digest}"
            changed = attested(signer, ref) != state
            if changed:
                signer.attest(ref, predicate(prefix, state, now), LIFECYCLE_PREDICATE_TYPE)
            log.get("lifecycle").info("lifecycle", tag=tag, state=state.state, signed=changed)
            out.append(Attested(tag, found.digest, state, changed))
    return out


def table(rows: Sequence[Attested]) -> str:
    lines = [f"{'tag':48} {'state':10} {'signed':6} detail"]
    lines += [f"{r.tag:48} {r.state.state:10} {'yes' if r.signed else 'no':6} {r.state.detail}" for r in rows]
    return "\n".join(lines)
