"""Test the exact artifact that was built, per platform, before anything is pushed.

The OCI archive is ``docker load``ed (the containerd store keeps the index digest as the image id)
and every platform is checked three ways:

- filesystem, from ``docker create`` + export (works for images without a shell): the user's
  passwd entry, the CA bundle, each org CA in it (by SHA-256 fingerprint), no setuid/setgid files,
  no world-writable files outside sticky dirs;
- configuration, from the layout's image config: USER is the manifest's uid:gid, TZ and env set;
- runtime, under the hardened flags (--read-only --cap-drop=ALL --security-opt=no-new-privileges
  --tmpfs /tmp): the shell probe for images that have one, and the manifest's own tests.
"""

from __future__ import annotations

import stat
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from factory.adapters.docker import Docker
from factory.core import log
from factory.core.errors import StepFailed
from factory.core.model import ImageTest, Manifest
from factory.oci.layout import OciLayout
from factory.spec import certs

CA_BUNDLE = "etc/ssl/certs/ca-certificates.crt"
# Where world-writable entries are expected (sticky directories are allowed anywhere).
WRITABLE_OK = ("tmp", "var/tmp", "dev", "proc", "sys", "run/lock")


@dataclass(frozen=True)
class CheckResult:
    name: str
    platform: str
    digest: str  # the platform manifest digest the check ran on
    passed: bool
    detail: str


@dataclass(frozen=True)
class Expectations:
    """What the built image must satisfy, derived from the manifest (and the variant)."""

    uid: int
    gid: int
    timezone: str
    env: tuple[tuple[str, str], ...]
    ca_bundle: bool
    has_shell: bool
    tests: tuple[ImageTest, ...]
    ca_fingerprints: tuple[str, ...] = ()  # SHA-256 of each org CA the bundle must hold

    @classmethod
    def for_manifest(cls, m: Manifest, *, debug: bool = False) -> Expectations:
        variant = m.variant("debug") if debug else None
        env = m.env + (variant.env if variant else ())
        return cls(m.user.uid, m.user.gid, m.timezone, env, m.ca_certificates or bool(m.certificates),
                   m.has_shell or debug, () if debug else m.tests, certs.fingerprints(m.certificates))


def test_image(docker: Docker, archive: Path, layout: OciLayout, expect: Expectations) -> list[CheckResult]:
    image_id = docker.load(archive)
    if image_id != layout.index.digest:
        raise StepFailed(archive.name, "test", f"docker load gave {image_id}, expected the index {layout.index.digest}",
                         hint="the docker engine must use the containerd image store (make services)")
    results: list[CheckResult] = []
    for image in layout.images:
        p, digest = image.platform, image.manifest.digest
        results += [CheckResult(n, p, digest, ok, d) for n, ok, d in config_checks(layout.config(p), expect)]
        with tempfile.TemporaryDirectory() as tmp:
            fs_tar = Path(tmp) / "fs.tar"
            docker.export_filesystem(image_id, p, fs_tar)
            results += [CheckResult(n, p, digest, ok, d) for n, ok, d in filesystem_checks(fs_tar, expect)]
        results += [CheckResult(n, p, digest, ok, d) for n, ok, d in runtime_checks(docker, image_id, p, expect)]
    for r in results:
        log.get("imagetest").info("check", check=r.name, platform=r.platform, passed=r.passed, detail=r.detail)
    return results


def failures(results: Iterable[CheckResult]) -> list[CheckResult]:
    return [r for r in results if not r.passed]


# --- configuration ---------------------------------------------------------------------------

def config_checks(config: dict[str, Any], expect: Expectations) -> list[tuple[str, bool, str]]:
    cfg = config.get("config") or {}
    user = cfg.get("User", "")
    env = dict(e.split("=", 1) for e in cfg.get("Env") or [] if "=" in e)
    wanted_env = {"TZ": expect.timezone, **dict(expect.env)}
    wrong = {k: env.get(k) for k, v in wanted_env.items() if env.get(k) != v}
    return [
        ("config-user", user in (f"{expect.uid}:{expect.gid}", str(expect.uid)),
         f"USER is {user!r}, expected {expect.uid}:{expect.gid}"),
        ("config-env", not wrong, "TZ and manifest env set" if not wrong else f"wrong or missing: {wrong}"),
    ]


# --- filesystem ------------------------------------------------------------------------------

class _Tree:
    """Members of an exported filesystem tar by normalised path, with symlink resolution."""

    def __init__(self, tar: tarfile.TarFile) -> None:
        self.tar = tar
        self.members = {m.name.lstrip("./").rstrip("/"): m for m in tar.getmembers()}

    def resolve(self, path: str, depth: int = 0) -> tarfile.TarInfo | None:
        m = self.members.get(path)
        if m is None or depth > 20:
            return None
        if m.issym():
            target = PurePosixPath(m.linkname)
            joined = target if target.is_absolute() else PurePosixPath(path).parent / target
            return self.resolve(_normpath(str(joined)), depth + 1)
        if m.islnk():
            return self.resolve(m.linkname.lstrip("./"), depth + 1)
        return m

    def read(self, path: str) -> bytes | None:
        m = self.resolve(path)
        if m is None or not m.isfile():
            return None
        f = self.tar.extractfile(m)
        return f.read() if f else None


def _normpath(path: str) -> str:
    parts: list[str] = []
    for part in PurePosixPath(path).parts:
        if part in ("/", "."):
            continue
        if part == "..":
            parts = parts[:-1]
        else:
            parts.append(part)
    return "/".join(parts)


def filesystem_checks(fs_tar: Path, expect: Expectations) -> list[tuple[str, bool, str]]:
    with tarfile.open(fs_tar) as tar:
        tree = _Tree(tar)
        checks = [_passwd_check(tree, expect), _setuid_check(tree), _world_writable_check(tree)]
        if expect.ca_bundle:
            checks.append(_ca_check(tree))
        if expect.ca_fingerprints:
            checks.append(_org_ca_check(tree, expect.ca_fingerprints))
        if expect.timezone != "UTC":
            zone = f"usr/share/zoneinfo/{expect.timezone}"
            checks.append(("zoneinfo", tree.resolve(zone) is not None, f"/{zone}"))
    return checks


def _passwd_check(tree: _Tree, expect: Expectations) -> tuple[str, bool, str]:
    passwd = (tree.read("etc/passwd") or b"").decode(errors="replace")
    uids = {fields[2] for fields in (line.split(":") for line in passwd.splitlines()) if len(fields) > 3}
    ok = str(expect.uid) in uids
    return "passwd-entry", ok, f"uid {expect.uid} {'in' if ok else 'NOT in'} /etc/passwd"


def _ca_check(tree: _Tree) -> tuple[str, bool, str]:
    data = tree.read(CA_BUNDLE) or b""
    count = data.count(b"-----BEGIN CERTIFICATE-----")
    return "ca-bundle", count > 0, f"/{CA_BUNDLE}: {count} certificates, {len(data)} bytes"


def _org_ca_check(tree: _Tree, wanted: tuple[str, ...]) -> tuple[str, bool, str]:
    """The bundle OpenSSL, curl and Go read holds every org CA: TLS to internal endpoints works."""
    have = certs.bundle_fingerprints(tree.read(CA_BUNDLE) or b"")
    missing = [f for f in wanted if f not in have]
    detail = (f"all {len(wanted)} org CA(s) in /{CA_BUNDLE}" if not missing else
              f"not in /{CA_BUNDLE}: sha256 {', '.join(missing)}")
    return "org-ca-trusted", not missing, detail


def _setuid_check(tree: _Tree) -> tuple[str, bool, str]:
    found = sorted(f"/{p}" for p, m in tree.members.items() if m.isfile() and m.mode & (stat.S_ISUID | stat.S_ISGID))
    return "no-setuid", not found, "none" if not found else f"setuid/setgid: {', '.join(found[:10])}"


def _world_writable_check(tree: _Tree) -> tuple[str, bool, str]:
    def allowed(path: str, m: tarfile.TarInfo) -> bool:
        sticky_dir = m.isdir() and m.mode & stat.S_ISVTX
        return bool(sticky_dir) or any(path == d or path.startswith(d + "/") for d in WRITABLE_OK)

    found = sorted(f"/{p}" for p, m in tree.members.items()
                   if not m.issym() and m.mode & stat.S_IWOTH and not allowed(p, m))
    return "no-world-writable", not found, "none" if not found else f"world-writable: {', '.join(found[:10])}"


# --- runtime ---------------------------------------------------------------------------------

SHELL_PROBE = 'id -u; id -g; echo "$TZ"; touch /probe-readonly 2>/dev/null && echo writable || echo read-only'


def runtime_checks(docker: Docker, image: str, platform: str, expect: Expectations) -> list[tuple[str, bool, str]]:
    checks = []
    if expect.has_shell:
        # "sh" from the image's PATH: a no-shell image's debug variant has busybox under /busybox
        rc, out, err = docker.run(image, ["-c", SHELL_PROBE], platform=platform, entrypoint="sh")
        want = [str(expect.uid), str(expect.gid), expect.timezone, "read-only"]
        got = out.split()
        failed = f"; exit {rc}: {err.strip()[:200]}" if rc else ""
        checks.append(("hardened-run", rc == 0 and got == want, f"uid/gid/TZ/rootfs {got} (expected {want})" + failed))
    for t in expect.tests:
        rc, out, err = docker.run(image, list(t.run[1:]), platform=platform, entrypoint=t.run[0])
        ok = rc == t.expect_exit and (t.expect_stdout is None or t.expect_stdout in out)
        detail = f"exit {rc} (expected {t.expect_exit})"
        if t.expect_stdout is not None:
            detail += f", stdout {out.strip()[:100]!r} (expected to contain {t.expect_stdout!r})"
        if not ok and err:
            detail += f"; stderr: {err.strip()[-300:]}"
        checks.append((f"test: {t.name}", ok, detail))
    return checks
