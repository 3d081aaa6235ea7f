"""The plan reason "security fixes": an image whose current version has fixes its org layer can apply is
planned with its descendants even when nothing else changed; a no-shell image's fixes are a note."""

from __future__ import annotations

import json

import pytest

from factory.publish import pipeline
from factory.render import contexts as render
from factory.render import plan
from factory.spec import config, manifest
from tests.unit.test_plan_make import UP1, FakeRegistry

DEB = """\
apiVersion: factory/v1
name: {name}
version: "1.0"
description: {name}
distro: {distro}
release: "12"
eol: "2028-06-30"
{base}
"""
SECURITY = "bookworm-security"


def fix(package: str, old: str = "1.0-1", new: str = "1.0-1+deb12u1", platforms=("linux/amd64",)) -> plan.PendingFix:
    return plan.PendingFix(package, old, new, SECURITY, tuple(platforms))


@pytest.fixture
def world(tmp_path):
    """base (debian, upstream) <- app (parent base) <- tool; static (distroless): all published, unchanged."""
    (tmp_path / "manifests").mkdir()
    (tmp_path / "factory.yaml").write_text("helper_image: 127.0.0.1:5000/x/debian:12@" + UP1 + "\n")
    upstream = "upstream: {image: 127.0.0.1:5000/upstream/debian, tag: '12', digest: " + UP1 + "}"
    static_up = "upstream: {image: 127.0.0.1:5000/upstream/static, tag: nonroot, digest: " + UP1 + "}"
    for name, distro, base in (("base", "debian", upstream), ("app", "debian", "parent: base"),
                               ("tool", "debian", "parent: app"), ("static", "distroless", static_up)):
        (tmp_path / "manifests" / f"{name}.yaml").write_text(DEB.format(name=name, distro=distro, base=base))
    s = config.load(tmp_path / "factory.yaml", environ={})
    catalog = manifest.load_all(s)
    render.write_all(catalog, s)
    images = {}
    digests = {"base": "sha256:" + "b" * 64, "app": "sha256:" + "c" * 64, "tool": "sha256:" + "d" * 64,
               "static": "sha256:" + "e" * 64}
    bases = {"base": UP1, "app": digests["base"], "tool": digests["app"], "static": UP1}
    for name, digest in digests.items():
        m = catalog[name]
        fp = plan.fingerprint(context_digest=plan.context_digest(s.images_dir / name), base_digest=bases[name],
                              platforms=[str(p) for p in m.platforms])
        labels = {plan.FINGERPRINT_LABEL: fp, "org.opencontainers.image.base.digest": bases[name]}
        for tag in (f"{name}-v1.0.0", f"{name}-v1.0", f"{name}-v1", name):
            images[tag] = (digest, labels)
    reg = FakeRegistry(images)
    return s, catalog, (lambda host: reg)


def reasons(p: plan.Plan) -> dict[str, tuple[str, ...]]:
    return {i.name: i.reasons for i in p.images}


def test_without_fixes_nothing_is_planned(world):
    s, catalog, registry = world
    assert plan.make_plan(catalog, s, registry, fixes={}).to_build() == []


def test_pending_security_fixes_plan_the_image_and_cascade_to_its_descendants(world):
    s, catalog, registry = world
    fixes = {"base": plan.ImageFixes("1.0.0", fixable=(fix("apt", "2.6.1", "2.6.2"), fix("libpam0g")))}
    p = plan.make_plan(catalog, s, registry, fixes=fixes)
    assert reasons(p) == {"base": ("security fixes",), "app": ("parent changed",), "tool": ("parent changed",),
                          "static": ()}
    base = p.images[0]
    assert base.build and base.fingerprint is not None  # same inputs: only the fixes rebuild it
    assert [str(f) for f in base.security_fixes] == ["apt 2.6.1 -> 2.6.2 (bookworm-security)",
                                                     "libpam0g 1.0-1 -> 1.0-1+deb12u1 (bookworm-security)"]
    assert base.next_version == "1.0.1"


def test_a_descendant_with_its_own_fixes_has_both_reasons(world):
    s, catalog, registry = world
    both = (fix("libpam0g"),)
    fixes = {"base": plan.ImageFixes("1.0.0", fixable=both), "app": plan.ImageFixes("1.0.0", fixable=both)}
    assert reasons(plan.make_plan(catalog, s, registry, fixes=fixes))["app"] == ("parent changed", "security fixes")


def test_a_child_alone_with_fixes_is_planned_and_its_parent_is_not(world):
    s, catalog, registry = world
    p = plan.make_plan(catalog, s, registry, fixes={"tool": plan.ImageFixes("1.0.0", fixable=(fix("curl"),))})
    assert reasons(p) == {"base": (), "app": (), "tool": ("security fixes",), "static": ()}


def test_fixes_found_in_another_version_than_the_current_one_do_not_count(world):
    s, catalog, registry = world
    p = plan.make_plan(catalog, s, registry, fixes={"base": plan.ImageFixes("0.9.0", fixable=(fix("apt"),))})
    assert p.to_build() == []


def test_no_shell_images_are_not_planned_for_fixes_only_noted(world):
    s, catalog, registry = world
    fixes = {"static": plan.ImageFixes("1.0.0", upstream=(fix("libc6", "2.36-9", "2.36-9+deb12u9"),))}
    p = plan.make_plan(catalog, s, registry, fixes=fixes)
    assert p.to_build() == []
    (note,) = p.notes
    assert note.startswith("static 1.0.0: 1 security fix(es) only a new upstream image brings")
    assert "upstream must rebuild" in note and "libc6 2.36-9 -> 2.36-9+deb12u9 (bookworm-security)" in note
    # even if a caller put them under fixable: a distroless image has no package manager to apply them
    p = plan.make_plan(catalog, s, registry, fixes={"static": plan.ImageFixes("1.0.0", fixable=(fix("libc6"),))})
    assert p.to_build() == []


def test_failed_checks_are_notes_never_none_pending(world):
    s, catalog, registry = world
    fixes = {"base": plan.ImageFixes("1.0.0", errors=("base 1.0.0 linux/arm64: no verified cyclonedx attestation",))}
    p = plan.make_plan(catalog, s, registry, fixes=fixes)
    assert p.notes == ("base 1.0.0: fixes not checked: base 1.0.0 linux/arm64: no verified cyclonedx attestation",)
    assert pipeline.unchecked_lines(p.fixes) == ("base 1.0.0 linux/arm64: no verified cyclonedx attestation",)


def test_the_json_format_carries_the_packages(world):
    s, catalog, registry = world
    p = plan.make_plan(catalog, s, registry, fixes={"base": plan.ImageFixes("1.0.0", fixable=(fix("apt"),))})
    doc = {i["name"]: i for i in json.loads(plan.as_json(p))}
    assert doc["base"]["reasons"] == ["security fixes"]
    assert doc["base"]["security_fixes"] == [{"package": "apt", "installed": "1.0-1", "candidate": "1.0-1+deb12u1",
                                              "suite": SECURITY, "platforms": ["linux/amd64"]}]
    assert doc["app"]["security_fixes"] == []


def test_the_table_shows_the_packages_under_the_reason_within_100_columns(world):
    s, catalog, registry = world
    many = tuple(fix(f"libpackage-with-a-long-name{n}", "2.38.1-5+deb12u1", "2.38.1-5+deb12u3") for n in range(40))
    fixes = {"base": plan.ImageFixes("1.0.0", fixable=many),
             "static": plan.ImageFixes("1.0.0", upstream=many)}
    text = plan.table(plan.make_plan(catalog, s, registry, fixes=fixes))
    lines = text.splitlines()
    assert all(len(line) <= plan.TABLE_WIDTH for line in lines), max(lines, key=len)
    assert lines[1].split()[:3] == ["base", "yes", "security"]
    under = [line for line in lines[2:] if line.startswith("    ")]
    assert 1 <= len(under) <= plan.FIX_LINES + 1
    first = "libpackage-with-a-long-name0 2.38.1-5+deb12u1 -> 2.38.1-5+deb12u3 (bookworm-security)"
    assert under[0].startswith("    " + first)
    shown = sum(line.count("libpackage-with-a-long-name") for line in under)
    assert f"+{40 - shown} more" in text
    assert "3 of 4 to build" in text
    assert any(line.startswith("note: static 1.0.0: 40 security fix(es)") for line in lines)


def test_fold_keeps_every_item_when_they_fit():
    assert plan.fold(["a", "b", "c"], indent="  ", width=10) == ["  a, b, c"]
    assert plan.fold(["aaaa", "bbbb", "cccc"], indent="  ", width=10) == ["  aaaa", "  bbbb", "  cccc"]
    # past max_lines the rest is counted: on the last line when it fits, else on a line of its own
    assert plan.fold(["a" * 12] * 3, indent="  ", width=40, max_lines=1) == [f"  {'a' * 12}, {'a' * 12}, +1 more"]
    assert plan.fold(["aaaa"] * 5, indent="  ", width=10, max_lines=2) == ["  aaaa", "  aaaa", "  +3 more"]
    assert plan.fold([], indent="  ") == []


# --- the CLI: table on stdout alone, notes on stderr for the tool formats, exit 2 for unchecked ------------


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_plan_command_prints_one_format_and_fails_unchecked_under_require(world, monkeypatch, capsys, fmt):
    from factory import cli
    from tests.unit.test_cli import run_cli

    s, catalog, registry = world
    fixes = {"base": plan.ImageFixes("1.0.0", fixable=(fix("apt"),)),
             "static": plan.ImageFixes("1.0.0", errors=("static 1.0.0 linux/amd64: archive unreachable",))}
    monkeypatch.setattr(pipeline, "plan", lambda ctx, names, force, vulnerable=None:
                        plan.make_plan(catalog, s, registry, fixes=fixes))
    monkeypatch.setattr(cli.RunContext, "registry_requests", lambda self: 0)
    code, out, err = run_cli(["--config", str(s.root / "factory.yaml"), "plan", "--format", fmt], capsys)
    assert code == 2 and "fixes not checked for:\n  static 1.0.0 linux/amd64: archive unreachable" in err
    if fmt == "table":
        assert out.splitlines()[0].startswith("image") and '"group"' not in out and "note: static 1.0.0" in out
    else:
        assert json.loads(out)[0]["security_fixes"][0]["package"] == "apt"
        assert "note: static 1.0.0: fixes not checked" in err


def test_a_vulnerable_current_version_is_planned_with_its_descendants(world):
    """`factory scan` found a blocking CVE in base 1.0.0: the fix is a rebuild, and its children follow."""
    s, catalog, registry = world
    p = plan.make_plan(catalog, s, registry, fixes={}, vulnerable={"base": "1.0.0"})
    assert reasons(p) == {"base": ("vulnerable",), "app": ("parent changed",), "tool": ("parent changed",),
                          "static": ()}
    # found in a version that is no longer the current one: nothing to do
    assert plan.make_plan(catalog, s, registry, fixes={}, vulnerable={"base": "0.9.0"}).to_build() == []
