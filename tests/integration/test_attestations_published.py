"""What an auditor downloads, checked with third-party verifiers: every attestation is fetched from the
registry with the plain cosign CLI (`cosign verify-attestation`), its DSSE payload decoded, and the statement
and predicate handed to in-toto-attestation's strict protobuf parse (SLSA v1 provenance) or
cyclonedx-python-lib's strict JSON schema validation (SBOMs): tests/verifiers.py, whose unit tests show each
verifier failing on a broken document.

One publish: the no-shell stand-in (tini and /etc, the factory's files copied in by a helper stage) on both
platforms, which is cheap under QEMU since its final stage runs nothing. The Debian image with packages
installed at build time is checked on test_catalog.py's publish (its tests at the end of that file).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from dataclasses import dataclass

import pytest
from google.protobuf import json_format

from factory.core.labels import CYCLONEDX_PREDICATE_TYPE
from tests import verifiers
from tests.integration.workspace import Workspace, manifest_on, ok

SOURCE = "https://git.example.com/org/base-images"


@dataclass
class Published:
    ws: Workspace
    index: str
    platforms: dict[str, str]
    seeded_noshell: str
    helper: str


def statements(runner, settings, ref: str, kind: str) -> list[dict]:
    """The verified statements of ``kind`` on ``ref`` (a digest or a tag reference), as plain cosign gives them."""
    proc = ok(subprocess.run([runner.require("cosign"), "verify-attestation", "--type", kind,
                              "--key", str(settings.dev_key.with_suffix(".pub")), "--insecure-ignore-tlog=true",
                              "--allow-http-registry", "--allow-insecure-registry", "--output", "json", ref],
                             capture_output=True, text=True, timeout=120))
    found = [json.loads(base64.b64decode(json.loads(line)["payload"])) for line in proc.stdout.splitlines()
             if line.startswith("{")]
    assert found, f"cosign printed no {kind} attestation for {ref}"
    return found


@pytest.fixture(scope="module")
def published(tmp_path_factory, settings, seeded, seeded_debian) -> Published:
    ws = Workspace.create(tmp_path_factory.mktemp("attest") / "repo", registry=settings.registry,
                          state_dir=settings.state_dir,
                          extra_config={"helper_image": seeded_debian.ref})
    # No source_url: the provenance names the git remote, and a token in its URL must never reach it.
    ok(subprocess.run(["git", "-C", str(ws.root), "remote", "add", "origin",
                       "https://ci:secret-token@git.example.com/org/base-images.git"], capture_output=True, text=True))
    ws.add_manifest(manifest_on(seeded["noshell"], "static"))
    ok(ws.factory("render"))
    ws.commit("render")
    ok(ws.factory("publish", "static"))
    index = ws.tags()["static-v1.0.0"]
    return Published(ws, index, ws.platforms(index), seeded["noshell"].ref, seeded_debian.ref)


def test_provenance_on_the_index_and_each_platform_passes_the_strict_slsa_parse(published, runner, settings):
    ws = published.ws
    commit = subprocess.run(["git", "-C", str(ws.root), "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    for digest in [published.index, *published.platforms.values()]:
        found = statements(runner, settings, ws.ref(digest), "slsaprovenance1")  # plain cosign's own type name
        assert len(found) == 1
        statement = found[0]
        assert statement["subject"][0]["digest"]["sha256"] == digest.removeprefix("sha256:")
        pb = verifiers.check_provenance_statement(statement)
        assert pb.run_details.metadata.invocation_id
        deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        by_name = {d["name"]: d for d in deps}
        assert by_name["source"] == {"name": "source", "uri": f"git+{SOURCE}", "digest": {"gitCommit": commit}}
        assert by_name["base"]["annotations"]["reference"] == published.seeded_noshell
        assert by_name["helper"]["annotations"]["reference"] == published.helper
        assert "secret-token" not in json.dumps(statement)
        internal = statement["predicate"]["buildDefinition"]["internalParameters"]
        assert internal["contextDigest"] != internal["buildArgs"]["FACTORY_FINGERPRINT"]
    platform_one = statements(runner, settings, ws.ref(published.platforms["linux/arm64"]), "slsaprovenance1")[0]
    assert platform_one["predicate"]["buildDefinition"]["externalParameters"]["platforms"] == ["linux/arm64"]


def test_every_published_sbom_is_strictly_valid_cyclonedx_and_names_the_image(published, runner, settings):
    ws = published.ws
    name = f"{ws.registry}/{ws.repository}"
    for platform, digest in published.platforms.items():
        (statement,) = statements(runner, settings, ws.ref(digest), "cyclonedx")
        verifiers.check_statement(statement, CYCLONEDX_PREDICATE_TYPE)
        bom = statement["predicate"]
        verifiers.check_cyclonedx(bom)
        component = bom["metadata"]["component"]
        assert (component["name"], component["version"]) == (name, digest)
        assert component["purl"].startswith("pkg:oci/base@sha256:")
        assert f"arch={platform.split('/')[1]}" in component["purl"]
        listed = {c["name"]: c for c in bom["components"]}
        assert listed["tini"]["version"].startswith("0.19.0"), sorted(listed)  # the upstream's, from status.d
        bundle = listed["/etc/ssl/certs/ca-certificates.crt"]  # the factory's, from its helper stage
        assert bundle["type"] == "file" and bundle["hashes"][0]["alg"] == "SHA-256"


def test_the_tag_has_an_index_sbom_listing_each_platform_image(published, runner, settings):
    ws = published.ws
    (statement,) = statements(runner, settings, ws.ref("static-v1.0.0"), "cyclonedx")  # by tag: plain cosign
    verifiers.check_statement(statement, CYCLONEDX_PREDICATE_TYPE)
    assert statement["subject"][0]["digest"]["sha256"] == published.index.removeprefix("sha256:")
    bom = statement["predicate"]
    verifiers.check_cyclonedx(bom)
    assert bom["metadata"]["component"]["version"] == published.index
    assert sorted(c["version"] for c in bom["components"]) == sorted(published.platforms.values())


def check_debian_image(ws: Workspace, runner, settings, *, added: str) -> None:
    """test_catalog.py's publish (a Debian image on one platform, two versions, each with its debug variant;
    the second adds the package ``added``): every SBOM and provenance passes the strict verifiers, and the
    newest version's provenance lists the packages its build installed, with versions."""
    tags = ws.tags()
    for tag in ("cat-v1.0.0", "cat-v1.0.1", "cat-debug-v1.0.0", "cat-debug-v1.0.1"):
        digest = tags[tag]
        (sbom_statement,) = statements(runner, settings, ws.ref(tag), "cyclonedx")  # one platform: by tag
        verifiers.check_statement(sbom_statement, CYCLONEDX_PREDICATE_TYPE)
        verifiers.check_cyclonedx(sbom_statement["predicate"])
        assert sbom_statement["predicate"]["metadata"]["component"]["version"] == digest
        (provenance,) = statements(runner, settings, ws.ref(digest), "slsaprovenance1")
        verifiers.check_provenance_statement(provenance)
    newest = statements(runner, settings, ws.ref(tags["cat-v1.0.1"]), "slsaprovenance1")[0]
    deps = newest["predicate"]["buildDefinition"]["resolvedDependencies"]
    packages = {d["name"]: d["uri"] for d in deps if d.get("uri", "").startswith("pkg:deb/debian/")}
    assert added in packages and f"{added}@" in packages[added], packages
    assert "helper" not in {d["name"] for d in deps}  # an apt image pulls no helper
    debug = statements(runner, settings, ws.ref(tags["cat-debug-v1.0.1"]), "slsaprovenance1")[0]
    base = next(d for d in debug["predicate"]["buildDefinition"]["resolvedDependencies"] if d["name"] == "base")
    assert base["digest"]["sha256"] == tags["cat-v1.0.1"].removeprefix("sha256:")  # built on the prod image


def test_what_cosigns_slsaprovenance1_type_publishes_fails_the_strict_parse(published, runner, settings, docker,
                                                                            tmp_path):
    """Why the factory attests under the URI: the same predicate attested with `--type slsaprovenance1` (on a
    throwaway image) comes back from the registry re-marshalled by cosign, and the strict parse refuses it."""
    ws = published.ws
    (ours,) = statements(runner, settings, ws.ref(published.index), "slsaprovenance1")
    predicate = tmp_path / "predicate.json"
    predicate.write_text(json.dumps(ours["predicate"]))
    throwaway = ws.push_dummy(docker, tmp_path / "dummy", "throwaway")
    ok(subprocess.run([runner.require("cosign"), "attest", "--key", str(settings.dev_key), "--tlog-upload=false",
                       "--yes", "--type", "slsaprovenance1", "--predicate", str(predicate), "--allow-http-registry",
                       "--allow-insecure-registry", ws.ref(throwaway)],
                      capture_output=True, text=True, timeout=120, env={**os.environ, "COSIGN_PASSWORD": ""}))
    (rewritten,) = statements(runner, settings, ws.ref(throwaway), "slsaprovenance1")
    assert "invocationID" in json.dumps(rewritten["predicate"])
    with pytest.raises(json_format.ParseError, match="invocationID"):
        verifiers.check_provenance_statement(rewritten)
