"""factory.spec.manifest: a good manifest becomes the expected model; every check names file, line and key."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from factory.core.errors import ManifestError
from factory.core.model import ImageTest, Manifest, Upstream, User, Variant, Waiver
from factory.core.platforms import Platform
from factory.spec import config, manifest, schemas

DIGEST = "sha256:" + "c4" * 32

GOOD = f"""\
apiVersion: factory/v1
name: python-3.11
version: "1.2"
description: Python 3.11 on Debian 12 slim, hardened
upstream:
  image: docker.io/library/python
  tag: 3.11.9-slim-bookworm
  digest: {DIGEST}
distro: debian
release: "12"
runtime: python
platforms: [linux/amd64, linux/aarch64]
timezone: Europe/Berlin
user: {{name: svc, uid: 2000, gid: 2001}}
ca_certificates: false
env: {{PYTHONUNBUFFERED: "1", LANG: C.UTF-8}}
packages: [tzdata, curl=7.88.1-10+deb12u5]
labels: {{org.example.team: platform, org.example.cost: "42"}}
licenses: PSF-2.0
eol: 2028-06-30
variants:
  debug: {{packages: [busybox, curl, jq], env: {{DEBUG: "1"}}}}
tests:
  - name: python runs
    run: ["python3", "-c", "print('ok')"]
    expect_stdout: ok
  - name: exits 3
    run: [sh, -c, "exit 3"]
    expect_exit: 3
waivers:
  - rule: POL-006
    reason: the move to Debian 13 is planned for Q1
    expires: "2027-03-31"
"""


def minimal(name: str, *, parent: str | None = None, extra: str = "") -> str:
    source = (f"parent: {parent}\n" if parent else
              f"upstream: {{image: docker.io/library/debian, tag: 12-slim, digest: '{DIGEST}'}}\n")
    return (f"apiVersion: factory/v1\nname: {name}\nversion: \"1.0\"\ndescription: {name} image\n"
            f"{source}distro: debian\n{extra}")


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # messages show paths relative to the current folder
    (tmp_path / "manifests").mkdir()
    (tmp_path / "factory.yaml").write_text("manifests_dir: manifests\n")
    return tmp_path


def settings_for(root: Path, text: str = "manifests_dir: manifests\n") -> config.Settings:
    (root / "factory.yaml").write_text(text)
    return config.load(root / "factory.yaml", environ={})


def write(root: Path, name: str, text: str, folder: str = "manifests") -> Path:
    path = root / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(settings, paths=None) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        manifest.load_all(settings, paths)
    return [str(p) for p in caught.value.problems]


# --- a good manifest --------------------------------------------------------------------------------


def test_a_good_manifest_loads_into_the_expected_model(repo):
    path = write(repo, "python-3.11.yaml", GOOD)
    m = manifest.load_file(path, settings_for(repo))
    assert m == Manifest(
        path=path,
        name="python-3.11",
        version="1.2",
        description="Python 3.11 on Debian 12 slim, hardened",
        distro="debian",
        base=Upstream("docker.io/library/python", "3.11.9-slim-bookworm", DIGEST),
        release="12",
        runtime="python",
        platforms=(Platform("linux", "amd64"), Platform("linux", "arm64")),
        timezone="Europe/Berlin",
        user=User("svc", 2000, 2001),
        ca_certificates=False,
        env=(("LANG", "C.UTF-8"), ("PYTHONUNBUFFERED", "1")),
        packages=("tzdata", "curl=7.88.1-10+deb12u5"),
        labels=(("org.example.cost", "42"), ("org.example.team", "platform")),
        licenses="PSF-2.0",
        eol=date(2028, 6, 30),
        variants=(Variant("debug", ("busybox", "curl", "jq"), (("DEBUG", "1"),)),),
        tests=(ImageTest("python runs", ("python3", "-c", "print('ok')"), "ok", 0),
               ImageTest("exits 3", ("sh", "-c", "exit 3"), None, 3)),
        waivers=(Waiver("POL-006", "the move to Debian 13 is planned for Q1", date(2027, 3, 31)),),
    )
    assert (m.major, m.minor) == (1, 2)


def test_lines_point_at_each_key_and_list_item(repo):
    m = manifest.load_file(write(repo, "python-3.11.yaml", GOOD), settings_for(repo))
    assert m.line_of("upstream.digest") == 8
    assert m.line_of("tests.1.expect_exit") == 29
    assert m.line_of("tests.0") == 24
    assert m.line_of("env.LANG") == 16  # flow mappings share their line
    assert m.line_of("labels.org.example.team") == 18  # label keys contain dots: looked up whole


def test_optional_keys_take_their_defaults_from_factory_yaml(tmp_path):
    settings = settings_for(tmp_path, "manifests_dir: manifests\nplatforms: [linux/arm64]\n"
                                      "defaults:\n  timezone: Asia/Tokyo\n  user: {name: x, uid: 7, gid: 8}\n"
                                      "  ca_certificates: false\n  licenses: MIT\n")
    m = manifest.load_file(write(tmp_path, "base.yaml", minimal("base")), settings)
    assert m.platforms == (Platform("linux", "arm64"),)
    assert (m.timezone, m.user, m.ca_certificates, m.licenses) == ("Asia/Tokyo", User("x", 7, 8), False, "MIT")
    assert (m.runtime, m.release, m.eol, m.env, m.packages, m.labels) == ("none", None, None, (), (), ())
    assert (m.variants, m.tests, m.waivers, m.parent) == ((), (), (), None)


def test_built_in_defaults_apply_without_a_factory_yaml_entry(repo):
    m = manifest.load_file(write(repo, "base.yaml", minimal("base")), settings_for(repo))
    assert (m.timezone, m.user, m.ca_certificates, m.licenses) == ("UTC", User("app", 1001, 1001), True,
                                                                   "NOASSERTION")
    assert m.platforms == (Platform("linux", "amd64"), Platform("linux", "arm64"))


@pytest.mark.parametrize("written", ["2028-06-30", '"2028-06-30"', "'2028-06-30'"])
def test_dates_mean_the_same_quoted_or_not(repo, written):
    m = manifest.load_file(write(repo, "base.yaml", minimal("base", extra=f"eol: {written}\n")), settings_for(repo))
    assert m.eol == date(2028, 6, 30)


def test_yml_files_and_folders_are_found_and_other_files_ignored(repo):
    write(repo, "a.yaml", minimal("a"))
    write(repo, "b.yml", minimal("b"))
    write(repo, "notes.txt", "not a manifest")
    write(repo, "c.yaml", minimal("c"), folder="elsewhere")
    assert list(manifest.load_all(settings_for(repo))) == ["a", "b"]
    both = manifest.load_all(settings_for(repo),
                             [repo / "manifests", repo / "elsewhere/c.yaml", repo / "manifests/a.yaml"])
    assert list(both) == ["a", "b", "c"]


# --- the catalog -------------------------------------------------------------------------------------


@pytest.fixture
def family(repo) -> manifest.ManifestSet:
    # base <- mid <- leaf, base <- also, and an unrelated root
    write(repo, "base.yaml", minimal("base"))
    write(repo, "mid.yaml", minimal("mid", parent="base"))
    write(repo, "leaf.yaml", minimal("leaf", parent="mid"))
    write(repo, "also.yaml", minimal("also", parent="base"))
    write(repo, "zroot.yaml", minimal("zroot"))
    return manifest.load_all(settings_for(repo))


def names(manifests) -> list[str]:
    return [m.name for m in manifests]


def test_catalog_orders_parents_before_children_then_by_name(family):
    assert names(family.ordered()) == ["base", "zroot", "also", "mid", "leaf"]


def test_catalog_queries(family):
    assert names(family.children("base")) == ["also", "mid"]
    assert names(family.descendants("base")) == ["also", "mid", "leaf"]
    assert names(family.descendants("leaf")) == []
    assert names(family.ancestors("leaf")) == ["mid", "base"]
    assert names(family.ancestors("base")) == []
    with pytest.raises(KeyError):
        family.children("nope")


def test_catalog_is_a_read_only_mapping(family):
    assert "base" in family and len(family) == 5 and family["mid"].parent == "base"
    with pytest.raises(TypeError):
        family["x"] = family["base"]  # type: ignore[index]
    with pytest.raises(ValueError, match="two manifests named 'base'"):
        manifest.ManifestSet([family["base"], family["base"]])


def test_a_single_child_loads_its_parents_from_manifests_dir(repo):
    write(repo, "base.yaml", minimal("base"))
    write(repo, "mid.yaml", minimal("mid", parent="base"))
    write(repo, "unrelated.yaml", minimal("unrelated", extra="eol: 2028-02-30\n"))  # broken, not loaded
    child = write(repo, "leaf.yaml", minimal("leaf", parent="mid"), folder="elsewhere")
    catalog = manifest.load_all(settings_for(repo), [child])
    assert names(catalog.ordered()) == ["base", "mid", "leaf"]
    assert manifest.load_file(child, settings_for(repo)).parent == "mid"


# --- meaning across files --------------------------------------------------------------------------------


def test_every_problem_in_every_file_is_reported(repo):
    write(repo, "one.yaml", minimal("one", extra="user: {name: app, uid: -1, gid: 1001}\npakages: [curl]\n"))
    write(repo, "two.yaml", minimal("two").replace('"1.0"', "1.2") + "eol: 2028-02-30\n")
    problems = problems_of(settings_for(repo))
    assert problems == [
        "manifests/one.yaml:7: user.uid: -1 is less than the minimum 0",
        "manifests/one.yaml:8: pakages: unknown key 'pakages'; did you mean 'packages'?",
        'manifests/two.yaml:3: version: expected text, got a number (1.2); quote it: "1.2"',
        "manifests/two.yaml:7: eol: '2028-02-30' is not a calendar date (day is out of range for month)",
    ]


def test_duplicate_names_name_the_other_file(repo):
    write(repo, "base.yaml", minimal("base"))
    write(repo, "copy.yaml", minimal("base"))
    problems = problems_of(settings_for(repo))
    assert "manifests/copy.yaml:2: name: name 'base' is already used by manifests/base.yaml:2; " \
           "names must be unique" in problems
    assert any("the file must be named 'base.yaml'" in p for p in problems)


def test_a_missing_parent_suggests_the_closest_name(repo):
    write(repo, "debian-12-slim.yaml", minimal("debian-12-slim"))
    write(repo, "tools.yaml", minimal("tools", parent="debian-12-slm"))
    assert problems_of(settings_for(repo)) == [
        "manifests/tools.yaml:5: parent: parent 'debian-12-slm' is not a manifest "
        "(no debian-12-slm.yaml in manifests); did you mean 'debian-12-slim'?"]


def test_a_parent_cycle_is_named_in_each_file(repo):
    for name, parent in (("a", "c"), ("b", "a"), ("c", "b"), ("d", "a")):
        write(repo, f"{name}.yaml", minimal(name, parent=parent))
    assert problems_of(settings_for(repo)) == [
        "manifests/a.yaml:5: parent: parent cycle: a -> c -> b -> a",
        "manifests/b.yaml:5: parent: parent cycle: a -> c -> b -> a",
        "manifests/c.yaml:5: parent: parent cycle: a -> c -> b -> a",
    ]


def test_a_broken_parent_does_not_make_its_children_orphans(repo):
    write(repo, "base.yaml", minimal("base", extra="distro2: x\n"))
    write(repo, "child.yaml", minimal("child", parent="base"))
    assert problems_of(settings_for(repo)) == [
        "manifests/base.yaml:7: distro2: unknown key 'distro2'; did you mean 'distro'?"]


def test_a_path_that_does_not_exist_is_a_problem(repo):
    assert problems_of(settings_for(repo), [repo / "nope.yaml"]) == ["nope.yaml: no such file or folder"]


# --- structure messages -------------------------------------------------------------------------------


def test_upstream_and_parent_exactly_one(repo):
    write(repo, "both.yaml", minimal("both", extra="parent: other\n"))
    write(repo, "other.yaml", minimal("other"))
    write(repo, "neither.yaml", minimal("neither").replace("upstream", "# upstream"))
    assert problems_of(settings_for(repo)) == [
        "manifests/both.yaml:7: parent: exactly one of 'upstream' or 'parent' is required; this manifest has both",
        "manifests/neither.yaml: exactly one of 'upstream' or 'parent' is required: 'upstream' pins an "
        "external image, 'parent' names another org image",
    ]


def test_a_misplaced_key_says_where_it_belongs(repo):
    write(repo, "a.yaml", minimal("a", extra="uid: 1001\n"))
    assert problems_of(settings_for(repo)) == [
        "manifests/a.yaml:7: uid: unknown key 'uid' here; it belongs at user.uid"]


def test_image_with_a_tag_says_where_the_tag_goes(repo):
    write(repo, "a.yaml", minimal("a").replace("docker.io/library/debian", "debian:12"))
    [problem] = problems_of(settings_for(repo))
    assert problem.endswith("got 'debian:12'; put the tag in upstream.tag and the digest in upstream.digest")


def test_long_values_are_quoted_cut_short(repo):
    write(repo, "a.yaml", minimal("a").replace("12-slim", "12-slim" + "!" * 5000))
    [problem] = problems_of(settings_for(repo))
    assert "upstream.tag" in problem and "(5007 characters)" in problem and len(problem) < 400


def test_a_trailing_newline_cannot_slip_past_a_pattern():
    # Python's re `$` matches before a final newline; JSON Schema (ECMA-262) `$` does not.
    validator = schemas.validator("manifest").evolve(schema=schemas.load("manifest")["$defs"]["name"])
    assert validator.is_valid("debian")
    assert not validator.is_valid("debian\n")


def test_every_schema_pattern_is_described_in_words():
    patterns = set(re.findall(r'"pattern": ("(?:[^"\\]|\\.)*")', json.dumps(schemas.load("manifest"))))
    in_schema = {json.loads(p) for p in patterns}
    assert in_schema == set(manifest.PATTERN_WORDS), "PATTERN_WORDS must describe exactly the schema's patterns"
