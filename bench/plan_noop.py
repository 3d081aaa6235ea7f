"""No-op plan at scale: `factory plan` over N published, unchanged images, side by side with a naive loop
of `docker buildx imagetools inspect` per image. Prints measured wall times, registry requests and ratios.

    .venv/bin/python bench/plan_noop.py [--n 200] [--repeat 3]

What is timed:
- `factory plan --stats`, run as a user runs it (a fresh `python -m factory` process, its start-up
  included) in the throwaway workspace; `--stats` reports the registry requests it made. The start-up
  alone (`python -m factory --version`) is timed too, to show what the look-ups themselves cost.
- the naive loop the issue names: python-on-whales' `client.buildx.imagetools.inspect(ref)` per image,
  one `docker buildx imagetools inspect --raw` process each. It reads only the index, so it cannot see
  the fingerprint label at all: it is a lower bound for a naive approach.
- the naive loop that does see the labels: `docker buildx imagetools inspect --format '{{json .Image}}'`
  per image (it reads every platform's config), through the factory's tool runner.
Each is run --repeat times; the best (least disturbed) run is reported.

Fixture (documented, not hidden): N manifests on the seeded busybox upstream are rendered in a throwaway
workspace; for each, a minimal current version is pushed by digest with the registry client -- per
platform an image config carrying exactly the fingerprint and base-digest labels a real publish would
write and an empty-layer manifest, then an index with the annotations a publish writes on it -- and
tagged `<name>-v1.0.0` and `<name>-v1.0`. Building and signing N real images would take far longer and
change nothing of what a no-op plan reads (the tag list, then per image one GET of the index; with
--unannotated, images as published before the factory annotated its indexes: the index, one platform
manifest and its config).
Needs `make services` (local registry, dockerd) and the seeded fixtures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from factory.adapters.docker import Docker  # noqa: E402
from factory.adapters.tools import Runner  # noqa: E402
from factory.core import log  # noqa: E402
from factory.oci.layout import OCI_INDEX, OCI_MANIFEST, sha256_digest  # noqa: E402
from factory.oci.registry import Registry  # noqa: E402
from factory.ops.seed import Seeder  # noqa: E402
from factory.render import contexts as render  # noqa: E402
from factory.render import plan  # noqa: E402
from factory.spec import config, manifest  # noqa: E402

CONFIG_TYPE = "application/vnd.oci.image.config.v1+json"


def workspace(root: Path, n: int, busybox, debian_ref: str) -> config.Settings:
    repository = f"bench{uuid.uuid4().hex[:8]}/base"
    (root / "manifests").mkdir(parents=True)
    # security_fixes off: the fixture's stand-ins carry no SBOM attestations for a fixes check to read, and
    # that check (`factory fixes`, docs/security-fixes.md) is not what this measures
    (root / "factory.yaml").write_text(yaml.safe_dump({"repository": repository, "helper_image": debian_ref,
                                                       "policy": {"security_fixes": "off"}}))
    for i in range(n):
        doc = {"apiVersion": "factory/v1", "name": f"img{i:04d}", "version": "1.0", "description": f"bench {i}",
               "upstream": {"image": busybox.image, "tag": busybox.tag, "digest": busybox.digest},
               "distro": busybox.distro, "platforms": ["linux/amd64", "linux/arm64"], "eol": "2028-06-30",
               "env": {"BENCH_INDEX": str(i)}, **({"release": busybox.release} if busybox.release else {})}
        (root / "manifests" / f"img{i:04d}.yaml").write_text(yaml.safe_dump(doc))
    settings = config.load(root / "factory.yaml")
    render.write_all(manifest.load_all(settings), settings)
    return settings


def push_current_version(settings, m, registry: Registry, *, annotated: bool = True) -> None:
    """A stand-in for a published, unchanged `m`: the labels (and index annotations) a publish writes, no layers."""
    platforms = [str(p) for p in m.platforms]
    fp = plan.fingerprint(context_digest=plan.context_digest(settings.images_dir / m.name),
                          base_digest=m.upstream.digest, platforms=platforms)
    labels = {plan.FINGERPRINT_LABEL: fp, plan.BASE_DIGEST_LABEL: m.upstream.digest}
    entries = []
    for p in platforms:
        os_, arch = p.split("/")
        cfg = json.dumps({"architecture": arch, "os": os_, "rootfs": {"type": "layers", "diff_ids": []},
                          "config": {"Labels": labels}}, sort_keys=True).encode()
        registry.push_blob(settings.repository, sha256_digest(cfg), cfg)
        man = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "layers": [],
                          "config": {"mediaType": CONFIG_TYPE, "digest": sha256_digest(cfg), "size": len(cfg)}},
                         sort_keys=True).encode()
        digest = registry.put_manifest(settings.repository, sha256_digest(man), man, OCI_MANIFEST)
        entries.append({"mediaType": OCI_MANIFEST, "digest": digest, "size": len(man),
                        "platform": {"architecture": arch, "os": os_}})
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries,
           **({"annotations": dict(sorted(labels.items()))} if annotated else {})}
    index = json.dumps(doc).encode()
    for tag in (f"{m.name}-v1.0.0", f"{m.name}-v1.0"):
        registry.put_manifest(settings.repository, tag, index, OCI_INDEX)


def factory_plan(settings) -> int:
    """One `factory plan --stats` process; the registry requests it reports."""
    proc = subprocess.run([sys.executable, "-m", "factory", "--config", str(settings.root / "factory.yaml"),
                           "plan", "--stats"], cwd=settings.root, capture_output=True, text=True, timeout=600,
                          check=False)  # the return code is checked below, with the output in the message
    if proc.returncode != 0 or proc.stdout.splitlines()[-1] != "nothing to build":
        raise SystemExit(f"the fixture should plan nothing:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return int(proc.stderr.strip().splitlines()[-1].removeprefix("registry requests: "))


def in_process_plan(settings, catalog) -> int:
    """make_plan alone, in this process (no start-up, a fresh registry client): the look-ups' own cost."""
    with Registry(settings.registry, insecure=True) as registry:
        result = plan.make_plan(catalog, settings, lambda host: registry)
        if result.to_build():
            raise SystemExit("the fixture should plan nothing")
        return sum(registry.requests_made.values())


def best_of(repeat: int, fn):
    """(result of the fastest run, its wall time in seconds)."""
    runs = []
    for _ in range(repeat):
        start = time.monotonic()
        result = fn()
        runs.append((time.monotonic() - start, result))
    seconds, result = min(runs, key=lambda r: r[0])
    return result, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="number of images (default 200)")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each measurement; the best is shown (default 3)")
    ap.add_argument("--unannotated", action="store_true",
                    help="images as published before the index annotations: the plan's fallback to the labels")
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
            for m in catalog.ordered():
                push_current_version(settings, m, setup, annotated=not args.unannotated)

        requests, plan_seconds = best_of(args.repeat, lambda: factory_plan(settings))
        lookups, lookup_seconds = best_of(args.repeat, lambda: in_process_plan(settings, catalog))
        version = [sys.executable, "-m", "factory", "--version"]
        _, startup_seconds = best_of(args.repeat, lambda: subprocess.run(version, capture_output=True, check=True))
        refs = [f"{settings.target}:{m.name}-v1.0.0" for m in catalog.ordered()]
        _, raw_seconds = best_of(args.repeat, lambda: [docker.client.buildx.imagetools.inspect(r) for r in refs])
        fmt = ["docker", "buildx", "imagetools", "inspect", "--format", "{{json .Image}}"]
        _, labels_seconds = best_of(args.repeat, lambda: [runner.run([*fmt, r], step="bench") for r in refs])

    n = args.n
    kind = "labels only (published before annotations)" if args.unannotated else "annotated indexes"
    print(f"images: {n}, {kind} (best of {args.repeat} runs each)")
    print(f"factory plan --stats (one process):            {plan_seconds:7.2f} s  {requests:6d} registry requests "
          f"({requests / n:.2f} per image; {(requests - 1) / n:.2f} per image besides the one tag list)")
    print(f"  of which process start-up (factory --version): {startup_seconds:7.2f} s")
    print(f"make_plan in-process (the look-ups alone):     {lookup_seconds:7.2f} s  {lookups:6d} registry requests")
    print(f"naive loop, imagetools inspect --raw:          {raw_seconds:7.2f} s  {n:6d} processes (index only, "
          "no labels)")
    print(f"naive loop, imagetools inspect {{{{json .Image}}}}: {labels_seconds:7.2f} s  {n:6d} processes "
          "(with labels)")
    print(f"ratio naive --raw / plan (wall time):          {raw_seconds / plan_seconds:7.1f}x")
    print(f"ratio naive with labels / plan (wall time):    {labels_seconds / plan_seconds:7.1f}x")
    print(f"ratio naive --raw / look-ups alone:            {raw_seconds / lookup_seconds:7.1f}x")


if __name__ == "__main__":
    main()
