"""make_plan against an in-memory registry: which images must be built, and why."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from factory import config, manifest, plan, render
from factory.ocilayout import Descriptor

UP1 = "sha256:" + "1" * 64
UP2 = "sha256:" + "2" * 64


@dataclass
class FakeRegistry:
    """tag -> (digest, labels); just the three calls make_plan uses."""

    images: dict

    def list_tags(self, repo):
        return list(self.images)

    def head_manifest(self, repo, ref):
        hit = self.images.get(ref)
        return Descriptor("application/vnd.oci.image.index.v1+json", hit[0], 100) if hit else None

    def labels(self, repo, ref):
        return self.images[ref][1]


def doc(name, **extra):
    lines = [f"apiVersion: factory/v1", f"name: {name}", 'version: "1.0"', f"description: {name}",
             "distro: distroless", 'release: "12"', "eol: \"2028-06-30\""]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "manifests").mkdir()
    (tmp_path / "factory.yaml").write_text("helper_image: 127.0.0.1:5000/x/debian:12@" + UP1 + "\n")

    def write(digest=UP1, env=None):
        upstream = "{image: 127.0.0.1:5000/upstream/base, tag: '1.0', digest: " + digest + "}"
        (tmp_path / "manifests" / "base.yaml").write_text(doc("base", upstream=upstream))
        (tmp_path / "manifests" / "app.yaml").write_text(doc("app", parent="base", **({"env": env} if env else {})))
        (tmp_path / "manifests" / "tool.yaml").write_text(doc("tool", parent="app"))
        s = config.load(tmp_path / "factory.yaml", environ={})
        catalog = manifest.load_all(s)
        render.write_all(catalog, s)
        return s, catalog

    return write


def published(s, catalog, registry_images, name, base_digest, digest):
    """What a publish of ``name`` on ``base_digest`` would have labelled."""
    m = catalog[name]
    fp = plan.fingerprint(context_digest=plan.context_digest(s.images_dir / name), base_digest=base_digest,
                          platforms=[str(p) for p in m.platforms])
    labels = {plan.FINGERPRINT_LABEL: fp, "org.opencontainers.image.base.digest": base_digest}
    registry_images[f"{name}-v1.0.0"] = (digest, labels)
    registry_images[f"{name}-v1.0"] = (digest, labels)


def all_published(s, catalog):
    images = {}
    published(s, catalog, images, "base", UP1, "sha256:" + "b" * 64)
    published(s, catalog, images, "app", "sha256:" + "b" * 64, "sha256:" + "c" * 64)
    published(s, catalog, images, "tool", "sha256:" + "c" * 64, "sha256:" + "d" * 64)
    return FakeRegistry(images)


def reasons(p):
    return {i.name: i.reasons for i in p.images}


def test_everything_new(repo):
    s, catalog = repo()
    p = plan.make_plan(catalog, s, lambda host: FakeRegistry({}))
    assert [i.name for i in p.to_build()] == ["base", "app", "tool"]
    assert reasons(p) == {"base": ("new",), "app": ("new",), "tool": ("new",)}
    assert p.images[1].fingerprint is None  # its parent is about to change


def test_nothing_changed(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    p = plan.make_plan(catalog, s, lambda host: reg)
    assert p.to_build() == [] and reasons(p) == {"base": (), "app": (), "tool": ()}
    assert [i.current_version for i in p.images] == ["1.0.0"] * 3
    assert [i.next_version for i in p.images] == ["1.0.1"] * 3


def test_upstream_change_cascades_to_every_descendant(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    s, catalog = repo(digest=UP2)
    p = plan.make_plan(catalog, s, lambda host: reg)
    assert reasons(p) == {"base": ("upstream changed",), "app": ("parent changed",), "tool": ("parent changed",)}


def test_manifest_edit_puts_only_that_image_and_its_descendants_in_the_plan(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    s, catalog = repo(env="{APP_MODE: x}")
    p = plan.make_plan(catalog, s, lambda host: reg)
    assert reasons(p) == {"base": (), "app": ("manifest changed",), "tool": ("parent changed",)}


def test_names_restrict_the_roots_but_keep_descendants_and_force(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    p = plan.make_plan(catalog, s, lambda host: reg, ["app"], force=True)
    assert [i.name for i in p.images] == ["app", "tool"]
    assert reasons(p) == {"app": ("forced",), "tool": ("parent changed",)}


def test_github_matrix_and_bake(repo):
    s, catalog = repo()
    p = plan.make_plan(catalog, s, lambda host: FakeRegistry({}))
    matrix = plan.github_matrix(p)["include"]
    assert len(matrix) == 6
    assert matrix[0] == {"image": "base", "platform": "linux/amd64", "runner": "ubuntu-24.04",
                         "platform_slug": "linux-amd64", "depends_on": "", "level": 0}
    assert [e["image"] for e in plan.github_matrix(p, level=1)["include"]] == ["app", "app"]
    assert plan.levels(p) == {"base": 0, "app": 1, "tool": 2}
    assert {e["runner"] for e in matrix if e["platform"] == "linux/arm64"} == {"ubuntu-24.04-arm"}
    bake = plan.bake(p, catalog, s)
    assert bake["group"]["default"]["targets"] == ["base", "app", "tool"]
    app = bake["target"]["app"]
    assert app["contexts"] == {"parent": "target:base"} and app["args"]["BASE_REF"] == "parent"
    assert app["tags"][0].endswith(":app-v1.0.0") and app["platforms"] == ["linux/amd64", "linux/arm64"]
    assert Path(app["context"]) == s.images_dir / "app"
