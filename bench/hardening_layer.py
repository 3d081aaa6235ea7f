"""What the org hardening adds to an upstream: the factory's rendered image vs the naive Dockerfile.

Both are built here, with real BuildKit into OCI layouts, FROM the seeded Debian bookworm minbase
upstream (`factory seed debian`; no Docker Hub here), for each platform:

  factory      a hardening-only manifest (user 1001, TZ=UTC, the public CA bundle and the org CA in
               certs/example-dev-org-root-ca.pem, no packages) rendered by `factory render`: a helper
               stage FROM the upstream prepares the changed files, the image gets them in one COPY
  factory-run  the same manifest with `packages: [tzdata]` (already in minbase: no new files), which
               takes the renderer's other path: one RUN that installs, hardens and cleans apt's lists,
               caches and logs, but keeps what dpkg and the packages write
  naive        FROM <upstream>
               RUN apt-get update && apt-get install -y ca-certificates tzdata && useradd ...

and prints the layers and compressed bytes each adds over the upstream (layer blobs as pushed:
gzip), and each one's size relative to the factory's. Every number printed is measured by this run.
(The seeded minbase has none of the apt settings of Docker's debian images, which gzip the package
lists and delete downloaded .debs: there the naive layer is smaller than here.)

    .venv/bin/python bench/hardening_layer.py [--platform linux/amd64] [--platform linux/arm64]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from factory.adapters.docker import Docker
from factory.adapters.tools import Runner
from factory.build import gates
from factory.build.buildx import BuildRequest, BuiltImage, build
from factory.core import log
from factory.oci.registry import Registry
from factory.ops.seed import Seeder
from factory.render import contexts as render
from factory.spec import config, manifest

REPO = Path(__file__).resolve().parents[1]
ORG_CA = "certs/example-dev-org-root-ca.pem"
NAIVE = """\
FROM {upstream}
RUN apt-get update && apt-get install -y ca-certificates tzdata && useradd -u 1001 -U -M -s /usr/sbin/nologin app
USER 1001:1001
"""
BUILD_ARGS = {"FACTORY_VERSION": "0.0.0", "FACTORY_REVISION": "bench", "FACTORY_CREATED": "2024-01-01T00:00:00Z",
              "FACTORY_FINGERPRINT": "sha256:bench"}


@dataclass(frozen=True)
class Added:
    layers: int
    bytes: int


def added_over_base(built: BuiltImage, base: gates.BaseImage, platform: str) -> Added:
    image = built.layout.image(platform)
    extra = image.layers[base.layers[platform]:]
    return Added(len(extra), sum(layer.size for layer in extra))


def factory_image(workdir: Path, seeded, docker: Docker, platforms: list[str], name: str,
                  packages: list[str]) -> BuiltImage:
    repo = workdir / name
    (repo / "manifests").mkdir(parents=True)
    (repo / "certs").mkdir()
    shutil.copy(REPO / ORG_CA, repo / ORG_CA)
    (repo / "factory.yaml").write_text(json.dumps({"certificates": [ORG_CA]}))
    settings = config.load(repo / "factory.yaml", environ={})
    path = repo / "manifests" / f"{name}.yaml"
    path.write_text(json.dumps({
        "apiVersion": "factory/v1", "name": name, "version": "1.0", "packages": packages,
        "description": "org hardening only", "distro": "debian", "release": "12", "eol": "2028-06-30",
        "upstream": {"image": seeded.image, "tag": seeded.tag, "digest": seeded.digest}, "platforms": platforms}))
    m = manifest.load_file(path, settings)
    render.write_all({m.name: m}, settings)
    dockerfile = settings.images_dir / m.name / render.DOCKERFILE
    return build(docker, BuildRequest(name, dockerfile, tuple(platforms), BUILD_ARGS, cache=False),
                 workdir / "out")


def naive_image(workdir: Path, seeded, docker: Docker, platforms: list[str]) -> BuiltImage:
    context = workdir / "naive"
    context.mkdir()
    (context / "Dockerfile").write_text(NAIVE.format(upstream=seeded.ref))
    return build(docker, BuildRequest("naive", context / "Dockerfile", tuple(platforms), cache=False),
                 workdir / "out")


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.3f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--platform", action="append", dest="platforms",
                        help="repeat for several (default: linux/amd64 and linux/arm64)")
    args = parser.parse_args(argv)
    log.configure("auto", 0)  # progress on stderr; the numbers alone on stdout
    platforms = args.platforms or ["linux/amd64", "linux/arm64"]
    with tempfile.TemporaryDirectory(prefix="bench-hardening-") as tmp:
        workdir = Path(tmp)
        (workdir / "factory.yaml").write_text("")
        settings = config.load(workdir / "factory.yaml", environ={})
        runner = Runner(extra_path=(settings.tools_bin,))
        docker = Docker(runner, builder=settings.builder)
        seeded = Seeder(settings, runner, docker).seed(["debian"], config.platforms.parse_all(platforms))[0]
        registry = Registry(settings.registry, insecure=settings.registry_is_insecure())
        base = gates.base_image(registry, seeded.ref, platforms)
        built = {
            "factory": factory_image(workdir, seeded, docker, platforms, "factory", []),
            "factory-run": factory_image(workdir, seeded, docker, platforms, "factory-run", ["tzdata"]),
            "naive": naive_image(workdir, seeded, docker, platforms),
        }
        print(f"upstream {seeded.ref}")
        print(f"{'platform':<12} {'image':<12} {'layers added':>12} {'bytes added':>12} "
              f"{'% of upstream':>14} {'x factory':>10}")
        for p in platforms:
            ours = added_over_base(built["factory"], base, p)
            print(f"{p:<12} {'upstream':<12} {'':>12} {_mb(base.size[p]):>12}")
            for label, image in built.items():
                added = added_over_base(image, base, p)
                times = f"{added.bytes / ours.bytes:.1f}x" if ours.bytes else "n/a"
                print(f"{'':<12} {label:<12} {added.layers:>12} {_mb(added.bytes):>12} "
                      f"{100 * added.bytes / base.size[p]:>13.2f}% {times:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
