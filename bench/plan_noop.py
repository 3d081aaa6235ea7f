"""No-op plan at scale: `factory plan` over N published, unchanged images, side by side with a naive loop
of `docker buildx imagetools inspect` per image. Prints measured wall times, registry requests and ratios.

    .venv/bin/python bench/plan_noop.py [--n 200]

Fixture (documented, not hidden): N manifests on the seeded busybox upstream are rendered in a throwaway
workspace; for each, a minimal current version is pushed by digest with the registry client -- an image
config carrying exactly the fingerprint and base-digest labels a real publish would write, an empty-layer
manifest, an index -- and tagged `<name>-v1.0.0`. Building and signing N real images would take far longer
and change nothing of what a no-op plan reads (tags, one HEAD and one config per image).
Needs `make services` (local registry, dockerd) and the seeded fixtures.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from factory import config, log, manifest, plan, render  # noqa: E402
from factory.docker import Docker  # noqa: E402
from factory.ocilayout import OCI_INDEX, OCI_MANIFEST, sha256_digest  # noqa: E402
from factory.registry import Registry  # noqa: E402
from factory.seed import Seeder  # noqa: E402
from factory.tools import Runner  # noqa: E402

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def workspace(root: Path, n: int, busybox, debian_ref: str) -> config.Settings:
    repository = f"bench{uuid.uuid4().hex[:8]}/base"
    (root / "manifests").mkdir(parents=True)
    (root / "factory.yaml").write_text(yaml.safe_dump({"repository": repository, "helper_image": debian_ref}))
    for i in range(n):
        doc = {"apiVersion": "factory/v1", "name": f"img{i:04d}", "version": "1.0", "description": f"bench {i}",
               "upstream": {"image": busybox.image, "tag": busybox.tag, "digest": busybox.digest},
               "distro": "scratch", "platforms": ["linux/amd64", "linux/arm64"], "eol": "2028-06-30",
               "env": {"BENCH_INDEX": str(i)}}
        (root / "manifests" / f"img{i:04d}.yaml").write_text(yaml.safe_dump(doc))
    settings = config.load(root / "factory.yaml")
    render.write_all(manifest.load_all(settings), settings)
    return settings


def push_current_versions(settings, catalog, registry: Registry) -> None:
    for m in catalog.ordered():
        platforms = [str(p) for p in m.platforms]
        fp = plan.fingerprint(context_digest=plan.context_digest(settings.images_dir / m.name),
                              base_digest=m.upstream.digest, platforms=platforms)
        entries = []
        for p in platforms:
            os_, arch = p.split("/")
            cfg = json.dumps({"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": []},
                              "config": {"Labels": {plan.FINGERPRINT_LABEL: fp,
                                                    "org.opencontainers.image.base.digest": m.upstream.digest}}},
                             sort_keys=True).encode()
            registry.push_blob(settings.repository, sha256_digest(cfg), cfg)
            man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                              "config": {"mediaType": CONFIG_TYPE, "digest": sha256_digest(cfg), "size": len(cfg)}},
                             sort_keys=True).encode()
            digest = registry.put_manifest(settings.repository, sha256_digest(man), man, OCI_MANIFEST)
            entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(man),
                            "platform": {"architecture": arch, "os": os_}})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        registry.put_manifest(settings.repository, f"{m.name}-v1.0.0", index, OCI_INDEX)


def timed(fn):
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    args = ap.parse_args()
    log.configure("console", 0, stream=sys.stderr)  # the measurements go to stdout

    base = config.load(ROOT / "demo" / "factory.yaml")  # built-in registry and state; no repo manifests
    runner = Runner(extra_path=(base.tools_bin,))
    docker = Docker(runner)
    seeded = {s.name: s for s in Seeder(base, runner, docker).seed(["busybox", "debian"], base.platforms)}
    with tempfile.TemporaryDirectory() as tmp:
        settings = workspace(Path(tmp), args.n, seeded["busybox"], seeded["debian"].ref)
        catalog = manifest.load_all(settings)
        with Registry(settings.registry, insecure=True) as setup:
            push_current_versions(settings, catalog, setup)

        client = Registry(settings.registry, insecure=True)
        result, plan_seconds = timed(lambda: plan.make_plan(catalog, settings, lambda host: client))
        assert not result.to_build(), "the fixture should plan nothing"
        plan_requests = sum(client.requests_made.values())

        refs = [f"{settings.target}:{m.name}-v1.0.0" for m in catalog.ordered()]
        _, naive_seconds = timed(lambda: [docker.client.buildx.imagetools.inspect(r) for r in refs])

    print(f"images: {args.n}")
    print(f"factory plan (no-op):              {plan_seconds:8.2f} s  {plan_requests:6d} registry requests "
          f"({plan_requests / args.n:.1f} per image), 0 processes")
    print(f"naive imagetools inspect loop:     {naive_seconds:8.2f} s  {args.n:6d} processes")
    print(f"ratio naive / plan (wall time):    {naive_seconds / plan_seconds:8.1f}x")


if __name__ == "__main__":
    main()
