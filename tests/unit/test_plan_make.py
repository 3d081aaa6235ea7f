"""make_plan against an in-memory registry: which images must be built, and why."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from factory.adapters.gitinfo import Revision
from factory.core.errors import RegistryError, UsageError
from factory.oci.layout import Descriptor
from factory.render import contexts as render
from factory.render import plan
from factory.spec import config, manifest

UP1 = "sha256:" + "1" * 64
UP2 = "sha256:" + "2" * 64


@dataclass
class FakeRegistry:
    """tag -> (digest, labels[, index annotations]); just the calls make_plan uses, counted."""

    images: dict
    calls: list = field(default_factory=list)

    def list_tags(self, repo):
        self.calls.append(("tags", repo))
        return list(self.images)

    def head_manifest(self, repo, ref):
        self.calls.append(("head", ref))
        hit = self.images.get(ref)
        return Descriptor("application/vnd.oci.image.index.v1+json", hit[0], 100) if hit else None

    def get_manifest(self, repo, ref):
        self.calls.append(("get", ref))
        hit = self.images.get(ref)
        if hit is None:
            raise RegistryError("manifest unknown", method="GET", status=404)
        index = {"schemaVersion": 2, "manifests": [], **({"annotations": hit[2]} if len(hit) > 2 else {})}
        return json.dumps(index).encode(), "application/vnd.oci.image.index.v1+json", hit[0]

    def labels(self, repo, ref):
        self.calls.append(("labels", ref))  # the legacy path: a platform manifest and its config
        return next(hit[1] for tag, hit in self.images.items() if ref in (tag, hit[0]))


def doc(name, version="1.0", **extra):
    lines = ["apiVersion: factory/v1", f"name: {name}", f'version: "{version}"', f"description: {name}",
             "distro: distroless", 'release: "12"', "eol: \"2028-06-30\""]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


@pytest.fixture
def repo(tmp_path):
    (tmp_path / "manifests").mkdir()
    (tmp_path / "factory.yaml").write_text("helper_image: 127.0.0.1:5000/x/debian:12@" + UP1 + "\n")

    def write(digest=UP1, env=None, tool_version="1.0"):
        upstream = "{image: 127.0.0.1:5000/upstream/base, tag: '1.0', digest: " + digest + "}"
        (tmp_path / "manifests" / "base.yaml").write_text(doc("base", upstream=upstream))
        (tmp_path / "manifests" / "app.yaml").write_text(doc("app", parent="base", **({"env": env} if env else {})))
        (tmp_path / "manifests" / "tool.yaml").write_text(doc("tool", tool_version, parent="app"))
        s = config.load(tmp_path / "factory.yaml", environ={})
        catalog = manifest.load_all(s)
        render.write_all(catalog, s)
        return s, catalog

    return write


def published(s, catalog, registry_images, name, base_digest, digest, *, annotated=True):
    """What a publish of ``name`` on ``base_digest`` would have labelled, annotated (unless it predates
    annotations) and tagged."""
    m = catalog[name]
    fp = plan.fingerprint(context_digest=plan.context_digest(s.images_dir / name), base_digest=base_digest,
                          platforms=[str(p) for p in m.platforms])
    labels = {plan.FINGERPRINT_LABEL: fp, "org.opencontainers.image.base.digest": base_digest}
    for tag in (f"{name}-v{m.version}.0", f"{name}-v{m.version}", f"{name}-v{m.major}", name):
        registry_images[tag] = (digest, labels, dict(labels)) if annotated else (digest, labels)


def all_published(s, catalog, *, annotated=True):
    images = {}
    published(s, catalog, images, "base", UP1, "sha256:" + "b" * 64, annotated=annotated)
    published(s, catalog, images, "app", "sha256:" + "b" * 64, "sha256:" + "c" * 64, annotated=annotated)
    published(s, catalog, images, "tool", "sha256:" + "c" * 64, "sha256:" + "d" * 64, annotated=annotated)
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


def test_a_noop_plan_reads_one_index_per_image_and_the_tag_list(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    p = plan.make_plan(catalog, s, lambda host: reg)
    assert p.to_build() == []
    assert sorted(reg.calls) == [("get", "app-v1.0.0"), ("get", "base-v1.0.0"), ("get", "tool-v1.0.0"),
                                 ("tags", "myorg/base")]


def test_images_published_before_annotations_are_read_from_their_labels(repo):
    s, catalog = repo()
    reg = all_published(s, catalog, annotated=False)
    p = plan.make_plan(catalog, s, lambda host: reg)
    assert p.to_build() == []
    assert sorted(c for c in reg.calls if c[0] == "labels") == [
        ("labels", "sha256:" + c * 64) for c in "bcd"]  # by the digest the GET returned


def test_a_child_planned_without_its_parent_heads_the_parent_tag(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    p = plan.make_plan(catalog, s, lambda host: reg, ["tool"])
    assert [i.name for i in p.images] == ["tool"] and p.to_build() == []
    assert sorted(reg.calls) == [("get", "tool-v1.0.0"), ("head", "app-v1.0"), ("tags", "myorg/base")]


def test_a_changed_annotation_fingerprint_plans_a_rebuild(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    digest, labels, _ = reg.images["app-v1.0.0"]
    reg.images["app-v1.0.0"] = (digest, labels, {**labels, plan.FINGERPRINT_LABEL: "sha256:" + "9" * 64})
    p = plan.make_plan(catalog, s, lambda host: reg)
    assert reasons(p) == {"base": (), "app": ("manifest changed",), "tool": ("parent changed",)}


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


def test_a_child_is_fingerprinted_on_its_parents_version_tag_not_its_own(repo):
    s, catalog = repo(tool_version="2.0")  # tool 2.0 is built on app-v1.0
    reg = all_published(s, catalog)
    p = plan.make_plan(catalog, s, lambda host: reg)
    assert reasons(p)["tool"] == () and p.images[2].base_digest == "sha256:" + "c" * 64


def test_a_parent_moved_outside_the_named_roots_is_a_parent_change(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    reg.images["app-v1.0"] = ("sha256:" + "e" * 64, reg.images["app-v1.0"][1])  # app republished elsewhere
    p = plan.make_plan(catalog, s, lambda host: reg, ["tool"])
    assert [i.name for i in p.images] == ["tool"] and reasons(p) == {"tool": ("parent changed",)}
    assert p.images[0].base_digest == "sha256:" + "e" * 64


def test_up_to_date_images_are_planned_but_not_built_and_the_table_says_so(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    p = plan.make_plan(catalog, s, lambda host: reg)
    lines = plan.table(p).splitlines()
    assert lines[0].split() == ["image", "build", "reasons", "current", "fingerprint"]
    assert lines[1].split()[:2] == ["base", "no"] and "up to date" in lines[1]
    assert lines[-1] == "nothing to build"
    assert plan.github_matrix(p) == {"include": []}
    assert plan.bake(p, s) == {"group": {"default": {"targets": []}}, "target": {}}


def test_github_matrix_one_entry_per_image_and_platform_by_level(repo):
    s, catalog = repo()
    p = plan.make_plan(catalog, s, lambda host: FakeRegistry({}))
    matrix = plan.github_matrix(p)["include"]
    assert len(matrix) == 6
    assert matrix[0] == {"image": "base", "platform": "linux/amd64", "runner": "ubuntu-24.04",
                         "platform_slug": "linux-amd64", "depends_on": "", "level": 0}
    assert [e["image"] for e in plan.github_matrix(p, level=1)["include"]] == ["app", "app"]
    assert plan.levels(p) == {"base": 0, "app": 1, "tool": 2}
    assert {e["runner"] for e in matrix if e["platform"] == "linux/arm64"} == {"ubuntu-24.04-arm"}
    own = plan.github_matrix(p, plan.RUNNERS | plan.parse_runners(["linux/aarch64=arm-large"]))["include"]
    assert {e["runner"] for e in own if e["platform"] == "linux/arm64"} == {"arm-large"}


@pytest.mark.parametrize("item", ["linux/arm64", "linux/arm64=", "windows/amd64=x", "=x"])
def test_bad_runner_options_are_usage_errors(item):
    with pytest.raises(UsageError, match="--runner"):
        plan.parse_runners([item])


def test_bake_chains_a_child_to_its_parent_target_in_the_same_bake(repo):
    s, catalog = repo()
    p = plan.make_plan(catalog, s, lambda host: FakeRegistry({}))
    bake = plan.bake(p, s, Revision("abc123", 1700000000, False))
    assert bake["group"]["default"]["targets"] == ["base", "app", "tool"]
    base, app = bake["target"]["base"], bake["target"]["app"]
    assert base["context"] == "images/base" and base["dockerfile"] == "Dockerfile"
    assert base["args"]["FACTORY_FINGERPRINT"] == base["labels"][plan.FINGERPRINT_LABEL] == p.images[0].fingerprint
    assert base["args"]["SOURCE_DATE_EPOCH"] == "1700000000" and base["args"]["FACTORY_REVISION"] == "abc123"
    assert "BASE_REF" not in base["args"]  # an upstream image's FROM is pinned in its Dockerfile
    assert app["contexts"] == {"parent": "target:base"} and app["args"]["BASE_REF"] == "parent"
    assert "FACTORY_FINGERPRINT" not in app["args"]  # known only once base is built
    assert app["tags"] == [f"{s.target}:{t}" for t in ("app-v1.0.0", "app-v1.0", "app-v1", "app")]
    assert app["platforms"] == ["linux/amd64", "linux/arm64"]


def test_bake_builds_a_child_alone_on_its_parents_published_digest(repo):
    s, catalog = repo()
    reg = all_published(s, catalog)
    p = plan.make_plan(catalog, s, lambda host: reg, ["tool"], force=True)
    tool = plan.bake(p, s)["target"]["tool"]
    assert tool["args"]["BASE_REF"] == f"{s.target}@sha256:{'c' * 64}"
    assert tool["args"]["BASE_DIGEST"] == tool["labels"]["org.opencontainers.image.base.digest"] == "sha256:" + "c" * 64
    assert tool["tags"][0].endswith(":tool-v1.0.1") and "contexts" not in tool


def test_bake_refuses_a_child_whose_parent_has_nothing_published(repo):
    s, catalog = repo()
    p = plan.make_plan(catalog, s, lambda host: FakeRegistry({}), ["app"])
    with pytest.raises(UsageError, match="base has no published version"):
        plan.bake(p, s)


def test_bake_target_names_replace_dots_and_refuse_clashes():
    def image(name):
        return plan.PlannedImage(name, True, ("new",), "sha256:f", None, None, "1.0.0", "up", "sha256:u",
                                 ("linux/amd64",), None)

    assert plan._bake_name("alpine-3.23") == "alpine-3_23"
    with pytest.raises(UsageError, match=r"a\.b, a_b"):
        plan.bake(plan.Plan((image("a.b"), image("a_b"))), None)
