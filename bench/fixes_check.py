"""Pending security fixes of N published images: `factory fixes` side by side with the naive way, one
`apt-get -s upgrade` container per image and platform. Prints measured wall times, requests, bytes, ratios.

    .venv/bin/python bench/fixes_check.py [--images 200] [--naive-sample 4]

What is timed (one run, the factory side first):
- factory: the code path behind `factory fixes` (``FixesChecker`` over one ``Archives``, as
  ``factory.security.check.run`` builds them), in this process: per image the tag list and index,
  per platform one `cosign verify-attestation` (real verification with the dev key) of the CycloneDX
  SBOM, matched against the real Debian indexes of bookworm, -updates and -security (InRelease verified
  with gpgv, each Packages file downloaded once per run). Registry requests are counted by a counting
  reverse proxy on 127.0.0.1 in front of the local registry, which both the factory's client and cosign
  use (it adds one loopback hop per request to the factory's time); archive requests and bytes are
  ``Archives.stats``. Every cosign run is counted and timed.
- naive: per image and platform, `docker run --platform P <image> sh -c "<sources with bookworm-updates
  and -security>; apt-get update; apt-get -s upgrade"`. It is run on a sample (--naive-sample, half
  per platform) and extrapolated to every image and platform from the per-platform mean; bytes are
  what apt itself says it fetched ("Fetched N kB"). The security fixes each sampled container lists
  are compared with the factory's list for the same image and platform.

Fixture (documented, not hidden): the seeded Debian bookworm minbase upstream (`factory seed debian`)
is copied N times into a throwaway repository of the local registry, each copy with its own label
(`org.example.bench.index`), so N distinct images with distinct platform digests; each platform digest
gets a signed SBOM attestation (`cosign attest` with the factory's Signer and dev key) of trivy's real
SBOM of that platform's image (the copies differ in a label only, so their packages are the upstream's).
N manifests in a throwaway factory repository name them. A real publish of N images would take hours
and change nothing of what `factory fixes` reads. The set-up time is printed apart.
Needs `make services` (local registry, dockerd, QEMU for arm64) and the Debian archive.
"""

from __future__ import annotations

import argparse
import copy
import http.client
import http.server
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

import requests
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from factory.adapters.docker import Docker  # noqa: E402
from factory.adapters.tools import Runner  # noqa: E402
from factory.archive.fetch import Archives  # noqa: E402
from factory.build.buildx import BuildRequest, build  # noqa: E402
from factory.build.sbom import TrivySbom  # noqa: E402
from factory.context import RunContext  # noqa: E402
from factory.core import labels, log  # noqa: E402
from factory.oci.layout import OCI_INDEX, OciLayout, sha256_digest  # noqa: E402
from factory.oci.registry import Registry  # noqa: E402
from factory.ops.seed import Seeded, Seeder  # noqa: E402
from factory.security.check import FixesChecker  # noqa: E402
from factory.security.report import FIXABLE, FixesRun  # noqa: E402
from factory.spec import config, manifest  # noqa: E402
from factory.trust.sign import Signer, ensure_dev_key  # noqa: E402

PLATFORMS = ("linux/amd64", "linux/arm64")
UPSTREAM_REGISTRY = "127.0.0.1:5000"
INDEX_LABEL = "org.example.bench.index"
SOURCES = ("deb http://deb.debian.org/debian bookworm main\n"
           "deb http://deb.debian.org/debian bookworm-updates main\n"
           "deb http://security.debian.org/debian-security bookworm-security main\n")
NAIVE_SCRIPT = f"printf '{SOURCES}' > /etc/apt/sources.list && apt-get update && apt-get -s -q upgrade"
# apt's own summary of `apt-get update`: "Fetched 9,312 kB in 3s (2,901 kB/s)"
FETCHED = re.compile(r"^Fetched ([0-9,.]+) ([kMG]?B) in ", re.MULTILINE)
UNITS = {"B": 1, "kB": 1000, "MB": 1000**2, "GB": 1000**3}
# Inst libpam0g [1.5.2-6+deb12u1] (1.5.2-6+deb12u2 Debian-Security:12/stable-security [arm64])
INST = re.compile(r"^Inst (\S+) \[(\S+)\] \((\S+) (.+) \[(\S+)\]\)", re.MULTILINE)


# --- a counting reverse proxy for the registry ----------------------------------------------------

@dataclass
class Traffic:
    requests: Counter[str] = field(default_factory=Counter)  # client (cosign, factory) -> requests
    bytes: Counter[str] = field(default_factory=Counter)  # client -> response body bytes
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, client: str, size: int) -> None:
        with self.lock:
            self.requests[client] += 1
            self.bytes[client] += size


def _client(user_agent: str) -> str:
    return "cosign" if "cosign" in user_agent.lower() or "go-containerregistry" in user_agent else "factory"


def counting_proxy(upstream: str, traffic: Traffic) -> http.server.ThreadingHTTPServer:
    """An HTTP/1.1 reverse proxy on 127.0.0.1 (a free port) that forwards every request to ``upstream``
    as it came (Host header included, so the registry's Location headers name the proxy) and counts it."""
    host, port = upstream.split(":")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(host, int(port), timeout=120)
            try:
                conn.request(self.command, self.path, body=body,
                             headers={k: v for k, v in self.headers.items() if k.lower() != "connection"})
                resp = conn.getresponse()
                data = resp.read()
            finally:
                conn.close()
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(k, v)
            declared = resp.getheader("Content-Length")
            self.send_header("Content-Length", declared if self.command == "HEAD" and declared else str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            traffic.add(_client(self.headers.get("User-Agent", "")), len(data))

        do_GET = do_HEAD = do_PUT = do_POST = do_PATCH = do_DELETE = _forward

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


# --- the tool runner, counting and timing every tool it runs ----------------------------------------

@dataclass(frozen=True)
class TimedRunner(Runner):
    calls: list[tuple[str, float]] = field(default_factory=list)

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        start = time.monotonic()
        try:
            return super().run(argv, **kwargs)
        finally:
            self.calls.append((Path(argv[0]).name, time.monotonic() - start))

    def seconds(self, tool: str) -> tuple[int, float]:
        runs = [s for name, s in self.calls if name == tool]
        return len(runs), sum(runs)


# --- the fixture ----------------------------------------------------------------------------------

def seeded_layout(docker: Docker, seeded: Seeded, workdir: Path) -> OciLayout:
    """The seeded upstream as an OCI layout (a FROM-only build): what trivy reads and the copies reuse."""
    context = workdir / "upstream"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {seeded.ref}\n")
    return build(docker, BuildRequest("upstream", context / "Dockerfile", PLATFORMS), workdir / "out").layout


def push_copies(layout: OciLayout, registry: Registry, repository: str,
                names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Each name: the layout's image with its own label, tagged <name>-v1.0.0. name -> platform -> digest."""
    registry.push_layout(layout, repository)  # the layers, once
    published: dict[str, dict[str, str]] = {}
    for i, name in enumerate(names):
        entries, digests = [], {}
        for platform in PLATFORMS:
            image = layout.image(platform)
            cfg = layout.config(platform)
            cfg.setdefault("config", {}).setdefault("Labels", {})[INDEX_LABEL] = str(i)
            cfg_raw = json.dumps(cfg, sort_keys=True).encode()
            registry.push_blob(repository, sha256_digest(cfg_raw), cfg_raw)
            man = copy.deepcopy(layout.read_json(image.manifest))
            man["config"] = {**man["config"], "digest": sha256_digest(cfg_raw), "size": len(cfg_raw)}
            man_raw = json.dumps(man, sort_keys=True).encode()
            digest = registry.put_manifest(repository, sha256_digest(man_raw), man_raw, image.manifest.media_type)
            digests[platform] = digest
            os_, arch = platform.split("/")
            entries.append({"mediaType": image.manifest.media_type, "digest": digest, "size": len(man_raw),
                            "platform": {"architecture": arch, "os": os_}})
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}).encode()
        registry.put_manifest(repository, f"{name}-v1.0.0", index, OCI_INDEX)
        published[name] = digests
    return published


def workspace(root: Path, names: Sequence[str], seeded: Seeded, registry: str, repository: str) -> Path:
    """A throwaway factory repository whose registry is the counting proxy; N manifests on the upstream."""
    (root / "manifests").mkdir(parents=True)
    (root / "factory.yaml").write_text(yaml.safe_dump({
        "registry": registry, "repository": repository, "helper_image": seeded.ref,
        "insecure_registries": [registry, UPSTREAM_REGISTRY],
        "policy": {"allowed_registries": [UPSTREAM_REGISTRY, registry]}}))
    for name in names:
        doc = {"apiVersion": "factory/v1", "name": name, "version": "1.0", "description": f"bench {name}",
               "upstream": {"image": seeded.image, "tag": seeded.tag, "digest": seeded.digest},
               "distro": "debian", "release": seeded.release, "platforms": list(PLATFORMS), "eol": "2028-06-30"}
        (root / "manifests" / f"{name}.yaml").write_text(yaml.safe_dump(doc))
    return root / "factory.yaml"


def attest_all(signer: Signer, target: str, published: dict[str, dict[str, str]],
               sboms: dict[str, dict[str, Any]], workers: int) -> None:
    jobs = [(f"{target}@{d}", sboms[p]) for digests in published.values() for p, d in digests.items()]
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda job: signer.attest(job[0], job[1], labels.CYCLONEDX), jobs))


# --- the two sides --------------------------------------------------------------------------------

@dataclass(frozen=True)
class FactorySide:
    run: FixesRun
    seconds: float
    archive_requests: int
    archive_bytes: int
    client_requests: int
    cosign_runs: int
    cosign_seconds: float


def factory_side(config_path: Path, runner: TimedRunner) -> FactorySide:
    """What `factory fixes` does (factory.security.check.run), with the archive stats kept."""
    ctx = RunContext(config_path)
    settings = ctx.settings
    start = time.monotonic()
    manifests = manifest.load_all(settings)
    with requests.Session() as session:
        archives = Archives(settings.archives, session, runner)
        result = FixesChecker(settings, ctx.registry, Signer(settings, runner), manifests, archives).check()
    seconds = time.monotonic() - start
    cosign_runs, cosign_seconds = runner.seconds("cosign")
    client = sum(sum(r.requests_made.values()) for r in ctx.registries())
    return FactorySide(result, seconds, archives.stats.requests, archives.stats.bytes, client,
                       cosign_runs, cosign_seconds)


@dataclass(frozen=True)
class NaiveRun:
    image: str
    platform: str
    seconds: float
    fetched: int  # bytes, as apt says
    security: frozenset[str]  # packages upgraded from the security suite


def naive_one(docker: Docker, image: str, platform: str) -> NaiveRun:
    start = time.monotonic()
    docker.client.image.pull(image, quiet=True, platform=platform)  # quietly: stdout is for the numbers
    rc, out, err = docker.run(image, ["-c", NAIVE_SCRIPT], platform=platform, hardened=False, user="0",
                              entrypoint="sh")
    seconds = time.monotonic() - start
    if rc != 0:
        raise SystemExit(f"apt-get in {image} [{platform}] exited {rc}:\n{out[-2000:]}\n{err[-2000:]}")
    fetched = FETCHED.search(out)
    if fetched is None:
        raise SystemExit(f"no 'Fetched' line in apt-get update's output of {image} [{platform}]:\n{out[-2000:]}")
    size = int(float(fetched[1].replace(",", "")) * UNITS[fetched[2]])
    security = frozenset(m[1] for m in INST.finditer(out) if "Debian-Security" in m[4])
    return NaiveRun(image, platform, seconds, size, security)


def factory_security(run: FixesRun, image: str, platform: str) -> frozenset[str]:
    report = next(r for r in run.reports if r.image == image and r.platform == platform)
    return frozenset(f.package for f in report.fixes if f.kind == "security")


def timed(fn: Callable[[], Any]) -> float:
    start = time.monotonic()
    fn()
    return time.monotonic() - start


# --- main -----------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="images on the factory side (default 200)")
    ap.add_argument("--naive-sample", type=int, default=4,
                    help="naive containers actually run, half per platform, then extrapolated (default 4)")
    ap.add_argument("--attest-workers", type=int, default=4, help="parallel `cosign attest` in the set-up")
    args = ap.parse_args()
    log.configure("console", 0, stream=sys.stderr)  # progress on stderr; the measurements on stdout

    base = config.load(ROOT / "demo" / "factory.yaml")
    runner = TimedRunner(extra_path=(base.tools_bin,))
    docker = Docker(runner, builder=base.builder)
    seeded = Seeder(base, runner, docker).seed(["debian"], base.platforms)[0]
    ensure_dev_key(base, runner)
    repository = f"bench{uuid.uuid4().hex[:8]}/base"
    names = [f"img{i:04d}" for i in range(args.images)]
    traffic = Traffic()
    proxy = counting_proxy(UPSTREAM_REGISTRY, traffic)
    proxied = f"127.0.0.1:{proxy.server_address[1]}"
    with tempfile.TemporaryDirectory(prefix="bench-fixes-") as tmp:
        workdir = Path(tmp)
        setup_start = time.monotonic()
        layout = seeded_layout(docker, seeded, workdir)
        sbom_gen = TrivySbom(runner, base.state_dir / "cache" / "trivy")
        sboms = {p: sbom_gen.generate(layout.root, p) for p in PLATFORMS}
        config_path = workspace(workdir / "repo", names, seeded, proxied, repository)
        setup = config.load(config_path)
        with Registry(UPSTREAM_REGISTRY, insecure=True) as registry:
            published = push_copies(layout, registry, repository, names)
        attest_seconds = timed(lambda: attest_all(Signer(setup, runner), f"{UPSTREAM_REGISTRY}/{repository}",
                                                  published, sboms, args.attest_workers))
        setup_seconds = time.monotonic() - setup_start
        runner.calls.clear()

        ours = factory_side(config_path, runner)
        bad = [r for r in ours.run.reports if r.status != FIXABLE or r.error]
        if bad or len(ours.run.reports) != 2 * args.images:
            raise SystemExit(f"the factory side should check {2 * args.images} platforms without error; "
                             f"got {len(ours.run.reports)}, e.g. {bad[:1]}")

        sample = [(names[i], PLATFORMS[i % 2]) for i in range(min(args.naive_sample, args.images))]
        naive = [naive_one(docker, f"{UPSTREAM_REGISTRY}/{repository}:{name}-v1.0.0", p) for name, p in sample]
        agree = all(n.security == factory_security(ours.run, name, n.platform)
                    for (name, _), n in zip(sample, naive, strict=True))
        for name, _ in sample:
            docker.remove_image(f"{UPSTREAM_REGISTRY}/{repository}:{name}-v1.0.0")
    proxy.shutdown()

    platforms_checked = len(ours.run.reports)
    per_platform = {p: [n for n in naive if n.platform == p] for p in PLATFORMS}
    naive_seconds = sum(args.images * mean(n.seconds for n in runs) for runs in per_platform.values() if runs)
    naive_bytes = sum(args.images * mean(n.fetched for n in runs) for runs in per_platform.values() if runs)
    fixes = sorted({len(factory_security(ours.run, r.image, r.platform)) for r in ours.run.reports})
    reg_requests = sum(traffic.requests.values())
    print(f"images: {args.images} x {len(PLATFORMS)} platforms = {platforms_checked} image platforms "
          f"(security fixes pending per platform: {', '.join(map(str, fixes))})")
    print(f"set-up (not timed below): {setup_seconds:.0f} s, of which {2 * args.images} cosign attest "
          f"{attest_seconds:.0f} s ({args.attest_workers} in parallel)")
    print()
    print(f"factory fixes ({platforms_checked} image platforms): {ours.seconds:8.1f} s wall")
    print(f"  cosign verify-attestation runs:   {ours.cosign_runs:6d}, {ours.cosign_seconds:.1f} s "
          f"({ours.cosign_seconds / max(ours.cosign_runs, 1):.2f} s each, "
          f"{100 * ours.cosign_seconds / ours.seconds:.0f}% of the wall time)")
    print(f"  registry requests:                {reg_requests:6d} ({traffic.requests['cosign']} by cosign, "
          f"{traffic.requests['factory']} by the factory's client; its own count: {ours.client_requests}); "
          f"{_mb(sum(traffic.bytes.values()))} received")
    print(f"  archive requests:                 {ours.archive_requests:6d}, {_mb(ours.archive_bytes)} downloaded "
          "(each index once per run)")
    print()
    sampled = [p for p, runs in per_platform.items() if runs]  # extrapolated over these platforms only
    print(f"naive, apt-get -s upgrade per image and platform: measured {len(naive)}, extrapolated to "
          f"{len(sampled) * args.images} ({', '.join(sampled)})")
    for p, runs in per_platform.items():
        if runs:
            print(f"  {p:<12} measured {len(runs)}: {mean(n.seconds for n in runs):6.1f} s and "
                  f"{_mb(int(mean(n.fetched for n in runs)))} (apt's 'Fetched') per container")
    print(f"  extrapolated to {len(sampled) * args.images}:              {naive_seconds:8.1f} s wall (one at a time), "
          f"{_mb(int(naive_bytes))} from the archive")
    print(f"  security fixes the sampled containers list == the factory's for the same image and platform: "
          f"{'yes' if agree else 'NO'}")
    print()
    print(f"ratio naive / factory, wall time:     {naive_seconds / ours.seconds:7.1f}x")
    print(f"ratio naive / factory, archive bytes: {naive_bytes / max(ours.archive_bytes, 1):7.1f}x")


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


if __name__ == "__main__":
    main()
