"""A BuildKit cache mount for apt's lists and archives in the org layer's RUN: wall time, bytes downloaded
and the resulting layers of a run of several Debian images, with and without it, measured in one run.

    .venv/bin/python bench/apt_cache.py [--images 3] [--platform linux/amd64 ...] [--variant mounts ...]

Each image's org layer runs `apt-get update` (apply-fixes.sh, with bookworm, -updates and -security),
upgrades the packages that have security fixes and installs its own packages, per platform. A
`publish --all` of several images on one Debian release therefore downloads the same indexes (and the
same fixed .debs) once per image and platform. Built here, one image after the other as publish does,
each for all platforms in one build (real BuildKit through `factory.build.buildx.build`: OCI layout,
rewrite-timestamp, a fixed SOURCE_DATE_EPOCH), for N manifests on the seeded Debian bookworm minbase
upstream (`factory seed debian`), each with its own packages (curl, jq, procps, ...):

  without     the Dockerfiles `factory render` writes today;
  mounts      + `--mount=type=cache,target=/var/lib/apt/lists,sharing=locked` and the same for
              /var/cache/apt (ids per architecture: `apt-get update` deletes the lists of architectures
              it was not asked for), `apt-get clean` and `rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin`
              left out (they would empty the caches; the mounts are in no layer anyway);
  redirected  + one cache mount on /var/cache/apt (per architecture), apt's lists moved into it for
              this RUN (Dir::State::Lists in a file that APT_CONFIG names, inside the mount), `apt-get
              clean` and the rm of *.bin left out, today's `rm -rf /var/lib/apt/lists/*` kept.

The cache ids are new for each run of this script, so the first image starts with empty caches, as on
a fresh builder. BuildKit's layer cache stays on, as publish has it (`--no-cache` also empties cache
mounts); every build's RUN starts with a different no-op (`: bench-<run>-<variant>`) so that no RUN is
answered from an earlier build. The fixes' build args are what publish passes (`fixes_build_args`: the
configured suites, the archive state, and as SECURITY_FIXES the packages for which bookworm-security has
a newer version than the upstream carries, its dpkg database against the factory's verified archive index).
Bytes: every build's apt goes through a counting HTTP proxy on the docker bridge's gateway address (the
predefined build arg `http_proxy`, which is in no layer and no cache key); it counts the bodies apt
received, and the 304 answers (an index apt already has). Layers: today's rendering of the first image
is built once more at the end (not timed), to see what differs between two builds of the same
Dockerfile; per variant, image and platform the org layer's diff ID against today's, and every tar entry
that differs beyond that.
Needs `make services` (dockerd with BuildKit, QEMU for arm64) and the Debian archive.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import http.server
import json
import socket
import sys
import tarfile
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from factory.adapters.docker import Docker  # noqa: E402
from factory.adapters.tools import Runner  # noqa: E402
from factory.archive.fetch import Archives  # noqa: E402
from factory.build.buildx import BuildRequest, BuiltImage, build  # noqa: E402
from factory.core import log  # noqa: E402
from factory.core.platforms import parse_all  # noqa: E402
from factory.ops.seed import Seeded, Seeder  # noqa: E402
from factory.publish.inputs import archive_state  # noqa: E402
from factory.render import contexts as render  # noqa: E402
from factory.security.fixes import pending_fixes  # noqa: E402
from factory.security.installed import InstalledPackage  # noqa: E402
from factory.spec import config, manifest  # noqa: E402

PACKAGES = (["curl"], ["jq"], ["procps"], ["less"], ["file"], ["xz-utils"])
SOURCE_DATE_EPOCH = 1_704_067_200  # 2024-01-01
BUILD_ARGS = {"FACTORY_VERSION": "1.0.0", "FACTORY_REVISION": "bench", "FACTORY_CREATED": "2024-01-01T00:00:00Z",
              "FACTORY_FINGERPRINT": "sha256:bench"}
CLEAN_TODAY = "    apt-get clean; \\\n    rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/debconf/*-old"
FIXES_MOUNT = f"RUN --mount=type=bind,source={render.FIXES_SCRIPT},"
# apt.conf(5): the file APT_CONFIG names is read first, then apt.conf.d and apt.conf, then the command line.
REDIRECT = ("mkdir -p /var/cache/apt/lists/partial; "
            "echo 'Dir::State::Lists \"/var/cache/apt/lists/\";' > /var/cache/apt/factory-lists.conf; "
            "export APT_CONFIG=/var/cache/apt/factory-lists.conf")
VARIANTS = {
    "without": "today's rendering",
    "mounts": "cache mounts on /var/lib/apt/lists and /var/cache/apt; apt-get clean and the rm of lists and "
              "*.bin left out",
    "redirected": "one cache mount on /var/cache/apt, Dir::State::Lists pointed into it (APT_CONFIG); "
                  "apt-get clean and the rm of *.bin left out, the rm of /var/lib/apt/lists/* kept",
}


# --- a counting forward HTTP proxy --------------------------------------------------------------------

@dataclass
class Traffic:
    requests: int = 0
    not_modified: int = 0
    bytes: int = 0
    by_host: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, host: str, status: int, size: int) -> None:
        with self.lock:
            self.requests += 1
            self.not_modified += status == 304
            self.bytes += size
            self.by_host[host] += size

    def snapshot(self) -> tuple[int, int, int]:
        with self.lock:
            return self.requests, self.not_modified, self.bytes


def counting_proxy(address: str, traffic: Traffic) -> http.server.ThreadingHTTPServer:
    """A forward proxy for plain HTTP (what apt speaks to the Debian mirrors), counting response bodies."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        upstream: dict[str, http.client.HTTPConnection]

        def setup(self) -> None:
            super().setup()
            self.upstream = {}  # one connection per origin for this client connection (apt keeps one open)

        def finish(self) -> None:
            for conn in self.upstream.values():
                conn.close()
            super().finish()

        def do_GET(self) -> None:
            url = urllib.parse.urlsplit(self.path)
            if url.scheme != "http" or not url.hostname:
                self.send_error(400, "only absolute http:// URLs")
                return
            origin = f"{url.hostname}:{url.port or 80}"
            path = url.path + (f"?{url.query}" if url.query else "")
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
            try:
                resp, data = self._fetch(origin, path, headers)
            except (OSError, http.client.HTTPException):  # the kept connection was closed: once more, new
                self.upstream.pop(origin, None)
                resp, data = self._fetch(origin, path, headers)
            self.send_response_only(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in ("transfer-encoding", "connection", "content-length", "keep-alive"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            traffic.add(url.hostname, resp.status, len(data))

        do_HEAD = do_GET

        def _fetch(self, origin: str, path: str, headers: dict[str, str]) -> tuple[http.client.HTTPResponse, bytes]:
            if origin not in self.upstream:
                host, port = origin.rsplit(":", 1)
                self.upstream[origin] = http.client.HTTPConnection(host, int(port), timeout=120)
            conn = self.upstream[origin]
            conn.request(self.command, path, headers=headers)
            resp = conn.getresponse()
            return resp, resp.read()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def bridge_gateway(docker: Docker) -> str:
    """The host's address on docker's default bridge: where a RUN step reaches a service on the host."""
    ipam = docker.client.network.inspect("bridge").ipam
    gateway = str(ipam.config[0]["Gateway"]) if ipam and ipam.config else ""
    socket.inet_aton(gateway)  # an address, or this fails here instead of in every build
    return gateway


# --- the images ---------------------------------------------------------------------------------------

def workspace(root: Path, seeded: Seeded, n: int) -> config.Settings:
    (root / "manifests").mkdir(parents=True)
    (root / "factory.yaml").write_text(json.dumps({"helper_image": seeded.ref}))
    for i in range(n):
        name = f"apt{i}"
        (root / "manifests" / f"{name}.yaml").write_text(json.dumps({
            "apiVersion": "factory/v1", "name": name, "version": "1.0", "description": f"bench {name}",
            "upstream": {"image": seeded.image, "tag": seeded.tag, "digest": seeded.digest},
            "distro": "debian", "release": seeded.release, "eol": "2028-06-30",
            "packages": PACKAGES[i % len(PACKAGES)]}))
    settings = config.load(root / "factory.yaml", environ={})
    render.write_all(manifest.load_all(settings), settings)
    return settings


def _replace_once(text: str, pairs: Sequence[tuple[str, str]]) -> str:
    for old, new in pairs:
        if text.count(old) != 1:
            raise SystemExit(f"the rendered Dockerfile no longer has exactly one {old!r}: update this bench")
        text = text.replace(old, new)
    return text


def variant(dockerfile: str, name: str, cache_id: str, nonce: str) -> str:
    """The rendered Dockerfile as variant ``name`` (see VARIANTS). ``nonce``: a no-op first command, so
    that BuildKit's layer cache cannot answer the RUN from an earlier build (the layer is the same)."""
    pairs = [(" set -eux; \\\n", f" set -eux; \\\n    : {nonce}; \\\n")]
    arch = (f"ARG {render.FIXES_ARG}\n", f"ARG {render.FIXES_ARG}\nARG TARGETARCH\n")
    cache = f"--mount=type=cache,id={cache_id}-{name}-{{what}}-${{{{TARGETARCH}}}},target={{target}},sharing=locked "
    if name == "mounts":  # apt's own folders on cache mounts; their clean-up left out
        mounts = cache.format(what="lists", target="/var/lib/apt/lists") + cache.format(what="cache",
                                                                                        target="/var/cache/apt")
        pairs += [arch, (FIXES_MOUNT, f"RUN {mounts}{FIXES_MOUNT.removeprefix('RUN ')}"),
                  (CLEAN_TODAY, "    rm -rf /var/cache/debconf/*-old")]
    elif name == "redirected":  # one mount on /var/cache/apt, apt's lists moved into it for this RUN
        mounts = cache.format(what="cache", target="/var/cache/apt")
        pairs += [arch, (FIXES_MOUNT, f"RUN {mounts}{FIXES_MOUNT.removeprefix('RUN ')}"),
                  ("    export DEBIAN_FRONTEND=noninteractive; \\\n", f"    {REDIRECT}; \\\n"
                   "    export DEBIAN_FRONTEND=noninteractive; \\\n"),
                  (CLEAN_TODAY, "    rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old")]
    return _replace_once(dockerfile, pairs)


def security_fixes(docker: Docker, runner: Runner, settings: config.Settings, seeded: Seeded) -> tuple[str, str]:
    """(SECURITY_FIXES, ARCHIVE_STATE) as publish passes them: the upstream's packages with a newer version in
    bookworm-security, and the state of the archive read."""
    fmt = r"${binary:Package}\t${Version}\t${Architecture}\t${source:Package}\n"
    docker.client.image.pull(seeded.ref, quiet=True, platform="linux/amd64")  # quietly: stdout is for numbers
    rc, out, err = docker.run(seeded.ref, ["-W", f"-f={fmt}"], platform="linux/amd64", hardened=False,
                              entrypoint="dpkg-query")
    if rc != 0:
        raise SystemExit(f"dpkg-query in {seeded.ref} exited {rc}: {err}")
    installed = []
    for line in out.splitlines():
        name, version, arch, source = line.split("\t")
        installed.append(InstalledPackage(name.split(":")[0], version, arch, source, "deb", ""))
    with requests.Session() as session:
        index = Archives(settings.archives, session, runner).index_for("debian", "bookworm", "linux/amd64")
    state = archive_state((x.mirror, x.name, x.date.isoformat() if x.date else "") for x in index.suites())
    return " ".join(sorted(f.package for f in pending_fixes(installed, index).security)), state


@dataclass(frozen=True)
class Built:
    image: BuiltImage
    seconds: float
    requests: int
    not_modified: int
    bytes: int


def build_all(docker: Docker, contexts: Sequence[Path], dockerfile_name: str, platforms: Sequence[str],
              build_args: dict[str, str], traffic: Traffic, out: Path) -> list[Built]:
    built = []
    for context in contexts:
        before = traffic.snapshot()
        start = time.monotonic()
        request = BuildRequest(context.name, context / dockerfile_name, tuple(platforms), build_args,
                               source_date_epoch=SOURCE_DATE_EPOCH)
        image = build(docker, request, out / context.name)
        after = traffic.snapshot()
        built.append(Built(image, time.monotonic() - start, after[0] - before[0], after[1] - before[1],
                           after[2] - before[2]))
    return built


# --- comparing layers ---------------------------------------------------------------------------------

def org_layer(image: BuiltImage, platform: str) -> tuple[str, Path]:
    """(diff ID, blob path) of the image's last layer: the org layer."""
    layout = image.layout
    diff_id: str = layout.config(platform)["rootfs"]["diff_ids"][-1]
    return diff_id, layout.blob(layout.layers(platform)[-1].digest)


def entries(blob: Path) -> dict[str, tuple[Any, ...]]:
    """name -> (type, mode, uid, gid, mtime, size, link, sha256 of the content) of every tar entry."""
    found = {}
    with gzip.open(blob) as raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for member in tar:
            content = tar.extractfile(member) if member.isfile() else None
            digest = hashlib.sha256(content.read()).hexdigest()[:12] if content else ""
            found[member.name] = (member.type.decode(), oct(member.mode), member.uid, member.gid, member.mtime,
                                  member.size, member.linkname, digest)
    return found


def differences(a: Path, b: Path) -> dict[str, str]:
    """path -> how the entry differs between tar ``a`` and tar ``b``."""
    ea, eb = entries(a), entries(b)
    found = {n: f"only in the first {ea[n][:2]}" for n in ea.keys() - eb.keys()}
    found |= {n: f"only in the second {eb[n][:2]}" for n in eb.keys() - ea.keys()}
    found |= {n: f"{ea[n]} vs {eb[n]}" for n in ea.keys() & eb.keys() if ea[n] != eb[n]}
    return dict(sorted(found.items()))


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--images", type=int, default=3, help="Debian images in the run (default 3)")
    parser.add_argument("--platform", action="append", dest="platforms",
                        help="repeat for several (default: linux/amd64 and linux/arm64)")
    parser.add_argument("--variant", action="append", dest="variants", choices=list(VARIANTS)[1:],
                        help="repeat for several (default: all); today's rendering is always built")
    args = parser.parse_args(argv)
    log.configure("console", 0, stream=sys.stderr)  # progress on stderr; the numbers alone on stdout
    platforms = args.platforms or ["linux/amd64", "linux/arm64"]
    variants = ["without", *(args.variants or list(VARIANTS)[1:])]
    with tempfile.TemporaryDirectory(prefix="bench-apt-cache-") as tmp:
        workdir = Path(tmp)
        (workdir / "factory.yaml").write_text("")
        base = config.load(workdir / "factory.yaml", environ={})
        runner = Runner(extra_path=(base.tools_bin,))
        docker = Docker(runner, builder=base.builder)
        seeded = Seeder(base, runner, docker).seed(["debian"], parse_all(platforms))[0]
        settings = workspace(workdir / "repo", seeded, args.images)
        contexts = sorted(p for p in settings.images_dir.iterdir() if p.is_dir())
        run_id = uuid.uuid4().hex[:8]
        builds = [*variants, "again"]  # again: today's rendering once more, for reproducibility
        for context in contexts:
            text = (context / render.DOCKERFILE).read_text()
            for label in builds:
                name = "without" if label == "again" else label
                dockerfile = variant(text, name, f"bench-apt-{run_id}", f"bench-{run_id}-{label}")
                (context / f"Dockerfile.{label}").write_text(dockerfile)
        fixes, state = security_fixes(docker, runner, settings, seeded)
        traffic = Traffic()
        proxy = counting_proxy(bridge_gateway(docker), traffic)
        host, port = proxy.server_address[:2]
        # What publish passes (the same for every image here: all have packages), and the proxy.
        first = next(iter(manifest.load_all(settings).values()))
        build_args = {**BUILD_ARGS, **render.fixes_build_args(first, fixes.split(), state),
                      "http_proxy": f"http://{host!s}:{port}"}
        runs: dict[str, tuple[float, list[Built]]] = {}
        for label in builds:
            start = time.monotonic()
            chosen = contexts[:1] if label == "again" else contexts
            built = build_all(docker, chosen, f"Dockerfile.{label}", platforms, build_args, traffic, workdir / label)
            runs[label] = (time.monotonic() - start, built)
        proxy.shutdown()
        report(args.images, seeded, platforms, fixes, contexts, variants, runs)
    return 0


def report(n: int, seeded: Seeded, platforms: Sequence[str], fixes: str, contexts: Sequence[Path],
           variants: Sequence[str], runs: dict[str, tuple[float, list[Built]]]) -> None:
    print(f"{n} images on {seeded.ref}, {', '.join(platforms)}; one build per image for all platforms, one "
          "image after the other")
    print(f"SECURITY_FIXES ({len(fixes.split())}): {fixes}")
    for label, what in ((v, VARIANTS[v]) for v in variants):
        print(f"  {label:<11} {what}")
    print()
    print(f"{'variant':<11} {'image':<6} {'wall':>8} {'requests':>9} {'304':>5} {'downloaded':>11}")
    for label in variants:
        seconds, built = runs[label]
        for context, b in zip(contexts, built, strict=True):
            print(f"{label:<11} {context.name:<6} {b.seconds:7.1f}s {b.requests:>9} {b.not_modified:>5} "
                  f"{_mb(b.bytes):>11}")
        print(f"{label:<11} {'run':<6} {seconds:7.1f}s {sum(b.requests for b in built):>9} "
              f"{sum(b.not_modified for b in built):>5} {_mb(sum(b.bytes for b in built)):>11}")
    base_seconds, base_built = runs["without"]
    for label in variants[1:]:
        seconds, built = runs[label]
        print(f"without / {label}: wall {base_seconds / seconds:.2f}x, bytes "
              f"{sum(b.bytes for b in base_built) / max(sum(b.bytes for b in built), 1):.1f}x")
    print()
    # What differs between two builds of the same Dockerfile is not the cache mount's doing.
    unstable: dict[str, set[str]] = {}
    for p in platforms:
        first, blob_first = org_layer(base_built[0].image, p)
        again, blob_again = org_layer(runs["again"][1][0].image, p)
        unstable[p] = set(differences(blob_first, blob_again))
        print(f"{contexts[0].name} {p}: today's rendering built twice: {first[:19]} and {again[:19]}: "
              + ("identical" if first == again else "differ in " + ", ".join(sorted(unstable[p]))))
    print("org layer per image and platform, against today's (entries that also differ between two builds of "
          "today's rendering left out):")
    for label in variants[1:]:
        same_everywhere = True
        for context, a, b in zip(contexts, base_built, runs[label][1], strict=True):
            for p in platforms:
                (da, blob_a), (db, blob_b) = org_layer(a.image, p), org_layer(b.image, p)
                diff = {k: v for k, v in differences(blob_a, blob_b).items() if k not in unstable[p]}
                same_everywhere &= not diff
                verdict = "diff ID identical" if da == db else ("same entries" if not diff else "DIFFERENT")
                print(f"  {label:<11} {context.name:<6} {p:<12} {da[:19]} vs {db[:19]}: {verdict}")
                for path, how in diff.items():
                    print(f"      {path}: {how}")
        print(f"  {label}: the same entries as today's layer for every image and platform: "
              f"{'yes' if same_everywhere else 'no'}")


if __name__ == "__main__":
    sys.exit(main())
