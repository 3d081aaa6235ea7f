"""Fan-out: one job per platform pushes by digest, `merge` assembles, signs, attests and tags; the
result is the same index a single-machine publish writes."""

from __future__ import annotations

import json
import uuid

from tests.integration.test_publish import (
    cosign,
    publish,
    ws,  # noqa: F401  (fixture)
)
from tests.integration.workspace import manifest_on


def test_fanned_out_publish_equals_the_single_machine_one(ws, seeded, settings, runner):
    ws.add_manifest(manifest_on(seeded["busybox"], "fan", variants={"debug": {}}))
    assert ws.factory("render").returncode == 0
    ws.commit("render")

    digests = {}
    for platform in ("linux/amd64", "linux/arm64"):
        report_path = ws.root / f"{platform.replace('/', '-')}.json"
        proc = ws.factory("publish", "fan", "--platform", platform, "--push-by-digest-only", "--report",
                          str(report_path))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        image = json.loads(report_path.read_text())["images"][0]
        assert image["status"] == "pushed"
        digests[platform] = image["prod"]["platforms"][platform]
    assert ws.tags() == {}  # nothing is reachable by a tag before the merge

    merged = ws.factory("merge", "fan", *[f"--digest={p}={d}" for p, d in digests.items()])
    assert merged.returncode == 0, merged.stdout + merged.stderr
    tags = ws.tags()
    assert {"fan-v1.0.0", "fan-v1.0", "fan-v1", "fan", "fan-debug-v1.0.0", "fan-debug"} <= set(tags)
    index = tags["fan-v1.0.0"]
    assert ws.platforms(index) == digests
    out = cosign(runner, settings, "verify", ws.ref(index))
    assert out.returncode == 0, out.stderr
    for kind, ref in (("cyclonedx", ws.ref("fan-v1")), ("slsaprovenance1", ws.ref(digests["linux/arm64"]))):
        out = cosign(runner, settings, "verify-attestation", "--type", kind, ref)  # the merged index's SBOM, by tag
        assert out.returncode == 0, out.stderr
    verified = ws.factory("verify", ws.ref("fan-v1"))
    assert verified.returncode == 0, verified.stdout + verified.stderr

    # The same commit published on one machine into another repository gives the same index.
    other_repo = f"t{uuid.uuid4().hex[:10]}/base"
    single = ws.factory("publish", "fan", env={"FACTORY_REPOSITORY": other_repo})
    assert single.returncode == 0, single.stdout + single.stderr
    assert f"1.0.0 {index}" in single.stdout


def test_merge_refuses_a_digest_that_is_not_from_this_build(ws, seeded, docker, tmp_path):
    ws.add_manifest(manifest_on(seeded["busybox"], "fan2"))
    proc, _ = publish(ws, "fan2", extra=("--platform", "linux/amd64", "--push-by-digest-only"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    amd64 = json.loads((ws.root / "report.json").read_text())["images"][0]["prod"]["platforms"]["linux/amd64"]
    # The upstream's own arm64 image was not built (nor signed) by this fan-out.
    upstream_arm64 = next(d for p, d in _platforms_of_upstream(ws, seeded["busybox"]).items() if p == "linux/arm64")
    merged = ws.factory("merge", "fan2", f"--digest=linux/amd64={amd64}", f"--digest=linux/arm64={upstream_arm64}")
    assert merged.returncode == 1
    assert "failed at merge [linux/arm64]" in merged.stderr and "is not in" in merged.stderr
    # An image that is in the repository but was not built from these inputs (no fingerprint label).
    stranger = ws.platforms(ws.push_dummy(docker, tmp_path / "dummy", "stranger"))["linux/arm64"]
    merged = ws.factory("merge", "fan2", f"--digest=linux/amd64={amd64}", f"--digest=linux/arm64={stranger}")
    assert merged.returncode == 1
    assert "failed at merge [linux/arm64]" in merged.stderr and "built from other inputs" in merged.stderr
    assert set(ws.tags()) == {"stranger"}


def _platforms_of_upstream(ws, seeded_image) -> dict[str, str]:
    import requests

    repo = seeded_image.image.split("/", 1)[1]
    resp = requests.get(f"http://{ws.registry}/v2/{repo}/manifests/{seeded_image.digest}",
                        headers={"Accept": "application/vnd.oci.image.index.v1+json"}, timeout=10)
    return {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"] for m in resp.json()["manifests"]}
