"""Policy rules: every rule has a failing and a passing case; messages name the rule, the value and the fix."""

from __future__ import annotations

import dataclasses
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from factory.core.model import Manifest, Parent, Upstream, User, Variant, Vulnerability, Waiver
from factory.core.platforms import parse_all
from factory.spec import config, policy

TODAY = date(2026, 11, 28)
GOOD_DIGEST = "sha256:" + "0123456789abcdef" * 4


def make_manifest(**overrides) -> Manifest:
    """A manifest that passes every rule; override fields to break one."""
    name = overrides.get("name", "debian-12-slim")
    fields = dict(
        path=Path(f"manifests/{name}.yaml"),
        name=name,
        version="1.2",
        description="Debian 12 slim, hardened",
        distro="debian",
        upstream=Upstream("docker.io/library/debian", "12.5-slim", GOOD_DIGEST),
        parent=None,
        release="12",
        runtime="none",
        platforms=parse_all(["linux/amd64", "linux/arm64"]),
        timezone="UTC",
        user=User("app", 1001, 1001),
        ca_certificates=True,
        env=(),
        packages=("tzdata",),
        labels=(),
        licenses="NOASSERTION",
        eol=None,
        variants=(Variant("debug", ("busybox", "curl", "jq")),),
        tests=(),
        waivers=(),
        lines={"name": 2, "upstream": 5, "upstream.image": 6, "upstream.tag": 7, "upstream.digest": 8,
               "release": 10, "user": 12, "eol": 14, "waivers": 20, "waivers.0": 21, "waivers.0.rule": 21,
               "waivers.0.expires": 23},
    )
    fields.update(overrides)
    upstream, parent = fields.pop("upstream"), fields.pop("parent")
    fields["base"] = upstream if upstream is not None else Parent(parent)
    return Manifest(**fields)


def make_child(parent: Manifest, **overrides) -> Manifest:
    fields = dict(name=f"{parent.name}-app", parent=parent.name, upstream=None, release=None)
    fields.update(overrides)
    return make_manifest(**fields)


@pytest.fixture(scope="module")
def settings(tmp_path_factory) -> config.Settings:
    path = tmp_path_factory.mktemp("cfg") / "factory.yaml"
    path.write_text("{}\n")
    return config.load(path, environ={})


def with_policy(settings: config.Settings, **changes) -> config.Settings:
    return dataclasses.replace(settings, policy=dataclasses.replace(settings.policy, **changes))


def run(settings, *manifests: Manifest, today: date = TODAY):
    return policy.evaluate({m.name: m for m in manifests}, settings, today)


def of_rule(problems, rule: policy.Rule):
    return [p for p in problems if p.message.startswith(rule.label + ":")]


def only(problems, rule: policy.Rule):
    found = of_rule(problems, rule)
    assert len(found) == 1, f"expected one {rule.label}, got: {[str(p) for p in problems]}"
    return found[0]


# --- the registry ----------------------------------------------------------------------------------

def test_registry_is_well_formed():
    ids = [r.id for r in policy.RULES]
    slugs = [r.slug for r in policy.RULES]
    assert len(set(ids)) == len(ids) and len(set(slugs)) == len(slugs)
    for r in policy.RULES:
        assert re.fullmatch(r"[A-Z]+-[0-9]{3}", r.id), r.id  # the waiver schema's pattern
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", r.slug), r.slug
        assert r.severity in ("error", "warning") and r.stage in ("manifest", "artifact")
        assert r.title and r.rationale and "\n" not in r.rationale


def test_rule_ids_are_stable():
    # Ids are referenced by waivers in manifests: renumbering one silently re-targets waivers.
    # Append new rules; never change an existing pair here.
    assert {r.id: r.slug for r in policy.RULES} == {
        "POL-001": "pinned-tag", "POL-002": "pinned-digest", "POL-003": "allowed-registry",
        "POL-004": "non-root-user", "POL-005": "eol-passed", "POL-006": "eol-soon",
        "POL-007": "eol-unknown", "POL-008": "eol-extended", "POL-009": "musl-runtime",
        "POL-010": "tag-collision", "POL-011": "waiver-expired", "POL-012": "waiver-bad-rule",
        "POL-013": "waiver-unused", "POL-014": "ca-certificates", "POL-015": "uniform-user",
        "POL-016": "uniform-timezone", "POL-017": "python-unbuffered", "POL-018": "debug-variant",
        "POL-019": "official-image", "POL-020": "multi-arch", "POL-021": "added-layers",
        "POL-022": "total-layers", "POL-023": "size-overhead", "POL-024": "vulnerability",
        "POL-025": "waiver-term", "POL-026": "release-matches-upstream",
    }


def test_every_manifest_rule_has_a_check_except_waiver_rules():
    checked = {rule.id for rule, _ in policy._MANIFEST_CHECKS}
    waiver_rules = {policy.WAIVER_EXPIRED.id, policy.WAIVER_BAD_RULE.id, policy.WAIVER_UNUSED.id,
                    policy.WAIVER_TERM.id}
    manifest_rules = {r.id for r in policy.RULES if r.stage == "manifest"}
    assert checked == manifest_rules - waiver_rules


def test_a_clean_manifest_passes_every_rule(settings):
    assert run(settings, make_manifest()) == []


def test_problem_carries_path_line_key_and_severity(settings):
    p = only(run(settings, make_manifest(upstream=Upstream("docker.io/library/debian", "latest", GOOD_DIGEST))),
             policy.PINNED_TAG)
    assert (p.path, p.line, p.key, p.severity) == ("manifests/debian-12-slim.yaml", 7, "upstream.tag", "error")
    assert str(p).startswith("manifests/debian-12-slim.yaml:7: upstream.tag: POL-001 pinned-tag: ")


# --- POL-001 pinned-tag ----------------------------------------------------------------------------

def test_latest_tag_fails_with_an_actionable_message(settings):
    m = make_manifest(upstream=Upstream("docker.io/library/debian", "latest", GOOD_DIGEST))
    p = only(run(settings, m), policy.PINNED_TAG)
    assert p.message == ("POL-001 pinned-tag: upstream tag 'latest' is mutable (it moves to new releases); "
                         "pin a release tag like 12.5-slim")


@pytest.mark.parametrize("tag", ["stable", "edge", "nightly", "rolling", "stable-slim", "lts-alpine", "LATEST",
                                 "current-bookworm", "sid"])
def test_floating_tags_fail(settings, tag):
    m = make_manifest(upstream=Upstream("docker.io/library/debian", tag, GOOD_DIGEST))
    assert tag in only(run(settings, m), policy.PINNED_TAG).message


def test_missing_tag_fails(settings):
    m = make_manifest(upstream=Upstream("docker.io/library/debian", None, GOOD_DIGEST),
                      lines={"upstream": 5, "upstream.image": 6})
    p = only(run(settings, m), policy.PINNED_TAG)
    assert "upstream.tag is missing" in p.message and p.line == 5  # falls back to the upstream block


@pytest.mark.parametrize("tag", ["12.5-slim", "bookworm-20240110-slim", "3.11.9-slim-bookworm", "nonroot",
                                 "edge2-1.0", "stable2"])
def test_release_tags_pass(settings, tag):
    m = make_manifest(upstream=Upstream("docker.io/library/debian", tag, GOOD_DIGEST))
    assert of_rule(run(settings, m), policy.PINNED_TAG) == []


# --- POL-002 pinned-digest -------------------------------------------------------------------------

@pytest.mark.parametrize(("digest", "why"), [
    (None, "missing"),
    ("sha256:" + "A" * 64, "uppercase"),
    ("sha256:abc123", "6 characters"),
    ("sha512:" + "a" * 128, "'sha512' is not sha256"),
    ("sha256:" + "g" * 64, "64 lowercase hex"),
])
def test_bad_digest_fails(settings, digest, why):
    m = make_manifest(upstream=Upstream("docker.io/library/debian", "12.5-slim", digest))
    p = only(run(settings, m), policy.PINNED_DIGEST)
    assert why in p.message and "imagetools inspect docker.io/library/debian:12.5-slim" in p.message
    assert p.key == "upstream.digest" and p.severity == "error"


def test_good_digest_passes(settings):
    assert of_rule(run(settings, make_manifest()), policy.PINNED_DIGEST) == []


# --- POL-003 allowed-registry ----------------------------------------------------------------------

def test_registry_off_the_allow_list_fails(settings):
    m = make_manifest(upstream=Upstream("ghcr.io/someone/debian", "12.5-slim", GOOD_DIGEST))
    p = only(run(settings, m), policy.ALLOWED_REGISTRY)
    assert "'ghcr.io'" in p.message and "policy.allowed_registries" in p.message and "docker.io" in p.message


@pytest.mark.parametrize("image", ["debian", "library/debian", "docker.io/library/debian",
                                   "index.docker.io/library/debian", "registry-1.docker.io/library/debian"])
def test_docker_hub_spellings_are_normalised(settings, image):
    only_hub = with_policy(settings, allowed_registries=("docker.io",))
    m = make_manifest(upstream=Upstream(image, "12.5-slim", GOOD_DIGEST))
    assert of_rule(run(only_hub, m), policy.ALLOWED_REGISTRY) == []


def test_allow_list_comes_from_settings(settings):
    m = make_manifest(upstream=Upstream("gcr.io/distroless/static-debian12", "nonroot", GOOD_DIGEST),
                      distro="distroless")
    assert of_rule(run(settings, m), policy.ALLOWED_REGISTRY) == []
    assert of_rule(run(with_policy(settings, allowed_registries=("docker.io",)), m), policy.ALLOWED_REGISTRY)


# --- POL-004 non-root-user -------------------------------------------------------------------------

@pytest.mark.parametrize(("user", "key"), [
    (User("root", 0, 0), "user.uid"),
    (User("root", 1001, 1001), "user.name"),
    (User("app", 0, 1001), "user.uid"),
    (User("app", 1001, 0), "user.gid"),
])
def test_root_user_fails(settings, user, key):
    p = only(run(settings, make_manifest(user=user)), policy.NON_ROOT)
    assert p.key == key and p.severity == "error"
    assert "uid: 1001" in p.message or "gid: 1001" in p.message


def test_non_root_user_passes(settings):
    assert of_rule(run(settings, make_manifest(user=User("app", 1001, 1001))), policy.NON_ROOT) == []


# --- POL-005..008 end of life ----------------------------------------------------------------------

def test_past_eol_release_fails_and_suggests_the_newest(settings):
    m = make_manifest(release="11", upstream=Upstream("docker.io/library/debian", "11.9-slim", GOOD_DIGEST))
    p = only(run(settings, m), policy.EOL_PASSED)
    assert p.key == "release" and p.severity == "error"
    assert "2026-08-31" in p.message and "89 days ago" in p.message
    assert "move to debian 13 trixie (supported until 2030-06-30)" in p.message


def test_supported_release_passes_eol_rules(settings):
    problems = run(settings, make_manifest(release="12"))
    for rule in (policy.EOL_PASSED, policy.EOL_SOON, policy.EOL_UNKNOWN, policy.EOL_EXTENDED):
        assert of_rule(problems, rule) == []


def test_eol_on_the_day_itself_is_not_passed(settings):
    m = make_manifest(release="11")
    assert of_rule(run(settings, m, today=date(2026, 8, 31)), policy.EOL_PASSED) == []
    assert of_rule(run(settings, m, today=date(2026, 9, 1)), policy.EOL_PASSED)


def test_own_eol_in_the_past_fails_at_the_eol_key(settings):
    p = only(run(settings, make_manifest(eol=date(2026, 1, 1))), policy.EOL_PASSED)
    assert p.key == "eol" and p.line == 14 and "this manifest's eol" in p.message


def test_child_inherits_the_parents_past_eol(settings):
    parent = make_manifest(name="debian-11-slim", release="11")
    child = make_child(parent)
    problems = run(settings, parent, child)
    p = [x for x in of_rule(problems, policy.EOL_PASSED) if x.path == str(child.path)]
    assert len(p) == 1 and p[0].key == "parent" and "ancestor 'debian-11-slim'" in p[0].message


def test_child_bounded_by_grandparent(settings):
    grand = make_manifest(name="base", eol=date(2026, 12, 31))
    parent = make_child(grand, name="mid")
    child = make_child(parent, name="leaf")
    p = [x for x in of_rule(run(settings, grand, parent, child), policy.EOL_SOON) if x.path == str(child.path)]
    assert len(p) == 1 and "the eol of ancestor 'base'" in p[0].message and "2026-12-31" in p[0].message


def test_eol_inside_the_warning_window_warns(settings):
    m = make_manifest(release="22.04", distro="ubuntu",
                      upstream=Upstream("docker.io/library/ubuntu", "22.04", GOOD_DIGEST))
    p = only(run(settings, m), policy.EOL_SOON)
    assert p.severity == "warning" and "2027-04-01" in p.message and "in 124 days" in p.message
    assert "180-day window policy.eol_warning_days" in p.message and "ubuntu 24.04" in p.message


def test_eol_outside_the_warning_window_passes(settings):
    m = make_manifest(release="22.04", distro="ubuntu",
                      upstream=Upstream("docker.io/library/ubuntu", "22.04", GOOD_DIGEST))
    assert of_rule(run(with_policy(settings, eol_warning_days=30), m), policy.EOL_SOON) == []


def test_manifest_eol_tightens_the_table(settings):
    # Debian 12 is fine until 2028, but the manifest retires the image earlier: that date rules.
    m = make_manifest(eol=TODAY + timedelta(days=10))
    p = only(run(settings, m), policy.EOL_SOON)
    assert p.key == "eol" and "in 10 days" in p.message
    assert of_rule(run(settings, m), policy.EOL_EXTENDED) == []


def test_manifest_eol_cannot_extend_the_distro(settings):
    p = only(run(settings, make_manifest(eol=date(2030, 1, 1))), policy.EOL_EXTENDED)
    assert "eol 2030-01-01 cannot extend the distro's EOL 2028-06-30" in p.message
    assert "set eol to 2028-06-30 or earlier" in p.message and p.key == "eol" and p.severity == "error"
    assert "waive POL-005/POL-006 instead" in p.message


def test_child_eol_cannot_extend_the_parents(settings):
    parent = make_manifest(name="base", eol=date(2027, 12, 31))
    child = make_child(parent, eol=date(2028, 3, 1))
    p = only(run(settings, parent, child), policy.EOL_EXTENDED)
    assert p.path == str(child.path) and "cannot extend the inherited EOL 2027-12-31" in p.message
    assert "ancestor 'base'" in p.message and "waive" not in p.message


def test_unknown_release_without_eol_warns(settings):
    m = make_manifest(distro="ubuntu", release="23.10",
                      upstream=Upstream("docker.io/library/ubuntu", "23.10", GOOD_DIGEST))
    p = only(run(settings, m), policy.EOL_UNKNOWN)
    assert p.severity == "warning" and "ubuntu 23.10" in p.message and "20.04, 22.04, 24.04" in p.message


def test_missing_release_without_eol_warns(settings):
    # an upstream whose tag names no release (no codename, not the official debian image)
    no_release = Upstream("docker.io/library/python", "3.11.9-slim", GOOD_DIGEST)
    p = only(run(settings, make_manifest(release=None, upstream=no_release)), policy.EOL_UNKNOWN)
    assert "release is not set" in p.message and "11, 12, 13" in p.message


@pytest.mark.parametrize("overrides", [
    {"distro": "ubuntu", "release": "23.10", "eol": date(2028, 1, 1)},  # own eol known
    {"distro": "scratch", "release": None},  # no distro to reach end of life
    {"release": "12.5"},  # debian point release normalised
])
def test_known_eol_passes_unknown_rule(settings, overrides):
    assert of_rule(run(settings, make_manifest(**overrides)), policy.EOL_UNKNOWN) == []


def test_child_without_release_uses_its_parents_eol(settings):
    parent = make_manifest(name="base")
    assert of_rule(run(settings, parent, make_child(parent)), policy.EOL_UNKNOWN) == []


def test_parent_cycle_does_not_hang(settings):
    a = make_manifest(name="a", parent="b", upstream=None)
    b = make_manifest(name="b", parent="a", upstream=None)
    run(settings, a, b)  # cycles are the loader's to report; policy must just terminate


# --- POL-009 musl-runtime --------------------------------------------------------------------------

ALPINE = dict(distro="alpine", release="3.22", upstream=Upstream("docker.io/library/python", "3.12.5-alpine3.22",
                                                                  GOOD_DIGEST))


@pytest.mark.parametrize("runtime", ["python", "node", "java", "dotnet", "ruby"])
def test_musl_with_glibc_runtime_warns(settings, runtime):
    env = (("PYTHONUNBUFFERED", "1"),)
    p = only(run(settings, make_manifest(runtime=runtime, env=env, **ALPINE)), policy.MUSL_RUNTIME)
    assert p.severity == "warning" and p.key == "runtime" and "slim Debian" in p.message


@pytest.mark.parametrize(("runtime", "distro"), [("go", "alpine"), ("none", "alpine"), ("python", "debian")])
def test_musl_rule_passes_otherwise(settings, runtime, distro):
    fields = {**ALPINE, "distro": distro, "release": "3.22" if distro == "alpine" else "12"}
    m = make_manifest(runtime=runtime, env=(("PYTHONUNBUFFERED", "1"),), **fields)
    assert of_rule(run(settings, m), policy.MUSL_RUNTIME) == []


# --- POL-010 tag-collision -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["foo-debug", "foo-debug-v1.2.3", "foo-debug-v1", "foo-v1", "foo-v1.2"])
def test_name_colliding_with_another_images_tags_fails(settings, name):
    foo = make_manifest(name="foo")
    other = make_manifest(name=name)
    p = only(run(settings, foo, other), policy.TAG_COLLISION)
    assert p.path == str(other.path) and p.key == "name" and "'foo'" in p.message


@pytest.mark.parametrize("name", ["foobar", "foo-debugger", "foo-vnext", "foo-slim", "bar-debug"])
def test_names_that_cannot_collide_pass(settings, name):
    assert of_rule(run(settings, make_manifest(name="foo"), make_manifest(name=name)), policy.TAG_COLLISION) == []


def test_debug_name_without_a_debug_variant_beside_it_passes(settings):
    foo = make_manifest(name="foo", variants=())
    assert of_rule(run(settings, foo, make_manifest(name="foo-debug")), policy.TAG_COLLISION) == []


# --- waivers: POL-011..013 -------------------------------------------------------------------------

def waiver(rule: str, expires: date = TODAY + timedelta(days=30)) -> Waiver:
    return Waiver(rule, "pure-Python wheels only, verified in INC-1234", expires)


def test_waived_finding_becomes_a_warning_that_says_so(settings):
    m = make_manifest(runtime="python", env=(("PYTHONUNBUFFERED", "1"),), waivers=(waiver("POL-009"),), **ALPINE)
    problems = run(settings, m)
    p = only(problems, policy.MUSL_RUNTIME)
    assert p.severity == "warning" and "[waived until 2026-12-28 by waivers.0: pure-Python" in p.message
    assert of_rule(run(settings, m), policy.WAIVER_UNUSED) == []
    m = make_manifest(user=User("root", 0, 0), waivers=(waiver("POL-004"),))  # root: no waiver undoes it
    assert only(run(settings, m), policy.NON_ROOT).severity == "error"
    assert "cannot be waived" in only(run(settings, m), policy.WAIVER_BAD_RULE).message


def test_expired_waiver_is_an_error_and_no_longer_waives(settings):
    m = make_manifest(runtime="python", env=(("PYTHONUNBUFFERED", "1"),),
                      waivers=(waiver("POL-009", TODAY - timedelta(days=1)),), **ALPINE)
    problems = run(settings, m)
    expired = only(problems, policy.WAIVER_EXPIRED)
    assert expired.severity == "error" and expired.key == "waivers.0.expires" and expired.line == 23
    assert "expired on 2026-11-27" in expired.message
    assert "waived" not in only(problems, policy.MUSL_RUNTIME).message


def test_waiver_is_in_force_on_its_expiry_day(settings):
    m = make_manifest(runtime="python", env=(("PYTHONUNBUFFERED", "1"),), waivers=(waiver("POL-009", TODAY),),
                      **ALPINE)
    problems = run(settings, m)
    assert of_rule(problems, policy.WAIVER_EXPIRED) == [] and only(problems, policy.MUSL_RUNTIME).severity == "warning"


def test_waiver_of_unknown_rule_is_an_error(settings):
    p = only(run(settings, make_manifest(waivers=(waiver("POL-999"),))), policy.WAIVER_BAD_RULE)
    assert p.severity == "error" and "'POL-999'" in p.message and "factory policy" in p.message


def test_waiver_of_unwaivable_rule_is_an_error_and_does_not_waive(settings):
    foo = make_manifest(name="foo")
    clash = make_manifest(name="foo-debug", waivers=(waiver("POL-010"),))
    problems = run(settings, foo, clash)
    assert "cannot be waived" in only(problems, policy.WAIVER_BAD_RULE).message
    assert only(problems, policy.TAG_COLLISION).severity == "error"


def test_unused_waiver_warns(settings):
    p = only(run(settings, make_manifest(waivers=(waiver("POL-001"),))), policy.WAIVER_UNUSED)
    assert p.severity == "warning" and "POL-001 pinned-tag is unused" in p.message


def test_waiver_of_artifact_rule_is_not_unused_at_manifest_stage(settings):
    assert run(settings, make_manifest(waivers=(waiver("POL-023"),))) == []


def test_valid_used_waiver_has_no_waiver_problem(settings):
    m = make_manifest(variants=(), waivers=(waiver("POL-018"),))
    problems = run(settings, m)
    assert [p.severity for p in problems] == ["warning"] and "waived until" in problems[0].message


# --- POL-014 ca-certificates -----------------------------------------------------------------------

@pytest.mark.parametrize("distro", ["debian", "ubuntu", "alpine"])
def test_package_manager_distro_without_ca_bundle_fails(settings, distro):
    p = only(run(settings, make_manifest(distro=distro, ca_certificates=False)), policy.CA_CERTIFICATES)
    assert p.severity == "error" and "ca_certificates: true" in p.message and "air-gapped" in p.message


@pytest.mark.parametrize("overrides", [{"distro": "distroless"}, {"distro": "scratch"}, {"distro": "debian",
                                                                                          "ca_certificates": True}])
def test_ca_rule_passes(settings, overrides):
    m = make_manifest(**{"ca_certificates": False, **overrides})
    assert of_rule(run(settings, m), policy.CA_CERTIFICATES) == []


def test_child_inherits_the_parents_ca_bundle(settings):
    parent = make_manifest(name="base")
    child = make_child(parent, ca_certificates=False)
    assert of_rule(run(settings, parent, child), policy.CA_CERTIFICATES) == []


# --- POL-015 uniform-user, POL-016 uniform-timezone ------------------------------------------------

def test_non_standard_uid_warns(settings):
    p = only(run(settings, make_manifest(user=User("app", 2000, 2000))), policy.UNIFORM_USER)
    assert p.severity == "warning" and "uid 2000" in p.message and "uid 1001 gid 1001" in p.message


def test_standard_uid_passes_and_root_is_left_to_pol_004(settings):
    assert of_rule(run(settings, make_manifest()), policy.UNIFORM_USER) == []
    assert of_rule(run(settings, make_manifest(user=User("root", 0, 0))), policy.UNIFORM_USER) == []


def test_non_standard_timezone_warns(settings):
    p = only(run(settings, make_manifest(timezone="Europe/Berlin")), policy.UNIFORM_TIMEZONE)
    assert "'Europe/Berlin'" in p.message and "'UTC'" in p.message


def test_env_tz_contradicting_timezone_warns(settings):
    p = only(run(settings, make_manifest(env=(("TZ", "Asia/Shanghai"),))), policy.UNIFORM_TIMEZONE)
    assert p.key == "env.TZ" and "remove env.TZ" in p.message


def test_standard_timezone_passes(settings):
    assert of_rule(run(settings, make_manifest(env=(("TZ", "UTC"),))), policy.UNIFORM_TIMEZONE) == []


# --- POL-017 python-unbuffered ---------------------------------------------------------------------

def test_python_without_unbuffered_warns(settings):
    p = only(run(settings, make_manifest(runtime="python")), policy.PYTHON_UNBUFFERED)
    assert 'PYTHONUNBUFFERED: "1"' in p.message


def test_python_with_unbuffered_passes_also_when_inherited(settings):
    assert of_rule(run(settings, make_manifest(runtime="python", env=(("PYTHONUNBUFFERED", "1"),))),
                   policy.PYTHON_UNBUFFERED) == []
    parent = make_manifest(name="python", runtime="python", env=(("PYTHONUNBUFFERED", "1"),))
    assert of_rule(run(settings, parent, make_child(parent, runtime="python")), policy.PYTHON_UNBUFFERED) == []


# --- POL-018 debug-variant, POL-019 official-image, POL-020 multi-arch -----------------------------

def test_missing_debug_variant_warns(settings):
    p = only(run(settings, make_manifest(variants=())), policy.DEBUG_VARIANT)
    assert p.severity == "warning" and "busybox" in p.message


def test_community_hub_image_warns_official_passes(settings):
    m = make_manifest(upstream=Upstream("docker.io/bitnami/python", "3.11.9", GOOD_DIGEST))
    assert "'docker.io/bitnami/python'" in only(run(settings, m), policy.OFFICIAL_IMAGE).message
    for image in ("python", "docker.io/library/python", "gcr.io/distroless/python3-debian12"):
        m = make_manifest(upstream=Upstream(image, "3.11.9", GOOD_DIGEST))
        assert of_rule(run(settings, m), policy.OFFICIAL_IMAGE) == []


def test_single_arch_warns(settings):
    p = only(run(settings, make_manifest(platforms=parse_all(["linux/amd64"]))), policy.MULTI_ARCH)
    assert "lack linux/arm64" in p.message


# --- artifact stage: POL-021..024 ------------------------------------------------------------------

def artifact(settings, manifest=None, **measured):
    return policy.check_artifact(manifest or make_manifest(), settings, TODAY, platform="linux/arm64", **measured)


def test_layer_budgets(settings):
    p = only(artifact(settings, added_layers=4, total_layers=21), policy.ADDED_LAYERS)
    assert "linux/arm64: 4 layers added over the base, budget 3" in p.message
    assert "21 layers in total, budget 20" in only(artifact(settings, total_layers=21), policy.TOTAL_LAYERS).message
    assert artifact(settings, added_layers=3, total_layers=20) == []


def test_size_overhead_budget(settings):
    p = only(artifact(settings, size_bytes=160_000_000, base_size_bytes=100_000_000), policy.SIZE_OVERHEAD)
    assert "60.0% over" in p.message and "budget 50%" in p.message and "160.0 MB" in p.message
    assert artifact(settings, size_bytes=150_000_000, base_size_bytes=100_000_000) == []
    assert artifact(settings, size_bytes=5_000_000, base_size_bytes=0) == []  # scratch: no ratio


def test_artifact_waiver_applies(settings):
    m = make_manifest(waivers=(waiver("POL-023"),))
    p = only(artifact(settings, m, size_bytes=300, base_size_bytes=100), policy.SIZE_OVERHEAD)
    assert p.severity == "warning" and "waived until" in p.message


def test_vulnerability_gate(settings):
    vulns = [Vulnerability("CVE-2024-0001", "openssl", "3.0.11", "3.0.13", "CRITICAL", ""),
             Vulnerability("CVE-2024-0002", "zlib", "1.2.13", "", "HIGH", ""),
             Vulnerability("CVE-2024-0003", "curl", "7.88.1", "", "critical", "")]
    problems = of_rule(artifact(settings, vulnerabilities=vulns), policy.VULNERABILITY)
    assert [p.severity for p in problems] == ["error", "error"]
    assert "CRITICAL CVE-2024-0001 in openssl 3.0.11 (fixed in 3.0.13): rebuild" in problems[0].message
    assert "no fix released yet" in problems[1].message
    high_too = with_policy(settings, fail_on_severities=("CRITICAL", "HIGH"))
    assert len(of_rule(artifact(high_too, vulnerabilities=vulns), policy.VULNERABILITY)) == 3
    assert artifact(settings, vulnerabilities=vulns[1:2]) == []


def test_vulnerabilities_cannot_be_waived_by_manifest(settings):
    m = make_manifest(waivers=(waiver("POL-024"),))
    vulns = [Vulnerability("CVE-2024-0001", "openssl", "3.0.11", "", "CRITICAL", "")]
    assert only(artifact(settings, m, vulnerabilities=vulns), policy.VULNERABILITY).severity == "error"


def test_nothing_measured_judges_nothing(settings):
    assert artifact(settings) == []


# --- all messages ----------------------------------------------------------------------------------

def test_every_message_starts_with_id_and_slug(settings):
    bad = make_manifest(
        name="bad", release="11", distro="alpine", runtime="python", ca_certificates=False, variants=(),
        upstream=Upstream("ghcr.io/x/y", "latest", "sha256:abc"), user=User("root", 0, 0), timezone="Asia/Tokyo",
        platforms=parse_all(["linux/amd64"]), eol=date(2031, 1, 1),
        waivers=(waiver("POL-999"), waiver("POL-001", date(2020, 1, 1))),
    )
    problems = run(settings, bad)
    labels = {r.label for r in policy.RULES}
    assert len(problems) >= 10
    for p in problems:
        assert p.message.split(":")[0] in labels, p.message
