"""Renderer: golden Dockerfiles per distro kind, determinism, quoting, the debug variant, images/ on disk.

Golden files: tests/unit/golden/<case>/ holds every file that the case renders. After an intended change
of the output, regenerate them with one command, then review the diff like any other change:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/test_render.py     (same as `make golden`)

An output change for the same manifest also needs ``RENDER_VERSION`` bumped (it is in every context).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import random
import re
import shutil
from pathlib import Path

import pytest

from factory import cli
from factory.core import platforms
from factory.core.errors import ConfigError, ManifestError, RenderError, UsageError
from factory.core.model import CaFile, Manifest, Parent, Upstream, User, Variant
from factory.render import contexts as render
from factory.spec import config, manifest

GOLDEN = Path(__file__).parent / "golden"
TEST_CERTS = Path(__file__).parents[1] / "data" / "certs"  # fixed CA certificates (tests/data/README.md)
UPDATE = bool(os.environ.get("UPDATE_GOLDEN"))

DIGEST_A = "sha256:" + "a1" * 32
DIGEST_B = "sha256:" + "b2" * 32
DIGEST_C = "sha256:" + "c3" * 32
DIGEST_D = "sha256:" + "d4" * 32
DIGEST_E = "sha256:" + "e5" * 32


# --- helpers shared with test_render_property.py --------------------------------------------------

def make_settings(root: Path, **overrides) -> config.Settings:
    doc = {"vendor": "myorg", "source_url": "https://git.example.org/platform/base-images", **overrides}
    (root / "factory.yaml").write_text(json.dumps(doc))  # JSON is YAML
    return config.load(root / "factory.yaml", environ={})


def make_manifest(settings: config.Settings, **overrides) -> Manifest:
    """A valid Debian-based manifest (as factory.manifest would build it), with fields replaced."""
    name = overrides.get("name", "python-3.11-slim-bookworm")
    fields = dict(
        path=settings.root / "manifests" / f"{name}.yaml",
        name=name,
        version="1.2",
        description="Python 3.11 on Debian 12 slim, hardened",
        distro="debian",
        upstream=Upstream("docker.io/library/python", "3.11.9-slim-bookworm", DIGEST_A),
        parent=None,
        release="12",
        runtime="python",
        platforms=platforms.parse_all(["linux/amd64", "linux/arm64"]),
        timezone="UTC",
        user=User("app", 1001, 1001),
        ca_certificates=True,
        env=(("PIP_NO_CACHE_DIR", "1"), ("PYTHONUNBUFFERED", "1")),
        packages=(),
        labels=(("com.example.team", "platform"),),
        licenses="PSF-2.0",
        eol=None,
        variants=(Variant("debug", ("busybox", "curl", "jq")),),
        tests=(),
        waivers=(),
    )
    fields.update(overrides)
    upstream, parent = fields.pop("upstream"), fields.pop("parent")
    fields["base"] = upstream if upstream is not None else Parent(parent)
    return Manifest(**fields)


def logical_lines(dockerfile: str) -> list[str]:
    """Instructions as BuildKit's parser sees them: comments and blank lines dropped (also inside a
    continuation), a trailing escape character (`\\` then optional blanks) joins the next line."""
    out: list[str] = []
    current: str | None = None
    for line in dockerfile.split("\n"):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        continued = re.search(r"\\[ \t]*$", line)
        text = line[: continued.start()] if continued else line
        current = text.lstrip() if current is None else current + text
        if not continued:
            out.append(current)
            current = None
    if current is not None:
        out.append(current)
    return out


def instructions(dockerfile: str) -> list[str]:
    return [line.split(None, 1)[0].upper() for line in logical_lines(dockerfile)]


def final_stage(dockerfile: str) -> list[str]:
    lines = logical_lines(dockerfile)
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    return lines[last_from:]


def text(image: render.RenderedImage, path: str = "Dockerfile") -> str:
    return image.files[path].decode()


def org_ca(written: str = "certs/test-org-root-ca.pem", i: int = 0) -> CaFile:
    """An org-wide CA file as factory.manifest lists it (the renderer reads settings.root / written)."""
    return CaFile(Path("/nonexistent") / written, written, f"certificates.{i}", True)


def own_ca(written: str = "certs/test-team-chain.pem", i: int = 0) -> CaFile:
    return CaFile(Path("/nonexistent") / written, written, f"certificates.additional.{i}", False)


@pytest.fixture
def settings(tmp_path) -> config.Settings:
    shutil.copytree(TEST_CERTS, tmp_path / "certs")
    return make_settings(tmp_path)


@pytest.fixture
def fix_settings(settings) -> config.Settings:
    return settings


# --- golden files -------------------------------------------------------------------------------

CASES: dict[str, dict] = {
    # language image on Debian: env from the manifest, the debug variant with tools
    "debian": dict(packages=("libexpat1", "netbase")),
    # Ubuntu with a timezone other than UTC (tzdata and the zone files), no packages of its own
    "ubuntu": dict(name="ubuntu-24.04", description="Ubuntu 24.04 LTS, hardened", distro="ubuntu",
                   upstream=Upstream("docker.io/library/ubuntu", "24.04", DIGEST_B), release="24.04",
                   runtime="none", env=(), timezone="Europe/Berlin", licenses="NOASSERTION",
                   variants=(Variant("debug", ("busybox", "curl", "iproute2")),)),
    "alpine": dict(name="alpine-3.20", description="Alpine 3.20, hardened", distro="alpine",
                   upstream=Upstream("docker.io/library/alpine", "3.20.3", DIGEST_C), release="3.20",
                   runtime="none", env=(), packages=("tini",), licenses="MIT",
                   variants=(Variant("debug", ("curl", "jq"), (("PS1", "debug$ "),)),)),
    "distroless": dict(name="distroless-static-debian12", description="Distroless static, hardened",
                       distro="distroless", runtime="none", env=(), licenses="Apache-2.0",
                       upstream=Upstream("gcr.io/distroless/static-debian12", "nonroot", DIGEST_D),
                       variants=(Variant("debug", ("busybox",)),)),
    "scratch": dict(name="scratch-static", description="Empty image with a user, CA bundle and zoneinfo",
                    distro="scratch", runtime="none", env=(("SSL_CERT_FILE", "/etc/ssl/certs/ca-certificates.crt"),),
                    upstream=Upstream("scratch", None, None), timezone="America/New_York", release=None,
                    variants=(Variant("debug", ()),)),
    # an org image built on another one: the base is known at build time only
    "parent": dict(name="debian-12-tools", description="debian-12-slim with curl and jq", upstream=None,
                   parent="debian-12-slim", runtime="none", env=(), packages=("jq", "curl"),
                   variants=(Variant("debug", ("procps",)),)),
    # the least a Debian image can ask for: no CA refresh, UTC, no packages, no debug variant
    "minimal": dict(name="debian-12-minimal", description="Debian 12, user only", ca_certificates=False,
                    upstream=Upstream("docker.io/library/debian", "12.7-slim", DIGEST_E), runtime="none",
                    env=(), labels=(), variants=()),
    # org CAs (factory.yaml's and the manifest's own, a file of two) in the one RUN of a python image
    "org-ca-run": dict(packages=("netbase",), certificates=(org_ca(), own_ca()), variants=()),
    # org CAs in a hardening-only node image: the helper stage is the upstream itself
    "org-ca-hardening": dict(name="node-24-slim", description="Node 24 slim, hardened", runtime="node",
                             upstream=Upstream("docker.io/library/node", "24.18.1-bookworm-slim", DIGEST_B),
                             env=(("NODE_ENV", "production"),), timezone="Europe/Berlin", labels=(),
                             certificates=(org_ca(),), variants=()),
    # org CAs in an image without a shell: the helper image assembles the bundle
    "org-ca-distroless": dict(name="distroless-static-debian12", description="Distroless static, hardened",
                              distro="distroless", runtime="none", env=(), licenses="Apache-2.0", labels=(),
                              upstream=Upstream("gcr.io/distroless/static-debian12", "nonroot", DIGEST_D),
                              certificates=(org_ca(),), variants=()),
}


def _golden_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, settings):
    _check_golden(render.render_manifest(make_manifest(settings, **CASES[case]), settings), GOLDEN / case)


def _check_golden(image: render.RenderedImage, folder: Path) -> None:
    case = folder.name
    if UPDATE:
        shutil.rmtree(folder, ignore_errors=True)
        for rel, content in image.files.items():
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(content)
        return
    expected = _golden_files(folder)
    hint = "if the change is intended: UPDATE_GOLDEN=1 pytest tests/unit/test_render.py, and review the diff"
    assert sorted(image.files) == sorted(expected), f"rendered files differ from {folder}; {hint}"
    for rel, content in image.files.items():
        if content != expected[rel]:
            diff = "".join(difflib.unified_diff(expected[rel].decode().splitlines(True),
                                                content.decode().splitlines(True), f"golden/{case}/{rel}", "rendered"))
            pytest.fail(f"{case}/{rel} differs from the golden file; {hint}\n{diff}")


def test_every_golden_folder_is_a_case():
    assert {p.name for p in GOLDEN.iterdir() if p.is_dir()} == set(CASES)


# --- what every Dockerfile must (not) say --------------------------------------------------------

def _all_rendered(settings) -> dict[str, str]:
    out = {}
    for case, overrides in CASES.items():
        image = render.render_manifest(make_manifest(settings, **overrides), settings)
        out.update({f"{case}/{p}": c.decode() for p, c in image.files.items() if p.endswith("Dockerfile")})
    return out


def test_from_is_always_pinned_and_there_is_no_syntax_directive(settings):
    for where, dockerfile in _all_rendered(settings).items():
        assert not re.search(r"(?im)^#\s*syntax\s*=", dockerfile), where  # the frontend image cannot be pulled
        stages = set()
        for line in logical_lines(dockerfile):
            if line.upper().startswith("FROM "):
                ref = line.split()[-3] if " AS " in line else line.split()[-1]
                # the org layer's stage choice names only stages of this file, each FROM a pinned base
                chosen = ref == f"org-${{{render.ORG_LAYER_ARG}}}" and {"org-copy", "org-run"} <= stages
                assert chosen or ref in ("${BASE_REF}", "${HELPER_REF}", "scratch") \
                    or re.search(r"@sha256:[0-9a-f]{64}$", ref), f"{where}: {line}"
                if " AS " in line:
                    stages.add(line.split()[-1])


def test_every_dockerfile_ends_as_the_numeric_user(settings):
    for where, dockerfile in _all_rendered(settings).items():
        assert logical_lines(dockerfile)[-1] == "USER 1001:1001", where


def test_helper_image_default_is_pinned(settings):
    assert re.fullmatch(r"\S+@sha256:[0-9a-f]{64}", settings.helper_image)
    image = render.render_manifest(make_manifest(settings, **CASES["distroless"]), settings)
    assert f"ARG HELPER_REF={settings.helper_image}\n" in text(image)


def test_apt_is_one_run_that_installs_creates_the_user_and_cleans(settings):
    image = render.render_manifest(make_manifest(settings, packages=("netbase",)), settings)
    dockerfile = text(image)
    assert instructions(dockerfile).count("RUN") == 1
    run = next(line for line in logical_lines(dockerfile) if line.startswith("RUN "))
    # the package lists are updated by apply-fixes.sh, first in the RUN (with the configured suites when asked)
    assert f"sh {render.FIXES_SCRIPT_IN_BUILD} --apt bookworm main" in run
    assert "apt-get update" in image.files[render.FIXES_SCRIPT].decode()
    for expected in ("apt-get install -y --no-install-recommends ca-certificates netbase",
                     "update-ca-certificates", "groupadd -g 1001 app",
                     "useradd -l -u 1001 -g 1001 -M -d /nonexistent -s /usr/sbin/nologin app",
                     "rm -rf /var/lib/apt/lists/*", "/var/cache/apt/*.bin", "/var/cache/debconf/*-old",
                     "/var/lib/dpkg/*-old", "find /var/log -type f -delete"):
        assert expected in run
    assert "tzdata" not in run and "/etc/localtime" not in run  # UTC needs no zone file
    assert 'ENV TZ="UTC"' in dockerfile


def test_a_timezone_other_than_utc_installs_tzdata_and_writes_the_zone_files(settings):
    m = make_manifest(settings, timezone="Asia/Tokyo", packages=("netbase",))
    dockerfile = text(render.render_manifest(m, settings))
    assert "apt-get install -y --no-install-recommends ca-certificates netbase tzdata;" in dockerfile
    assert "ln -snf /usr/share/zoneinfo/Asia/Tokyo /etc/localtime" in dockerfile
    assert "echo Asia/Tokyo > /etc/timezone" in dockerfile
    assert 'ENV TZ="Asia/Tokyo"' in dockerfile


def test_without_ca_certificates_only_the_packages_are_installed(settings):
    m = make_manifest(settings, ca_certificates=False, packages=("netbase",))
    dockerfile = text(render.render_manifest(m, settings))
    assert "apt-get install -y --no-install-recommends netbase;" in dockerfile
    assert "ca-certificates" not in dockerfile and "update-ca-certificates" not in dockerfile


def test_packages_are_sorted_deduplicated_and_a_pinned_one_replaces_the_implied(settings):
    m = make_manifest(settings, packages=("jq", "curl", "ca-certificates=20230311", "jq"), timezone="Europe/Paris")
    dockerfile = text(render.render_manifest(m, settings))
    assert "--no-install-recommends ca-certificates=20230311 curl jq tzdata;" in dockerfile


def test_alpine_uses_apk_and_busybox_user_tools(settings):
    dockerfile = text(render.render_manifest(make_manifest(settings, **CASES["alpine"]), settings))
    assert "apk add --no-cache ca-certificates tini;" in dockerfile
    assert "addgroup -g 1001 -S app" in dockerfile
    assert "adduser -u 1001 -G app -S -D -H -h /nonexistent -s /sbin/nologin app" in dockerfile
    assert "apt-get" not in dockerfile


@pytest.mark.parametrize("case", ["distroless", "scratch"])
def test_no_shell_images_have_no_run_in_the_final_stage(case, settings):
    image = render.render_manifest(make_manifest(settings, **CASES[case]), settings)
    for path in ("Dockerfile", "debug/Dockerfile"):
        stage = final_stage(text(image, path))
        assert [line.split()[0] for line in stage if not line.startswith("ARG ")] == \
            ["FROM", "COPY", "ENV", "LABEL", "USER"], f"{case}/{path}"
        assert stage[1] == "COPY --from=helper /rootfs/ /"
    assert render.HELPER_SCRIPT in image.files and f"debug/{render.HELPER_SCRIPT}" in image.files


def test_distroless_keeps_the_upstreams_passwd_and_scratch_has_none_to_keep(settings):
    distroless = text(render.render_manifest(make_manifest(settings, **CASES["distroless"]), settings))
    assert f"FROM gcr.io/distroless/static-debian12:nonroot@{DIGEST_D} AS upstream" in distroless
    assert "COPY --from=upstream /etc/passwd /etc/group /rootfs/etc/" in distroless
    scratch = text(render.render_manifest(make_manifest(settings, **CASES["scratch"]), settings))
    assert "upstream" not in scratch.split("FROM --platform")[0] and "COPY --from=upstream" not in scratch
    assert '"--timezone", "America/New_York"' in scratch and '"--ca-certificates"' in scratch


def test_a_scratch_kind_upstream_image_is_pinned_and_gets_root_and_the_user_only(settings):
    m = make_manifest(settings, **{**CASES["scratch"], "upstream": Upstream("example.org/static/busybox", "1.37",
                                                                             DIGEST_B)})
    dockerfile = text(render.render_manifest(m, settings))
    assert f"\nFROM example.org/static/busybox:1.37@{DIGEST_B}\nCOPY --from=helper /rootfs/ /\n" in dockerfile
    assert "AS upstream" not in dockerfile and "--from=upstream" not in dockerfile  # it may have no /etc/passwd


def test_a_no_shell_child_keeps_its_org_parents_passwd(settings):
    m = make_manifest(settings, **{**CASES["distroless"], "upstream": None, "parent": "distroless-static-debian12"})
    lines = logical_lines(text(render.render_manifest(m, settings)))
    assert lines[:3] == ["ARG BASE_REF", f"ARG HELPER_REF={settings.helper_image}", "FROM ${BASE_REF} AS upstream"]
    assert "COPY --from=upstream /etc/passwd /etc/group /rootfs/etc/" in lines
    assert final_stage("\n".join(lines))[0] == "FROM ${BASE_REF}"


def test_the_helper_runs_in_exec_form_with_the_values_as_arguments(settings):
    m = make_manifest(settings, **CASES["distroless"], timezone="Europe/Berlin", ca_certificates=False)
    dockerfile = text(render.render_manifest(m, settings))
    run = next(line for line in logical_lines(dockerfile) if line.startswith("RUN "))
    assert json.loads(run[4:]) == ["/bin/sh", render.HELPER_SCRIPT_IN_STAGE, "--user", "app:1001:1001",
                                   "--timezone", "Europe/Berlin"]


def test_parent_based_image_takes_its_base_as_a_build_arg(settings):
    m = make_manifest(settings, **CASES["parent"])
    image = render.render_manifest(m, settings)
    lines = logical_lines(text(image))
    assert lines[:2] == ["ARG BASE_REF", "FROM ${BASE_REF}"]
    assert 'org.opencontainers.image.base.digest="${BASE_DIGEST}"' in text(image)
    # base.name is the parent by tag (BASE_NAME), not the digest reference built FROM
    assert 'org.opencontainers.image.base.name="${BASE_NAME}"' in text(image)
    assert json.loads(image.files["factory-context.json"])["from"] == {"parent": "debian-12-slim"}
    assert render.build_args(m) == ("BASE_REF", "BASE_NAME", "BASE_DIGEST", *render.PER_BUILD_ARGS)
    assert render.build_args(make_manifest(settings)) == render.PER_BUILD_ARGS


def test_debug_variant_is_labelled_installs_as_root_and_runs_as_the_user(settings):
    image = render.render_manifest(make_manifest(settings), settings)
    debug = text(image, "debug/Dockerfile")
    lines = logical_lines(debug)
    assert lines[:2] == ["ARG BASE_REF", "FROM ${BASE_REF}"]
    assert lines.index("USER 0:0") < next(i for i, line in enumerate(lines) if line.startswith("RUN "))
    assert "apt-get install -y --no-install-recommends busybox curl jq" in debug
    assert 'org.opencontainers.image.title="python-3.11-slim-bookworm-debug"' in debug
    assert f'{render.VARIANT_LABEL}="debug"' in debug and "never deploy" in debug
    assert lines[-1] == "USER 1001:1001"


def test_debug_variant_of_a_no_shell_image_gets_busybox_from_the_helper(settings):
    debug = text(render.render_manifest(make_manifest(settings, **CASES["distroless"]), settings), "debug/Dockerfile")
    assert 'RUN ["/bin/sh", "/usr/local/bin/factory-prepare-rootfs", "--busybox"]' in debug
    assert "FROM ${HELPER_REF} AS helper" in debug  # target platform: busybox is a program for it
    assert ':/busybox"' in debug


def test_labels_carry_the_oci_keys_the_fingerprint_and_the_manifests_own(settings):
    dockerfile = text(render.render_manifest(make_manifest(settings), settings))
    label = next(line for line in logical_lines(dockerfile) if line.startswith("LABEL "))
    for key in ("title", "description", "version", "revision", "source", "created", "vendor", "licenses",
                "base.name", "base.digest"):
        assert f"org.opencontainers.image.{key}=" in label
    assert f'{render.FINGERPRINT_LABEL}="${{FACTORY_FINGERPRINT}}"' in label
    assert 'org.opencontainers.image.base.name="docker.io/library/python:3.11.9-slim-bookworm"' in label
    assert 'com.example.team="platform"' in label
    for arg in render.PER_BUILD_ARGS:
        assert f"ARG {arg}\n" in dockerfile


def test_a_licence_that_is_no_spdx_expression_gets_no_label_and_the_source_comes_from_the_build(settings):
    from license_expression import get_spdx_licensing

    unknown = text(render.render_manifest(make_manifest(settings, licenses="NOASSERTION"), settings))
    assert "org.opencontainers.image.licenses" not in unknown
    assert 'org.opencontainers.image.source="${FACTORY_SOURCE}"' in unknown  # source_url or the git remote
    known = text(render.render_manifest(make_manifest(settings, licenses="PSF-2.0"), settings))
    value = re.search(r'org\.opencontainers\.image\.licenses="([^"]*)"', known)[1]
    assert get_spdx_licensing().validate(value, strict=True).errors == []


def test_per_build_args_come_after_the_run_so_they_never_invalidate_its_cache(settings):
    lines = logical_lines(text(render.render_manifest(make_manifest(settings), settings)))
    run = next(i for i, line in enumerate(lines) if line.startswith("RUN "))
    assert all(i > run for i, line in enumerate(lines) if line.startswith("ARG FACTORY_"))


# --- the hardening-only path and the org CAs ---------------------------------------------------------

def test_a_manifest_without_packages_gets_one_copy_from_a_helper_stage_of_the_upstream(settings):
    image = render.render_manifest(make_manifest(settings, timezone="Asia/Tokyo"), settings)
    lines = logical_lines(text(image))
    ref = f"docker.io/library/python:3.11.9-slim-bookworm@{DIGEST_A}"
    assert lines[:3] == [f"ARG {render.ORG_LAYER_ARG}=copy", f"FROM {ref} AS helper", "USER 0:0"]  # as root
    assert json.loads(next(line for line in lines if line.startswith("RUN "))[4:]) == [
        "/bin/sh", render.HELPER_SCRIPT_IN_STAGE, "--upstream", "--user", "app:1001:1001", "--ca-certificates",
        "--timezone", "Asia/Tokyo"]
    # without build args the org layer is the org-copy stage: one COPY, no RUN
    assert _stage(text(image), "org-copy") == [f"FROM {ref} AS org-copy", "COPY --from=helper /rootfs/ /"]
    assert final_stage(text(image))[0] == f"FROM org-${{{render.ORG_LAYER_ARG}}}"
    assert "RUN" not in [line.split()[0] for line in final_stage(text(image))]
    assert render.HELPER_SCRIPT in image.files


def test_alpine_and_parent_images_without_packages_take_the_helper_path_too(settings):
    alpine = logical_lines(text(render.render_manifest(make_manifest(settings, **{**CASES["alpine"], "packages": ()}),
                                                       settings)))
    assert alpine[:2] == [f"ARG {render.ORG_LAYER_ARG}=copy",
                          f"FROM docker.io/library/alpine:3.20.3@{DIGEST_C} AS helper"]
    parent = logical_lines(text(render.render_manifest(make_manifest(settings, **{**CASES["parent"], "packages": ()}),
                                                       settings)))
    assert parent[:3] == ["ARG BASE_REF", f"ARG {render.ORG_LAYER_ARG}=copy", "FROM ${BASE_REF} AS helper"]
    assert "FROM ${BASE_REF} AS org-copy" in parent and "COPY --from=helper /rootfs/ /" in parent


def test_org_cas_reach_the_one_run_through_a_bind_mount(settings):
    m = make_manifest(settings, packages=("netbase",), certificates=(org_ca(),))
    image = render.render_manifest(m, settings)
    dockerfile = text(image)
    assert instructions(dockerfile).count("RUN") == 1 and "COPY" not in instructions(dockerfile)
    run = next(line for line in logical_lines(dockerfile) if line.startswith("RUN "))
    assert run.startswith("RUN --mount=type=bind,source=certs,target=/tmp/factory-certs --mount=type=bind,"
                          f"source={render.FIXES_SCRIPT},target={render.FIXES_SCRIPT_IN_BUILD} set -eux;")
    for expected in ("install -m 0644 /tmp/factory-certs/01-test-org-root-ca.crt /usr/local/share/ca-certificates/",
                     "update-ca-certificates", "> /etc/ssl/org-ca-certificates.crt"):
        assert expected in run
    assert run.index("update-ca-certificates") > run.index("install -m 0644")
    assert image.files["certs/01-test-org-root-ca.crt"] == (TEST_CERTS / "test-org-root-ca.pem").read_bytes()


def test_org_cas_bring_ca_certificates_even_when_the_public_bundle_is_not_asked_for(settings):
    m = make_manifest(settings, packages=("netbase",), ca_certificates=False, certificates=(org_ca(),))
    dockerfile = text(render.render_manifest(m, settings))
    assert "apt-get install -y --no-install-recommends ca-certificates netbase;" in dockerfile
    helper = make_manifest(settings, ca_certificates=False, certificates=(org_ca(),))
    run = next(line for line in logical_lines(text(render.render_manifest(helper, settings))) if line.startswith("RUN"))
    assert json.loads(run[4:])[-2:] == ["--org-certs", "/tmp/factory-certs"]


def test_language_trust_stores_by_runtime_and_the_manifests_own_env_wins(settings):
    def env(**overrides) -> str:
        dockerfile = text(render.render_manifest(make_manifest(settings, **overrides), settings))
        return next(line for line in logical_lines(dockerfile) if line.startswith("ENV "))

    assert 'NODE_EXTRA_CA_CERTS="/etc/ssl/org-ca-certificates.crt"' in env(runtime="node", certificates=(org_ca(),))
    python = env(runtime="python", certificates=(org_ca(),))
    assert 'REQUESTS_CA_BUNDLE="/etc/ssl/certs/ca-certificates.crt"' in python
    assert 'SSL_CERT_FILE="/etc/ssl/certs/ca-certificates.crt"' in python
    assert "CA_BUNDLE" not in env(runtime="python") and "NODE_EXTRA" not in env(runtime="node")  # no org CAs
    own = env(runtime="python", certificates=(org_ca(),), env=(("REQUESTS_CA_BUNDLE", "/etc/ssl/cert.pem"),))
    assert 'REQUESTS_CA_BUNDLE="/etc/ssl/cert.pem"' in own and own.count("REQUESTS_CA_BUNDLE") == 1
    # a value outside the image's trust store is refused (factory.spec.guards)
    assert "would replace the image's trust store" in _refused(settings, env=(("SSL_CERT_FILE", "/dev/null"),))


def test_java_images_import_the_org_cas_into_cacerts(settings):
    run_path = text(render.render_manifest(make_manifest(settings, runtime="java", packages=("netbase",),
                                                         certificates=(org_ca(),)), settings))
    assert ("keytool -list -cacerts -storepass changeit -alias factory-01-test-org-root-ca >/dev/null 2>&1 || "
            "keytool -importcert -noprompt -cacerts -storepass changeit -alias factory-01-test-org-root-ca "
            "-file /tmp/factory-certs/01-test-org-root-ca.crt") in run_path
    helper = text(render.render_manifest(make_manifest(settings, runtime="java", certificates=(org_ca(),)), settings))
    assert '"--org-certs", "/tmp/factory-certs", "--java"' in helper
    refused = _refused(settings, **{**CASES["distroless"], "runtime": "java", "certificates": (org_ca(),)})
    assert " runtime: a distroless java image cannot get the org CAs into Java's cacerts" in refused


def test_the_context_lists_each_certificate_and_no_certificate_no_certs_folder(settings):
    image = render.render_manifest(make_manifest(settings, certificates=(org_ca(), own_ca(), org_ca())), settings)
    listed = json.loads(image.files["factory-context.json"])["certificates"]
    assert [c["file"] for c in listed] == ["certs/01-test-org-root-ca.crt", "certs/02-test-team-chain-1.crt",
                                           "certs/03-test-team-chain-2.crt"]  # listed twice, copied once
    assert listed[1]["source"] == "certs/test-team-chain.pem (certificate 1 of 2)"
    assert [p for p in image.files if p.startswith("certs/")] == [c["file"] for c in listed]
    assert "certs/" not in "".join(image.context_files(render.DEBUG))  # the debug variant inherits them
    plain = render.render_manifest(make_manifest(settings), settings)
    assert not any(p.startswith("certs/") for p in plain.files)
    assert json.loads(plain.files["factory-context.json"])["certificates"] == []


def test_a_certificate_taken_off_the_list_leaves_images_on_the_next_render(settings):
    m = make_manifest(settings, name="app", certificates=(org_ca(), own_ca()))
    render.write_all({"app": m}, settings)
    folder = settings.images_dir / "app" / "certs"
    assert sorted(p.name for p in folder.iterdir()) == ["01-test-org-root-ca.crt", "02-test-team-chain-1.crt",
                                                        "03-test-team-chain-2.crt"]
    fewer = {"app": dataclasses.replace(m, certificates=(own_ca(),))}
    assert "--- a/images/app/certs/03-test-team-chain-2.crt\n+++ /dev/null\n" in render.check(fewer, settings)
    touched = render.write_all(fewer, settings)
    assert sorted(p.name for p in folder.iterdir()) == ["01-test-team-chain-1.crt", "02-test-team-chain-2.crt"]
    assert folder / "03-test-team-chain-2.crt" in touched and render.check(fewer, settings) == ""


def test_a_new_certificate_changes_the_context_digest(settings):
    m = make_manifest(settings)
    assert (render.render_manifest(dataclasses.replace(m, certificates=(org_ca(),)), settings).context_digest
            != render.render_manifest(m, settings).context_digest)


def test_a_bad_certificate_of_the_manifest_names_its_line_and_one_of_factory_yaml_the_config(settings):
    (settings.root / "certs" / "bad.pem").write_text("not a certificate\n")
    m = make_manifest(settings, certificates=(own_ca("certs/bad.pem"),), lines={"certificates.additional.0": 21})
    with pytest.raises(ManifestError, match=r":21: certificates.additional.0: 'certs/bad.pem': holds no PEM"):
        render.render_manifest(m, settings)
    with pytest.raises(ConfigError, match=r"factory.yaml: certificates.0: 'certs/bad.pem': holds no PEM"):
        render.render_manifest(make_manifest(settings, certificates=(org_ca("certs/bad.pem"),)), settings)


# --- refusals -----------------------------------------------------------------------------------

def _refused(settings, **overrides) -> str:
    with pytest.raises(ManifestError) as e:
        render.render_manifest(make_manifest(settings, **overrides), settings)
    return str(e.value)


def test_error_names_file_line_and_key(settings):
    m = make_manifest(settings, env=(("GREETING", "hello\nRUN rm -rf /"),), lines={"env.GREETING": 14, "env": 13})
    with pytest.raises(ManifestError) as e:
        render.render_manifest(m, settings)
    assert f"{m.path}:14: env.GREETING: contains the character U+000A" in str(e.value)


@pytest.mark.parametrize("overrides, key", [
    (dict(upstream=Upstream("docker.io/library/debian", "12", None)), "upstream.digest"),
    (dict(upstream=Upstream("docker.io/library/debian", "12 AS x", DIGEST_A)), "upstream.tag"),
    (dict(upstream=Upstream("docker.io/library/debian", "12", "sha256:x y")), "upstream.digest"),
    (dict(labels=(("org.opencontainers.image.version", "9"),)), "labels.org.opencontainers.image.version"),
    (dict(labels=((render.FINGERPRINT_LABEL, "x"),)), f"labels.{render.FINGERPRINT_LABEL}"),
    (dict(env=(("TZ", "Europe/Berlin"),)), "env.TZ"),
    (dict(env=(("BAD KEY", "1"),)), "env.BAD KEY"),
    (dict(packages=("curl; rm -rf /",)), "packages.0"),
    (dict(user=User("app'x", 1001, 1001)), "user.name"),
    (dict(user=User("app", -1, 1001)), "user.uid"),
    (dict(timezone="../../etc/passwd"), "timezone"),
    (dict(description="two\rlines"), "description"),
    (dict(description="a\u2028b"), "description"),
    (dict(distro="distroless", packages=("curl",)), "packages"),
    (dict(distro="distroless", variants=(Variant("debug", ("busybox", "curl")),)), "variants.debug.packages"),
])
def test_unrenderable_values_are_refused_naming_the_key(settings, overrides, key):
    assert f" {key}: " in _refused(settings, **overrides)


def test_a_no_shell_image_needs_a_helper_image(settings):
    bare = dataclasses.replace(settings, helper_image="")
    with pytest.raises(ManifestError, match="helper_image"):
        render.render_manifest(make_manifest(bare, **CASES["distroless"]), bare)


# --- quoting ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value, quoted", [
    ("plain", '"plain"'),
    ("", '""'),
    ("two words", '"two words"'),
    ('say "hi"', '"say \\"hi\\""'),
    ("C:\\path\\", '"C:\\\\path\\\\"'),
    ("$HOME and ${PATH}", '"\\$HOME and \\${PATH}"'),
    ("tab\there", '"tab\there"'),
    ("unicode ✓ 日本", '"unicode ✓ 日本"'),
    ("\\", '"\\\\"'),
])
def test_quote_value(value, quoted):
    assert render.quote_value(value, "k") == quoted


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\0b", "\x1b[31m", "a\x85b", "a\u2029b", "\ud800"])
def test_quote_value_refuses_what_is_not_a_single_line(value):
    with pytest.raises(RenderError, match="U\\+"):
        render.quote_value(value, "k")


# --- determinism and digests ----------------------------------------------------------------------

def test_rendering_is_deterministic_and_ignores_input_order(settings):
    m = make_manifest(settings, packages=("jq", "curl", "netbase"),
                      env=(("B", "2"), ("A", "1"), ("C", "3")), labels=(("z.z", "1"), ("a.a", "2")))
    first = render.render_manifest(m, settings)
    assert render.render_manifest(m, settings) == first
    rng = random.Random(7)
    for _ in range(5):
        shuffled = dataclasses.replace(
            m, packages=tuple(rng.sample(m.packages, len(m.packages))), env=tuple(rng.sample(m.env, len(m.env))),
            labels=tuple(rng.sample(m.labels, len(m.labels))))
        assert render.render_manifest(shuffled, settings).files == first.files


def test_context_digests_cover_their_own_context_only(settings):
    m = make_manifest(settings)
    image = render.render_manifest(m, settings)
    assert image.context_digest == render.digest_files(image.context_files(render.PROD))
    assert image.debug_context_digest == render.digest_files(image.context_files(render.DEBUG))
    assert sorted(image.context_files(render.DEBUG)) == ["Dockerfile", "factory-context.json"]
    other_debug = render.render_manifest(dataclasses.replace(m, variants=(Variant("debug", ("strace",)),)), settings)
    assert other_debug.context_digest == image.context_digest
    assert other_debug.debug_context_digest != image.debug_context_digest
    other_prod = render.render_manifest(dataclasses.replace(m, packages=("netbase",)), settings)
    assert other_prod.context_digest != image.context_digest
    no_debug = render.render_manifest(dataclasses.replace(m, variants=()), settings)
    assert no_debug.debug_context_digest is None and "debug/Dockerfile" not in no_debug.files


def test_context_file_records_the_inputs_and_the_render_version(settings):
    image = render.render_manifest(make_manifest(settings), settings)
    doc = json.loads(image.files["factory-context.json"])
    assert doc["render_version"] == render.RENDER_VERSION
    assert doc["from"] == {"upstream": f"docker.io/library/python:3.11.9-slim-bookworm@{DIGEST_A}"}
    assert doc["platforms"] == ["linux/amd64", "linux/arm64"]
    assert doc["build_args"] == list(render.PER_BUILD_ARGS)


def test_digest_files_depends_on_paths_and_contents_not_order():
    files = {"b": b"2", "a": b"1"}
    assert render.digest_files(files) == render.digest_files(dict(sorted(files.items())))
    assert render.digest_files(files) != render.digest_files({"a": b"2", "b": b"1"})
    assert render.digest_files({"a": b"1b", "": b""}) != render.digest_files({"a": b"1", "b": b""})


def test_the_header_names_the_manifest_relative_to_the_repository(settings):
    dockerfile = text(render.render_manifest(make_manifest(settings), settings))
    assert dockerfile.startswith("# Rendered by `factory render` from manifests/python-3.11-slim-bookworm.yaml:")


# --- images/ on disk ------------------------------------------------------------------------------

def _catalog(settings, *manifests) -> dict[str, Manifest]:
    return {m.name: m for m in manifests} if manifests else {"app": make_manifest(settings, name="app")}


def test_write_all_writes_then_changes_nothing(settings):
    catalog = _catalog(settings)
    written = render.write_all(catalog, settings)
    folder = settings.images_dir / "app"
    assert sorted(written) == sorted(folder / p for p in render.render_manifest(catalog["app"], settings).files)
    assert render.write_all(catalog, settings) == []
    assert render.check(catalog, settings) == ""


def test_write_all_removes_stale_files_in_its_folders_only(settings):
    catalog = _catalog(settings)
    render.write_all(catalog, settings)
    folder = settings.images_dir / "app"
    (folder / "old.txt").write_text("stale")
    (folder / "debug" / "leftover").write_text("stale")
    other = settings.images_dir / "not-a-manifest" / "Dockerfile"
    other.parent.mkdir(parents=True)
    other.write_text("FROM x\n")
    touched = render.write_all(catalog, settings)
    assert sorted(touched) == sorted([folder / "old.txt", folder / "debug" / "leftover"])
    assert not (folder / "old.txt").exists() and other.read_text() == "FROM x\n"

    without_debug = {"app": dataclasses.replace(catalog["app"], variants=())}
    render.write_all(without_debug, settings)
    assert not (folder / "debug").exists()


def test_check_reports_changed_missing_and_extra_files(settings):
    catalog = _catalog(settings)
    render.write_all(catalog, settings)
    folder = settings.images_dir / "app"
    dockerfile = folder / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("USER 1001:1001", "USER root"))
    (folder / "debug" / "factory-context.json").unlink()
    (folder / "extra.sh").write_text("echo\n")

    diff = render.check(catalog, settings)
    assert "--- a/images/app/Dockerfile\n+++ b/images/app/Dockerfile\n" in diff
    assert "-USER root\n+USER 1001:1001\n" in diff
    assert "--- /dev/null\n+++ b/images/app/debug/factory-context.json\n" in diff
    assert "--- a/images/app/extra.sh\n+++ /dev/null\n" in diff
    assert render.stale_files(diff) == 3
    assert render.check({}, settings) == ""  # only the selected images are compared


def test_select_by_name_suggests_a_close_one(settings):
    catalog = _catalog(settings)
    assert manifest.select(catalog, []) == catalog
    assert manifest.select(catalog, ["app"]) == catalog
    with pytest.raises(UsageError, match="apq \\(did you mean app\\?\\)"):
        manifest.select(catalog, ["apq"])


# --- the CLI --------------------------------------------------------------------------------------

MANIFEST_YAML = f"""\
apiVersion: factory/v1
name: debian-12-slim
version: "1.0"
description: Debian 12 slim, hardened
upstream:
  image: docker.io/library/debian
  tag: 12.7-slim
  digest: {DIGEST_E}
distro: debian
release: "12"
variants:
  debug:
    packages: [busybox]
"""


def _cli(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


def test_cli_render_writes_and_check_fails_when_stale(tmp_path, capsys):
    settings = make_settings(tmp_path)
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "debian-12-slim.yaml").write_text(MANIFEST_YAML)
    conf = ["--config", str(tmp_path / "factory.yaml"), "--log-format", "json"]

    code, out, err = _cli([*conf, "render", "--check"], capsys)
    assert code == 1 and "+++ b/images/debian-12-slim/Dockerfile" in out
    # Dockerfile, factory-context.json, prepare-rootfs.sh, apply-fixes.sh and debug/{Dockerfile,factory-context.json}
    assert "6 rendered file(s) are stale" in err and "factory render" in err

    code, out, _ = _cli([*conf, "render"], capsys)
    assert code == 0 and "6 file(s) changed" in out
    assert (settings.images_dir / "debian-12-slim" / render.FIXES_SCRIPT).is_file()
    assert (settings.images_dir / "debian-12-slim" / "debug" / "Dockerfile").is_file()

    code, out, _ = _cli([*conf, "render", "--check", "debian-12-slim"], capsys)
    assert code == 0 and "up to date" in out

    code, _, err = _cli([*conf, "render", "debian-12"], capsys)
    assert code == 2 and "did you mean debian-12-slim" in err


# --- security fixes (policy.security_fixes, docs/security-fixes.md) -------------------------------------

def _stage(dockerfile: str, name: str) -> list[str]:
    """The logical lines of the stage `FROM ... AS name`, up to the next FROM."""
    lines = logical_lines(dockerfile)
    start = next(i for i, line in enumerate(lines) if line.startswith("FROM ") and line.endswith(f" AS {name}"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("FROM ")), len(lines))
    return lines[start:end]


def test_the_policy_changes_no_rendered_file(tmp_path):
    # policy.security_fixes decides the build args, never the context: switching it is not a rebuild for
    # "manifest changed", and with off (no args) a build runs what it ran before security fixes existed
    shutil.copytree(TEST_CERTS, tmp_path / "certs")
    rendered = {}
    for policy in ("off", "warn", "require"):
        s = make_settings(tmp_path, policy={"security_fixes": policy})
        rendered[policy] = {case: render.render_manifest(make_manifest(s, **o), s).files for case, o in CASES.items()}
    assert rendered["off"] == rendered["warn"] == rendered["require"]


def test_without_build_args_the_script_uses_the_images_own_sources_and_upgrades_nothing(settings):
    image = render.render_manifest(make_manifest(settings, packages=("netbase",)), settings)
    assert f"ARG {render.SUITES_ARG}=image" in logical_lines(text(image))
    script = image.files[render.FIXES_SCRIPT].decode()
    assert 'suites=${ARCHIVE_SUITES:-image}' in script and 'fixes=${SECURITY_FIXES:-}' in script
    assert 'if [ "$suites" = configured ]; then' in script  # the configured mirrors only when asked for


def test_fixes_build_args():
    hardening_only = make_manifest(config.load(None, environ={}), packages=())
    assert render.fixes_build_args(hardening_only, ["libpam0g", "apt", "apt"], "s1") == {
        render.SUITES_ARG: "configured", render.STATE_ARG: "s1", render.FIXES_ARG: "apt libpam0g",
        render.ORG_LAYER_ARG: "run"}
    assert render.fixes_build_args(hardening_only, [], "s1") == {
        render.SUITES_ARG: "configured", render.STATE_ARG: "s1", render.FIXES_ARG: ""}
    with_packages = make_manifest(config.load(None, environ={}), packages=("netbase",))
    assert render.ORG_LAYER_ARG not in render.fixes_build_args(with_packages, ["apt"], "s1")


def test_applies_fixes_follows_the_policy_and_the_package_manager(tmp_path):
    on, off = make_settings(tmp_path), make_settings(tmp_path, policy={"security_fixes": "off"})
    assert render.applies_fixes(make_manifest(on), on) and not render.applies_fixes(make_manifest(off), off)
    assert not render.applies_fixes(make_manifest(on, **CASES["distroless"]), on)


def test_an_apt_image_with_packages_applies_the_fixes_first_in_its_one_run(fix_settings):
    image = render.render_manifest(make_manifest(fix_settings, packages=("netbase",)), fix_settings)
    dockerfile = text(image)
    assert instructions(dockerfile).count("RUN") == 1 and "COPY" not in instructions(dockerfile)
    assert f"ARG {render.FIXES_ARG}" in logical_lines(dockerfile)
    run = " ".join(next(line for line in logical_lines(dockerfile) if line.startswith("RUN ")).split())
    assert run.startswith(f"RUN --mount=type=bind,source={render.FIXES_SCRIPT},target={render.FIXES_SCRIPT_IN_BUILD} "
                          "set -eux; export DEBIAN_FRONTEND=noninteractive; "
                          f"sh {render.FIXES_SCRIPT_IN_BUILD} --apt bookworm main http://deb.debian.org/debian "
                          "http://security.debian.org/debian-security; apt-get install")
    assert "apt-get update" not in run  # the script updated the lists with every configured suite
    # the temporary sources file goes before the clean-up, so it is in no layer
    assert run.index(f"rm -f {render.FIXES_SOURCES}") < run.index("rm -rf /var/lib/apt/lists/*")
    assert image.files[render.FIXES_SCRIPT].startswith(b"#!/bin/sh\n# apply-fixes.sh")


def test_a_hardening_only_image_chooses_the_copy_or_the_run_stage_by_a_build_arg(fix_settings):
    image = render.render_manifest(make_manifest(fix_settings, timezone="Asia/Tokyo"), fix_settings)
    dockerfile = text(image)
    lines = logical_lines(dockerfile)
    assert lines[0] == f"ARG {render.ORG_LAYER_ARG}=copy"  # without fixes pending: the COPY, as with fixes off
    ref = f"docker.io/library/python:3.11.9-slim-bookworm@{DIGEST_A}"
    assert _stage(dockerfile, "org-copy") == [f"FROM {ref} AS org-copy", "COPY --from=helper /rootfs/ /"]
    run_stage = _stage(dockerfile, "org-run")
    assert [line.split()[0] for line in run_stage] == ["FROM", "USER", "ARG", "ARG", "ARG", "RUN"]  # one layer
    assert f"sh {render.FIXES_SCRIPT_IN_BUILD} --apt bookworm main" in run_stage[-1]
    assert "ln -snf /usr/share/zoneinfo/Asia/Tokyo /etc/localtime" in run_stage[-1]  # the same hardening
    assert final_stage(dockerfile)[0] == f"FROM org-${{{render.ORG_LAYER_ARG}}}"
    assert final_stage(dockerfile)[-1] == "USER 1001:1001"
    assert {render.HELPER_SCRIPT, render.FIXES_SCRIPT} <= set(image.files)


def test_ubuntu_gets_its_ports_mirror_and_alpine_its_branch(fix_settings):
    ubuntu = text(render.render_manifest(make_manifest(fix_settings, **CASES["ubuntu"]), fix_settings))
    assert ("--apt noble 'main universe' http://archive.ubuntu.com/ubuntu http://security.ubuntu.com/ubuntu "
            "http://ports.ubuntu.com/ubuntu-ports;") in ubuntu
    alpine = text(render.render_manifest(make_manifest(fix_settings, **CASES["alpine"]), fix_settings))
    assert f"sh {render.FIXES_SCRIPT_IN_BUILD} --apk v3.20 https://dl-cdn.alpinelinux.org/alpine;" in alpine


def test_images_without_a_package_manager_get_no_fixes_stage(fix_settings):
    image = render.render_manifest(make_manifest(fix_settings, **CASES["distroless"]), fix_settings)
    assert render.FIXES_SCRIPT not in image.files and render.FIXES_ARG not in text(image)


def test_configured_mirrors_are_the_ones_rendered(tmp_path):
    s = make_settings(tmp_path, archives={"debian": {"mirror": "http://mirror.example.org/debian",
                                                     "security_mirror": "http://mirror.example.org/security"}})
    dockerfile = text(render.render_manifest(make_manifest(s, packages=("netbase",)), s))
    assert "--apt bookworm main http://mirror.example.org/debian http://mirror.example.org/security;" in dockerfile


def test_an_empty_mirror_is_a_config_error_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"archives\.debian\.security_mirror: "):
        make_settings(tmp_path, archives={"debian": {"security_mirror": ""}})


def test_a_release_without_a_known_codename_names_the_release_key(fix_settings):
    m = make_manifest(fix_settings, release="99", packages=("netbase",))
    with pytest.raises(ManifestError, match=r"release: debian 99: no codename known"):
        render.render_manifest(m, fix_settings)
