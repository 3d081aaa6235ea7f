"""A hostile repository: what a pull request can put in manifests/, images/, certs/ and factory.yaml.

- tests/unit/hostile/validate/: manifests that load but must be refused by ``factory validate`` (policy a
  waiver or a lie about the release used to undo). Each is run through the real CLI, in-process: exit 1,
  an error line naming the file and the key, no traceback, in bounded time. Every other corpus case
  (tests/unit/hostile, tests/unit/hostile_config) is also run through ``validate`` and ``render --check``
  here: none may crash or hang, and none may print a password.
- factory.spec.repofs: no link out of the repository, no special file, sizes checked before reading.
- render never writes or deletes through a committed link; render --check and plan never follow one.
- late failures moved early: a child inheriting its parent's user; a certificate cryptography cannot
  parse; docker printing something that is not JSON; a distroless upstream without /etc/passwd.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from factory import cli
from factory.adapters.docker import Docker
from factory.core.errors import (
    CertificateError,
    ConfigError,
    EnvironmentProblem,
    ManifestError,
    RepoFileError,
    StepFailed,
)
from factory.core.model import CaFile
from factory.publish import inputs
from factory.render import contexts, plan
from factory.spec import certs, config, manifest, repofs

HERE = Path(__file__).parent
VALIDATE = HERE / "hostile" / "validate"
TIME_LIMIT = 2.0  # seconds per command, including the CLI's start, on a slow CI machine
SECRET = "hunter2"  # the password every corpus case with credentials uses: it must never be printed
_EXPECT = re.compile(r"^# (?P<what>.+) => (?P<kind>key|text) (?P<expect>.+)$")
DIGEST = "sha256:" + "ab" * 32
GOOD = f"""\
apiVersion: factory/v1
name: {{name}}
version: "1.0"
description: A valid manifest
upstream: {{{{image: docker.io/library/debian, tag: bookworm-slim, digest: "{DIGEST}"}}}}
distro: debian
release: "12"
"""


def _cases(folder: Path) -> list[tuple[Path, str, str]]:
    out = []
    for path in sorted(folder.glob("*.yaml")):
        data = path.read_bytes()
        text = data.decode("utf-16") if data.startswith(b"\xff\xfe") else data.decode("utf-8-sig", "replace")
        match = _EXPECT.match(text.splitlines()[0] if text else "")
        assert match, f"{path.name}: first line must be '# <what> => key|text <expected>'"
        out.append((path, match["kind"], match["expect"]))
    return out


VALIDATE_CASES = _cases(VALIDATE)
ALL_MANIFEST_CASES = _cases(HERE / "hostile") + VALIDATE_CASES
CONFIG_CASES = _cases(HERE / "hostile_config")


def make_repo(root: Path, config_text: str = "") -> Path:
    (root / "manifests").mkdir(parents=True)
    (root / "factory.yaml").write_text(config_text)
    return root / "factory.yaml"


def run_cli(argv: list[str], capsys) -> tuple[int, str, float]:
    started = time.perf_counter()
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    out = capsys.readouterr()
    return exit_.value.code, out.out + out.err, time.perf_counter() - started


def test_the_corpus_has_a_case_of_every_kind():
    assert len(VALIDATE_CASES) >= 15
    assert len(ALL_MANIFEST_CASES) + len(CONFIG_CASES) >= 250


@pytest.mark.parametrize(("path", "kind", "expect"), VALIDATE_CASES, ids=[c[0].stem for c in VALIDATE_CASES])
def test_policy_no_waiver_or_lie_undoes_is_refused_by_validate(tmp_path, capsys, path, kind, expect):
    cfg = make_repo(tmp_path / "repo")
    target = tmp_path / "repo" / "manifests" / path.name
    shutil.copy(path, target)
    code, output, elapsed = run_cli(["--config", str(cfg), "validate", str(target)], capsys)

    assert elapsed < TIME_LIMIT, f"took {elapsed:.2f}s"
    assert code == 1, output
    assert "Traceback" not in output and "internal error" not in output, output
    errors = [line for line in output.splitlines() if not line.startswith("warning:")]
    assert any(re.match(rf"\S*{re.escape(path.name)}:\d+: {re.escape(expect)}: ", line) for line in errors), output


@pytest.mark.parametrize(("path", "kind", "expect"), ALL_MANIFEST_CASES, ids=[c[0].stem for c in ALL_MANIFEST_CASES])
def test_no_manifest_case_crashes_hangs_or_renders(tmp_path, capsys, path, kind, expect):
    cfg = make_repo(tmp_path / "repo")
    shutil.copy(path, tmp_path / "repo" / "manifests" / path.name)
    for argv in (["validate"], ["render", "--check"]):
        code, output, elapsed = run_cli(["--config", str(cfg), *argv], capsys)
        assert elapsed < TIME_LIMIT, f"{argv}: took {elapsed:.2f}s"
        assert code in (1, 2), f"{argv}: exit {code}\n{output}"
        assert "Traceback" not in output and SECRET not in output, output
    assert not (tmp_path / "repo" / "images").exists()  # render --check writes nothing


@pytest.mark.parametrize(("path", "kind", "expect"), CONFIG_CASES, ids=[c[0].stem for c in CONFIG_CASES])
def test_no_config_case_crashes_hangs_or_prints_a_secret(tmp_path, capsys, path, kind, expect):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(path, repo / "factory.yaml")
    for argv in (["validate"], ["render", "--check"], ["plan"]):
        code, output, elapsed = run_cli(["--config", str(repo / "factory.yaml"), *argv], capsys)
        assert elapsed < TIME_LIMIT, f"{argv}: took {elapsed:.2f}s"
        assert code == 2, f"{argv}: exit {code}\n{output}"
        assert "Traceback" not in output and SECRET not in output, output


# --- sizes and times made here rather than committed ------------------------------------------------

def test_twenty_thousand_mixed_unique_items_are_refused_fast(tmp_path, capsys):
    items = "".join(f"  - {i}\n" if i % 2 else f"  - {{a: {i}}}\n" for i in range(20_001))
    for text, name in ((f"platforms:\n{items}", "factory.yaml"),):
        cfg = make_repo(tmp_path / "repo", text)
        code, output, elapsed = run_cli(["--config", str(cfg), "validate"], capsys)
        assert (code, elapsed < TIME_LIMIT) == (2, True), (elapsed, output[-500:])
        assert "platforms: 20001 items; at most 5000 in one list" in output, name


def test_a_thousand_mixed_unique_items_are_checked_in_bounded_time(tmp_path):
    # below the YAML limit: jsonschema's pairwise comparison is what uniqueItems costs; bounded by maxItems
    path = tmp_path / "m.yaml"
    items = "".join(f"  - {i}\n" if i % 2 else f"  - {{a: {i}}}\n" for i in range(4_999))
    path.write_text(GOOD.format(name="m") + f"platforms:\n{items}")
    started = time.perf_counter()
    with pytest.raises(ManifestError) as caught:
        manifest.load_all(config.load(make_repo(tmp_path / "r"), environ={}), [path])
    assert time.perf_counter() - started < TIME_LIMIT
    assert len(caught.value.problems) <= 5000


def test_a_sparse_six_gigabyte_manifest_and_config_are_refused_without_reading(tmp_path, capsys):
    cfg = make_repo(tmp_path / "repo")
    with open(tmp_path / "repo" / "manifests" / "huge.yaml", "wb") as f:
        f.truncate(6 * 1024**3)
    code, output, elapsed = run_cli(["--config", str(cfg), "validate"], capsys)
    assert (code, elapsed < TIME_LIMIT) == (1, True)
    assert "huge.yaml: file is 6442450944 bytes, larger than 256 KiB: a manifest may be at most 256 KiB" in output
    with open(cfg, "wb") as f:
        f.truncate(6 * 1024**3)
    code, output, elapsed = run_cli(["--config", str(cfg), "validate"], capsys)
    assert (code, elapsed < TIME_LIMIT) == (2, True)
    assert "a factory.yaml may be at most 256 KiB" in output and "Traceback" not in output


def test_a_password_in_a_url_is_never_quoted(tmp_path):
    cfg = make_repo(tmp_path, 'source_url: "https://robot:hunter2@git.example.com/a b"\n')
    with pytest.raises(ConfigError) as caught:
        config.load(cfg, environ={})
    assert SECRET not in str(caught.value) and "<credentials removed>@git.example.com" in str(caught.value)


# --- factory.spec.repofs ------------------------------------------------------------------------------

def test_a_regular_file_inside_is_read_and_a_link_inside_is_followed(tmp_path):
    (tmp_path / "a.yaml").write_bytes(b"x: 1\n")
    (tmp_path / "b.yaml").symlink_to("a.yaml")
    assert repofs.read_bytes(tmp_path / "b.yaml", tmp_path, 100) == b"x: 1\n"


def test_a_link_out_of_the_repository_is_refused(tmp_path):
    repo, outside = tmp_path / "repo", tmp_path / "outside.pem"
    repo.mkdir()
    outside.write_text("secret")
    (repo / "ca.pem").symlink_to(outside)
    with pytest.raises(RepoFileError, match="outside the repository"):
        repofs.read_bytes(repo / "ca.pem", repo, 100)
    (repo / "env").symlink_to("/proc/self/environ")
    with pytest.raises(RepoFileError, match="outside the repository"):
        repofs.read_bytes(repo / "env", repo, 100)


def test_a_fifo_and_a_device_are_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo.yaml")
    started = time.perf_counter()
    with pytest.raises(RepoFileError, match="is a FIFO"):
        repofs.read_bytes(tmp_path / "fifo.yaml", tmp_path, 100)
    assert time.perf_counter() - started < 0.5
    with pytest.raises(RepoFileError, match="is a character device"):
        repofs.read_bytes(Path("/dev/zero"), Path("/dev"), 100)


def test_proc_files_whose_size_lies_are_read_bounded(tmp_path):
    # /proc reports size 0; the read stops at the limit anyway
    with pytest.raises(RepoFileError, match="larger than 16 bytes"):
        repofs.read_bytes(Path("/proc/self/maps"), Path("/proc/self"), 16)


def test_an_oversize_sparse_file_is_refused_by_its_size(tmp_path):
    with open(tmp_path / "big.yaml", "wb") as f:
        f.truncate(6 * 1024**3)
    started = time.perf_counter()
    with pytest.raises(RepoFileError, match="6442450944 bytes, larger than 256 KiB"):
        repofs.read_bytes(tmp_path / "big.yaml", tmp_path, 256 * 1024)
    assert time.perf_counter() - started < 0.1


def test_a_manifest_symlinked_out_of_manifests_dir_is_refused(tmp_path, capsys):
    cfg = make_repo(tmp_path / "repo")
    (tmp_path / "outside.yaml").write_text(GOOD.format(name="outside"))
    (tmp_path / "repo" / "manifests" / "outside.yaml").symlink_to(tmp_path / "outside.yaml")
    code, output, _ = run_cli(["--config", str(cfg), "validate"], capsys)
    assert code == 1 and "outside.yaml: resolves to" in output and "outside the repository" in output


def test_check_no_links_refuses_a_link_on_the_way(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x").symlink_to(tmp_path)
    repofs.check_no_links(tmp_path / "images" / "y" / "debug", tmp_path)  # not there yet: fine
    with pytest.raises(RepoFileError, match="is a symbolic link"):
        repofs.check_no_links(tmp_path / "images" / "x" / "debug", tmp_path)


def test_write_new_replaces_a_link_instead_of_writing_through_it(tmp_path):
    target = tmp_path / "target"
    target.write_text("keep")
    (tmp_path / "file").symlink_to(target)
    repofs.write_new(tmp_path / "file", b"new")
    assert target.read_text() == "keep" and (tmp_path / "file").read_bytes() == b"new"
    assert not (tmp_path / "file").is_symlink()


@pytest.mark.parametrize(("images_dir", "words"), [
    (".git", "git's own data"), (".git/objects", "git's own data"),
])
def test_images_dir_is_never_git(tmp_path, images_dir, words):
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    cfg = make_repo(tmp_path / "", f"images_dir: {images_dir}\n")
    with pytest.raises(ConfigError, match=f"images_dir: .*{re.escape(words)}"):
        config.load(cfg, environ={})


def test_images_dir_is_never_the_factorys_source(tmp_path, monkeypatch):
    monkeypatch.setattr(config, "FACTORY_SOURCE", tmp_path / "src" / "factory")
    cfg = make_repo(tmp_path, "images_dir: src\n")
    with pytest.raises(ConfigError, match="images_dir: 'src' is or holds the factory's own source"):
        config.load(cfg, environ={})


def test_tools_path_from_the_environment_inside_the_repository_is_refused(tmp_path):
    cfg = make_repo(tmp_path)
    with pytest.raises(ConfigError, match=r"FACTORY_TOOLS_PATH \(environment\): tools_path.0: .* inside the repo"):
        config.load(cfg, environ={"FACTORY_TOOLS_PATH": str(tmp_path / "bin")})


# --- render and plan never follow a link in images/ ----------------------------------------------------

@pytest.fixture
def rendered(tmp_path):
    cfg = make_repo(tmp_path / "repo")
    (tmp_path / "repo" / "manifests" / "app.yaml").write_text(
        GOOD.format(name="app") + "variants: {debug: {packages: [busybox]}}\n")
    settings = config.load(cfg, environ={})
    catalog = manifest.load_all(settings)
    contexts.write_all(catalog, settings)
    return settings, catalog


def test_render_does_not_write_through_a_linked_image_folder(rendered, tmp_path):
    settings, catalog = rendered
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious").write_text("keep")
    shutil.rmtree(settings.images_dir / "app")
    (settings.images_dir / "app").symlink_to(outside)
    with pytest.raises(RepoFileError, match="images/app: is a symbolic link"):
        contexts.write_all(catalog, settings)
    assert [p.name for p in outside.iterdir()] == ["precious"]


def test_render_does_not_write_through_a_linked_debug_folder(rendered, tmp_path):
    settings, catalog = rendered
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.rmtree(settings.images_dir / "app" / "debug")
    (settings.images_dir / "app" / "debug").symlink_to(outside)
    with pytest.raises(RepoFileError, match="debug: is a symbolic link"):
        contexts.write_all(catalog, settings)
    assert list(outside.iterdir()) == []


def test_render_replaces_a_committed_link_and_a_link_at_its_temporary_name(rendered, tmp_path):
    settings, catalog = rendered
    victim = tmp_path / "victim"
    victim.write_text("keep")
    folder = settings.images_dir / "app"
    (folder / "Dockerfile").unlink()
    (folder / "Dockerfile").symlink_to(victim)
    (folder / ".Dockerfile.tmp").symlink_to(victim)
    (folder / "extra").symlink_to(victim)
    contexts.write_all(catalog, settings)
    assert victim.read_text() == "keep"
    assert not (folder / "Dockerfile").is_symlink() and not (folder / "extra").exists()


def test_render_check_shows_a_link_to_proc_environ_without_following_it(rendered, monkeypatch):
    settings, catalog = rendered
    monkeypatch.setenv("COSIGN_PASSWORD", SECRET)
    dockerfile = settings.images_dir / "app" / "Dockerfile"
    dockerfile.unlink()
    dockerfile.symlink_to("/proc/self/environ")
    diff = contexts.check(catalog, settings)
    assert SECRET not in diff and "(a symbolic link: not followed" in diff


def test_render_check_and_plan_do_not_block_on_a_fifo(rendered):
    settings, catalog = rendered
    dockerfile = settings.images_dir / "app" / "Dockerfile"
    dockerfile.unlink()
    os.mkfifo(dockerfile)
    started = time.perf_counter()
    assert "(a FIFO: not followed" in contexts.check(catalog, settings)
    with pytest.raises(RepoFileError, match="is a FIFO; a rendered context holds regular files only"):
        plan.context_digest(settings.images_dir / "app")
    assert time.perf_counter() - started < 1


def test_plan_refuses_a_linked_debug_context(rendered, tmp_path):
    settings, _ = rendered
    shutil.rmtree(settings.images_dir / "app" / "debug")
    (settings.images_dir / "app" / "debug").symlink_to(tmp_path)
    with pytest.raises(RepoFileError, match="is a symbolic link"):
        plan.context_digest(settings.images_dir / "app", "debug")


# --- builds that failed late -----------------------------------------------------------------------------

CHILD = """\
apiVersion: factory/v1
name: child
version: "1.0"
description: Built on the parent
parent: base
distro: debian
release: "12"
"""


def _family(tmp_path: Path, parent_user: str, child_user: str = "") -> config.Settings:
    cfg = make_repo(tmp_path / "repo")
    (tmp_path / "repo" / "manifests" / "base.yaml").write_text(GOOD.format(name="base") + parent_user)
    (tmp_path / "repo" / "manifests" / "child.yaml").write_text(CHILD + child_user)
    return config.load(cfg, environ={})


def test_a_child_without_a_user_inherits_its_parents(tmp_path):
    settings = _family(tmp_path, "user: {name: svc, uid: 2000, gid: 2000}\n")
    catalog = manifest.load_all(settings)
    assert (catalog["child"].user.name, catalog["child"].user.uid) == ("svc", 2000)
    assert "USER 2000:2000" in contexts.render_manifest(catalog["child"], settings).files["Dockerfile"].decode()


@pytest.mark.parametrize("child_user", ["user: {name: app, uid: 1001, gid: 2000}\n",
                                        "user: {name: other, uid: 1002, gid: 2000}\n"])
def test_a_child_user_that_clashes_with_the_parents_is_refused_by_validate(tmp_path, child_user):
    settings = _family(tmp_path, "user: {name: svc, uid: 2000, gid: 2000}\n", child_user)
    with pytest.raises(ManifestError, match=r"child.yaml:8: user: .* shares the gid of parent 'base'"):
        manifest.load_all(settings)


def test_a_child_repeating_its_parents_user_or_a_disjoint_one_is_fine(tmp_path):
    same, disjoint = "user: {name: svc, uid: 2000, gid: 2000}\n", "user: {name: app, uid: 1001, gid: 1001}\n"
    for i, child in enumerate((same, disjoint)):
        settings = _family(tmp_path / str(i), "user: {name: svc, uid: 2000, gid: 2000}\n", child)
        assert manifest.load_all(settings)["child"].user.uid in (2000, 1001)


def _ca_with_duplicate_extension() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dup")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    # the KeyUsage OID (2.5.29.15) becomes BasicConstraints' (2.5.29.19): same length, a duplicate extension
    assert der.count(b"\x06\x03\x55\x1d\x0f") == 1
    der = der.replace(b"\x06\x03\x55\x1d\x0f", b"\x06\x03\x55\x1d\x13")
    return b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"


def test_a_certificate_with_a_duplicate_extension_is_a_clear_error(tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "dup.pem").write_bytes(_ca_with_duplicate_extension())
    ca = CaFile(tmp_path / "certs" / "dup.pem", "certs/dup.pem", "certificates.additional.0", False)
    with pytest.raises(CertificateError, match=r"not a valid X.509 certificate \(DuplicateExtension"):
        certs.read(tmp_path, ca)


def test_a_certificate_symlinked_out_of_the_repository_is_refused(tmp_path):
    (tmp_path / "repo" / "certs").mkdir(parents=True)
    (tmp_path / "ca.pem").write_bytes(_ca_with_duplicate_extension())
    (tmp_path / "repo" / "certs" / "ca.pem").symlink_to(tmp_path / "ca.pem")
    ca = CaFile(tmp_path / "repo" / "certs" / "ca.pem", "certs/ca.pem", "certificates.additional.0", False)
    with pytest.raises(CertificateError, match="outside the repository"):
        certs.read(tmp_path / "repo", ca)
    with pytest.raises(CertificateError, match="outside the repository"):
        certs.fingerprints([ca])


class _NotJsonSystem:
    def info(self):
        raise json.JSONDecodeError("Expecting value", "Usage: evil", 0)


class _NotJsonClient:
    system = _NotJsonSystem()


def test_a_docker_that_prints_no_json_is_a_clear_error():
    docker = Docker(runner=None)  # type: ignore[arg-type]  # the client is replaced: no command runs
    docker.__dict__["client"] = _NotJsonClient()
    with pytest.raises(EnvironmentProblem, match=r"not its JSON answer .*JSONDecodeError"):
        docker.check()


class _Registry:
    """An upstream index with one platform whose only layer holds the given files."""

    def __init__(self, files: dict[str, bytes]) -> None:
        raw = io.BytesIO()
        with tarfile.open(fileobj=raw, mode="w") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        self.layer = gzip.compress(raw.getvalue(), mtime=0)
        self.layer_digest = "sha256:" + hashlib.sha256(self.layer).hexdigest()

    def platform_manifest(self) -> bytes:
        return json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": self.layer_digest, "size": len(self.layer)}]}).encode()


def test_a_distroless_upstream_without_passwd_is_refused_before_the_build(monkeypatch, tmp_path):
    fake = _Registry({"etc/group": b"root:x:0:\n"})
    monkeypatch.setattr(inputs, "platform_digests", lambda registry, repo, digest: ({}, {"linux/amd64": "sha256:p"}))

    class Reg:
        def get_manifest(self, repository, digest):
            return fake.platform_manifest(), "application/vnd.oci.image.manifest.v1+json"

        def layer_opener(self, repository):
            return lambda layer: contextlib.nullcontext(io.BytesIO(fake.layer))

    settings = config.load(make_repo(tmp_path / "repo"), environ={})
    m = manifest.parse(b"apiVersion: factory/v1\nname: d\nversion: '1.0'\ndescription: x\ndistro: distroless\n"
                       b"upstream: {image: gcr.io/distroless/static-debian12, tag: nonroot, digest: '"
                       + DIGEST.encode() + b"'}\nrelease: '12'\n", tmp_path / "d.yaml", settings)
    with pytest.raises(StepFailed, match=r"has no /etc/passwd on linux/amd64") as caught:
        inputs.check_upstream_user_files(m, lambda host: Reg(), f"gcr.io/distroless/static-debian12@{DIGEST}",
                                         DIGEST, ["linux/amd64"])
    assert "distro: scratch" in (caught.value.hint or "")
    users = {"etc/passwd": b"root:x:0:0::/:/sbin/nologin\n", "etc/group": b"root:x:0:\n"}
    fake.__init__({**users, "usr/lib/os-release": b'ID=debian\nVERSION_ID="11"\n'})
    with pytest.raises(StepFailed, match=r"is debian 11 by its os-release on linux/amd64, but the manifest declares "
                                         r"release '12'"):
        inputs.check_upstream_user_files(m, lambda host: Reg(), f"gcr.io/distroless/static-debian12@{DIGEST}",
                                         DIGEST, ["linux/amd64"])
    fake.__init__({**users, "usr/lib/os-release": b'ID=debian\nVERSION_ID="12"\n'})
    inputs.check_upstream_user_files(m, lambda host: Reg(), f"gcr.io/distroless/static-debian12@{DIGEST}",
                                     DIGEST, ["linux/amd64"])
