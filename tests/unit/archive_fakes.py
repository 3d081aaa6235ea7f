"""In-process stand-ins for the archive tests: a requests adapter serving fixture mirrors from disk, and a
gpgv stand-in (unit tests may not start processes; tests/integration/test_archive.py runs the real gpgv)."""

from __future__ import annotations

import io
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import requests
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from factory.adapters.tools import Runner
from factory.spec.config import ArchiveSettings, default_archives

DATA = Path(__file__).resolve().parent.parent / "data" / "archive"
UBUNTU = DATA / "ubuntu"
ALPINE = DATA / "alpine"

# The invented mirrors of the fixtures, as URL prefix -> folder.
UBUNTU_MIRRORS = {
    "http://ubuntu.test/ubuntu": UBUNTU / "mirror",
    "http://security.ubuntu.test/ubuntu": UBUNTU / "security",
    "http://ports.ubuntu.test/ubuntu-ports": UBUNTU / "ports",
}
ALPINE_MIRRORS = {"https://alpine.test/alpine": ALPINE / "mirror"}


def _paths(overrides: dict[str, object]) -> dict[str, object]:
    return {k: Path(str(v)) if k in ("keyring", "keys_dir") else v for k, v in overrides.items()}


def ubuntu_settings(**overrides: object) -> ArchiveSettings:
    base = default_archives()
    ubuntu = replace(base.ubuntu, mirror="http://ubuntu.test/ubuntu", security_mirror="http://security.ubuntu.test/ubuntu",
                     ports_mirror="http://ports.ubuntu.test/ubuntu-ports", keyring=UBUNTU / "keyring.gpg")
    return replace(base, ubuntu=replace(ubuntu, **_paths(overrides)))  # type: ignore[arg-type]


def alpine_settings(**overrides: object) -> ArchiveSettings:
    base = default_archives()
    alpine = replace(base.alpine, mirror="https://alpine.test/alpine", keys_dir=ALPINE / "keys")
    return replace(base, alpine=replace(alpine, **_paths(overrides)))  # type: ignore[arg-type]


class FileMirror(BaseAdapter):
    """Serves ``prefix/<path>`` from ``folder/<path>``; ``replace`` swaps a path's bytes (tampering);
    ``fail`` raises a connection error for every request."""

    def __init__(self, mirrors: dict[str, Path], *, replace: dict[str, bytes] | None = None,
                 fail: bool = False) -> None:
        super().__init__()
        self.mirrors, self.replace, self.fail = mirrors, replace or {}, fail
        self.seen: list[str] = []

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        url = request.url
        self.seen.append(url)
        if self.fail:
            raise requests.ConnectionError(f"connection refused: {url}")
        data = self.replace.get(url)
        if data is None:
            for prefix, folder in self.mirrors.items():
                path = folder / url[len(prefix) + 1:] if url.startswith(prefix + "/") else None
                if path is not None and path.is_file():
                    data = path.read_bytes()
        response = requests.Response()
        response.url, response.request = url, request
        response.status_code, response.reason = (200, "OK") if data is not None else (404, "Not Found")
        response.raw = io.BytesIO(data or b"not found")
        response.headers = CaseInsensitiveDict({"Content-Length": str(len(data or b"not found"))})
        return response

    def close(self) -> None:
        pass


def session_for(adapter: FileMirror) -> requests.Session:
    session = requests.Session()
    for prefix in adapter.mirrors:
        session.mount(prefix, adapter)
    for url in adapter.replace:
        session.mount(url, adapter)
    return session


@dataclass(frozen=True)
class FakeGpgv(Runner):
    """Answers ``gpgv --status-fd 1 --keyring K --output OUT IN`` without a process: writes the clearsigned
    text of IN to OUT and reports a good signature (``good=False``: a bad one). Records each argv."""

    good: bool = True
    calls: list[list[str]] = field(default_factory=list)

    def run(self, argv, **kwargs):  # type: ignore[override]
        self.calls.append(list(argv))
        out, src = Path(argv[argv.index("--output") + 1]), Path(argv[-1])
        text = src.read_text()
        body = text.split("\n\n", 1)[1].split("-----BEGIN PGP SIGNATURE-----", 1)[0]
        if self.good:
            out.write_text(body)
            status = "[GNUPG:] GOODSIG 67D2E9BD627FF36E Test\n[GNUPG:] VALIDSIG 9BCE 2026-12-01\n"
            return subprocess.CompletedProcess(argv, 0, status, "")
        return subprocess.CompletedProcess(argv, 1, "[GNUPG:] BADSIG 67D2E9BD627FF36E Test\n",
                                           "gpgv: BAD signature")
