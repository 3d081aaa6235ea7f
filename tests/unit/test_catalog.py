"""The catalog: collection from a registry (in-memory here; the real one in tests/integration), EOL
status, the data model rendered as a site whose every link resolves, and catalog.json against its
schema."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import jsonschema
import pytest

from factory.consume import catalog, site
from factory.consume.catalog import Collector, eol_status, floating_tags_of, prefixes_in
from factory.consume.changelog import PackageVersion, VersionChange
from factory.spec import manifest
from tests import bintools
from tests.unit.catalog_fakes import FakeRegistry, FakeSigner, bom, labels, settings

catalogdoc = bintools.load("catalogdoc")

TODAY = date(2026, 12, 1)
NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
TARGET = "127.0.0.1:5000/myorg/base"
UPSTREAM = "127.0.0.1:5000/upstream/debian"
AMD, ARM = "linux/amd64", "linux/arm64"

DEB_MANIFEST = """\
apiVersion: factory/v1
name: deb
version: "1.0"
description: Debian 12 <b>hardened</b>
upstream: {{image: {upstream}, tag: "12", digest: "{digest}"}}
distro: debian
release: "12"
eol: "2027-03-31"
variants:
  debug: {{packages: [curl]}}
"""
PY_MANIFEST = """\
apiVersion: factory/v1
name: py
version: "1.0"
description: Python on deb
parent: deb
distro: debian
release: "12"
"""
NEW_MANIFEST = DEB_MANIFEST.replace("name: deb", "name: new").replace("variants:\n  debug: {packages: [curl]}\n", "")


class World:
    """A registry holding two upstream versions, deb 1.0.0 and 1.0.1 (new upstream, curl -> c added,
    a upgraded), deb's debug variant on 1.0.1, and py (child of deb 1.0.0): unsigned, no arm64 SBOM."""

    def __init__(self, tmp_path: Path) -> None:
        r = self.registry = FakeRegistry()
        self.u1, _ = r.image({AMD: ({}, [50_000_000]), ARM: ({}, [49_000_000])})
        self.u2, _ = r.image({AMD: ({}, [51_000_000]), ARM: ({}, [50_000_000])})
        r.tag("upstream/debian", "12", self.u2)
        up = f"{UPSTREAM}:12"
        self.deb0, self.deb0_p = r.image({p: (labels("deb", "1.0.0", up, self.u1, created="2026-11-01T00:00:00Z"),
                                              [size, 3_000_000]) for p, size in ((AMD, 50_000_000), (ARM, 49_000_000))})
        self.deb1, self.deb1_p = r.image({p: (labels("deb", "1.0.1", up, self.u2, created="2026-11-20T00:00:00Z"),
                                              [size, 3_500_000]) for p, size in ((AMD, 51_000_000), (ARM, 50_000_000))})
        self.dbg, self.dbg_p = r.image({p: (labels("deb-debug", "1.0.0", f"{TARGET}@{self.deb1}", self.deb1,
                                                   variant="debug"), [size, 3_500_000, 9_000_000])
                                        for p, size in ((AMD, 51_000_000), (ARM, 50_000_000))})
        self.py, self.py_p = r.image({p: (labels("py", "1.0.0", f"{TARGET}@{self.deb0}", self.deb0),
                                          [size, 3_000_000, 20_000_000])
                                      for p, size in ((AMD, 50_000_000), (ARM, 49_000_000))})
        for tag, digest in {"deb-v1.0.0": self.deb0, "deb-v1.0.1": self.deb1, "deb-v1.0": self.deb1,
                            "deb-v1": self.deb1, "deb": self.deb1, "deb-debug-v1.0.0": self.dbg,
                            "deb-debug-v1.0": self.dbg, "deb-debug-v1": self.dbg, "deb-debug": self.dbg,
                            "py-v1.0.0": self.py, "py-v1": self.py, "py": self.py,
                            f"{self.deb1.replace(':', '-')}.sig": self.deb1}.items():
            r.tag("myorg/base", tag, digest)
        self.sboms = {
            **{d: bom({"a": "1.0", "b": "1.0"}) for d in self.deb0_p.values()},
            **{d: bom({"a": "1.1", "b": "1.0", "c": "2.0"}) for d in self.deb1_p.values()},
            **{d: bom({"a": "1.1", "b": "1.0", "c": "2.0", "curl": "7.88"}) for d in self.dbg_p.values()},
            self.py_p[AMD]: bom({"a": "1.0", "b": "1.0", "python3": "3.11.2"}),  # no arm64 SBOM
        }
        self.settings = settings(tmp_path, {
            "deb": DEB_MANIFEST.format(upstream=UPSTREAM, digest=self.u2),
            "py": PY_MANIFEST,
            "new": NEW_MANIFEST.format(upstream=UPSTREAM, digest=self.u2),
        })
        self.signer = FakeSigner(self.settings, unsigned={self.py}, sboms=self.sboms)

    def collect(self) -> catalog.SiteCatalog:
        return Collector(self.settings, lambda host: self.registry, self.signer, manifest.load_all(self.settings),
                         today=TODAY, now=NOW).collect()


@pytest.fixture
def world(tmp_path) -> World:
    return World(tmp_path)


@pytest.fixture
def collected(world) -> catalog.SiteCatalog:
    return world.collect()


# --- pure helpers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("eol", "expected"), [
    (None, ("unknown", None)),
    (date(2028, 6, 30), ("supported", 577)),
    (date(2027, 5, 30), ("supported", 180)),  # one day outside a 179-day window
    (date(2027, 5, 29), ("warning", 179)),
    (date(2026, 12, 1), ("warning", 0)),  # the last supported day
    (date(2026, 11, 30), ("eol", -1)),
])
def test_eol_status(eol, expected):
    assert eol_status(eol, TODAY, warning_days=179) == expected


def test_eol_status_window_is_inclusive_like_policy_eol_soon():
    assert eol_status(date(2027, 5, 30), TODAY, warning_days=180) == ("warning", 180)


def test_prefixes_and_floating_tags():
    tags = ["a-v1.0.0", "a-v1.0", "a-v1", "a", "a-debug-v1.0.0", "a-debug", "ab-v1", "a-v1.2.3-rc1",
            "sha256-" + "1" * 64 + ".sig", "latest", "x.y_z-v0.1.10"]
    assert prefixes_in(tags) == ["a", "a-debug", "x.y_z"]
    assert floating_tags_of(tags, "a") == ["a", "a-v1", "a-v1.0"]
    assert floating_tags_of(tags, "a-debug") == ["a-debug"]


# --- collection ------------------------------------------------------------------------------


def test_images_in_order_with_debug_beside_prod_and_unpublished_manifests(collected):
    assert [(i.name, i.variant) for i in collected.images] == [("deb", "prod"), ("deb-debug", "debug"), ("py", "prod")]
    assert collected.unpublished == ("new",)
    assert collected.entry("deb").debug == "deb-debug"
    assert collected.entry("deb-debug").image == "deb"


def test_versions_newest_first_with_tags_dates_and_digests(collected, world):
    deb = collected.entry("deb")
    assert [v.version for v in deb.versions] == ["1.0.1", "1.0.0"]
    assert (deb.latest, deb.digest) == ("1.0.1", world.deb1)
    newest, oldest = deb.versions
    assert newest.tags == ("deb-v1.0", "deb-v1", "deb") == deb.floating_tags
    assert oldest.tags == ()
    assert (newest.created, oldest.created) == ("2026-11-20T00:00:00Z", "2026-11-01T00:00:00Z")
    assert (newest.digest, oldest.digest) == (world.deb1, world.deb0)
    assert {p.platform: p.digest for p in newest.platforms} == world.deb1_p


def test_changelog_against_the_previous_version(collected, world):
    newest, oldest = collected.entry("deb").versions
    assert oldest.changes is None
    c = newest.changes
    assert (c.previous, c.platform) == ("1.0.0", AMD)
    assert (c.base_changed, c.base_before, c.base_after) == (True, world.u1, world.u2)
    assert c.packages.added == (PackageVersion("c", "2.0"),)
    assert c.packages.upgraded == (VersionChange("a", "1.0", "1.1"),)
    assert (c.packages.removed, c.packages.downgraded, c.packages.unchanged) == ((), (), 1)


def test_sizes_layers_and_overhead_against_the_base(collected):
    amd = next(p for p in collected.entry("deb").versions[0].platforms if p.platform == AMD)
    assert amd.layers == 2 and amd.base_layers == 1
    assert amd.base_size is not None and amd.overhead == amd.size - amd.base_size
    assert 3_500_000 < amd.overhead < 3_600_000  # the added layer plus the config size difference
    assert amd.packages == 3


def test_bases_that_are_org_images_are_named(collected):
    assert collected.entry("deb-debug").versions[0].base.image == "deb"
    assert collected.entry("deb-debug").versions[0].base.version == "1.0.1"
    assert (collected.entry("py").versions[0].base.image,
            collected.entry("py").versions[0].base.version) == ("deb", "1.0.0")
    assert collected.entry("deb").versions[0].base.image is None


def test_unverified_signature_and_sbom_are_shown_not_hidden(collected, world):
    py = collected.entry("py").versions[0]
    assert py.signed is False
    assert {p.platform: p.packages for p in py.platforms} == {AMD: 3, ARM: None}
    assert any("does not verify" in n for n in py.notes)
    assert any(n.startswith(f"{ARM}: no verified cyclonedx attestation") for n in py.notes)
    assert collected.entry("deb").versions[0].signed is True


def test_sboms_are_read_only_through_verification(world, collected):
    attested = {ref.rsplit("@", 1)[1] for kind, ref in world.signer.calls if kind == "cyclonedx"}
    every_platform_image = {d for digests in (world.deb0_p, world.deb1_p, world.dbg_p, world.py_p)
                            for d in digests.values()}
    assert attested == every_platform_image
    assert {ref.rsplit("@", 1)[1] for kind, ref in world.signer.calls if kind == "verify"} == \
        {world.deb0, world.deb1, world.dbg, world.py}


def test_eol_comes_from_the_policy_computation(collected):
    deb, py = collected.entry("deb"), collected.entry("py")
    assert (deb.eol.date, deb.eol.status, deb.eol.days_left) == ("2027-03-31", "warning", 120)
    assert deb.eol.source == "this manifest's eol"
    assert (py.eol.date, py.eol.source) == ("2027-03-31", "the eol of ancestor 'deb'")  # inherited from the parent
    assert collected.entry("deb-debug").eol == deb.eol


def test_from_line_pins_the_major_tag_by_digest_and_verify_commands_name_the_sites_key(collected, world):
    deb = collected.entry("deb")
    assert deb.from_line == f"FROM {TARGET}:deb-v1@{world.deb1}"
    assert deb.verify_commands[0].startswith("cosign verify --key cosign.pub ")
    assert deb.verify_commands[0].endswith(f"{TARGET}@{world.deb1}")
    assert sum("--type cyclonedx" in c for c in deb.verify_commands) == 2  # one per platform
    assert collected.public_key == "cosign.pub"


def test_manifest_and_labels_fill_description_upstream_parent(collected, world):
    deb, py = collected.entry("deb"), collected.entry("py")
    assert deb.description == "Debian 12 <b>hardened</b>"
    assert (deb.upstream.image, deb.upstream.tag, deb.upstream.digest) == (UPSTREAM, "12", world.u2)
    assert (py.upstream, py.parent) == (None, "deb")


def test_an_image_without_a_local_manifest_still_appears(world):
    world.settings = settings(world.settings.root.parent / "other")  # no manifests at all
    result = Collector(world.settings, lambda host: world.registry, world.signer, {}, today=TODAY, now=NOW).collect()
    deb = result.entry("deb")
    assert (deb.manifest, deb.eol.status, deb.description) == (False, "unknown", "deb from its labels")


# --- catalog.json ----------------------------------------------------------------------------


def test_catalog_json_validates_against_its_schema(collected):
    doc = catalog.as_document(collected)
    jsonschema.Draft202012Validator.check_schema(catalog.schema())
    jsonschema.Draft202012Validator(catalog.schema()).validate(doc)
    assert doc["images"][0]["versions"][0]["changes"]["packages"]["added"] == [{"name": "c", "version": "2.0"}]


def test_the_schema_rejects_unknown_and_missing_fields(collected):
    validator = jsonschema.Draft202012Validator(catalog.schema())
    doc = catalog.as_document(collected)
    doc["images"][0]["surprise"] = 1
    assert any("surprise" in e.message for e in validator.iter_errors(doc))
    doc = catalog.as_document(collected)
    del doc["images"][0]["versions"][0]["digest"]
    assert any("'digest' is a required property" in e.message for e in validator.iter_errors(doc))


def test_every_model_field_is_in_the_schema():
    """The schema is the documented contract: no dataclass field may go undocumented."""
    import dataclasses

    from factory.consume import changelog

    documented = {path.rsplit(".", 1)[-1].removesuffix("[]") for path, _, _ in catalogdoc.schema_rows()}
    for cls in (catalog.SiteCatalog, catalog.ImageEntry, catalog.VersionEntry, catalog.PlatformEntry, catalog.Changes,
                catalog.Base, catalog.Eol, catalog.Upstream, changelog.PackageDiff):
        missing = {f.name for f in dataclasses.fields(cls)} - documented
        assert not missing, f"{cls.__name__}: {missing} not in catalog.schema.json"


# --- the site ----------------------------------------------------------------------------------


@pytest.fixture
def written(collected, world, tmp_path) -> Path:
    out = tmp_path / "site"
    site.write(collected, out, public_key_file=world.signer.public_key)
    return out


def test_the_site_has_every_file_and_every_image(written, collected):
    assert {p.relative_to(written).as_posix() for p in written.rglob("*") if p.is_file()} == {
        "index.html", "catalog.json", "README.md", "catalog.css", "cosign.pub",
        "images/deb.html", "images/deb-debug.html", "images/py.html"}
    index = (written / "index.html").read_text()
    for image in collected.images:
        assert f'id="{image.name}"' in index
        assert image.from_line in index
        assert image.verify_commands[0] in index
        assert f'href="{image.page}"' in index
    assert "Not published yet: new." in index


def test_every_relative_link_resolves_and_none_is_absolute(written):
    assert site.broken_links(written) == []
    links = [link for page in written.rglob("*.html") for link in site.links_in(page)]
    assert len(links) > 30 and any("#" in link for link in links)


def test_the_link_check_can_fail(written):
    (written / "images" / "extra.html").write_text(
        '<a href="../missing.html">x</a><a href="../index.html#nowhere">y</a><a href="https://example.com/">z</a>'
        '<a href="../index.html#deb">fine</a>')
    assert site.broken_links(written) == [
        "images/extra.html: ../missing.html", "images/extra.html: ../index.html#nowhere",
        "images/extra.html: https://example.com/"]


def test_debug_variant_is_marked_never_deploy_beside_its_prod_image(written):
    index = (written / "index.html").read_text()
    assert index.index('id="deb"') < index.index('id="deb-debug"') < index.index('id="py"')
    debug_card = index[index.index('id="deb-debug"'):index.index('id="py"')]
    assert "never deploy" in debug_card.lower()
    assert '<article class="image debug" id="deb-debug">' in index
    assert "Never deploy it" in (written / "images" / "deb-debug.html").read_text()


def test_image_page_lists_versions_newest_first_with_the_changelog(written, world):
    page = (written / "images" / "deb.html").read_text()
    assert page.index('id="v1.0.1"') < page.index('id="v1.0.0"')
    v101 = page[page.index('id="v1.0.1"'):page.index('id="v1.0.0"')]
    assert "added <b>c</b> 2.0" in v101
    assert "upgraded <b>a</b> 1.0 &rarr; 1.1" in v101 or "upgraded <b>a</b> 1.0 → 1.1" in v101
    assert "Base changed" in v101 and world.u1.split(":")[1][:12] in v101 and world.u2.split(":")[1][:12] in v101
    assert "First version" in page[page.index('id="v1.0.0"'):]


def test_eol_status_has_a_colour_class(written):
    index = (written / "index.html").read_text()
    assert 'class="badge eol-warning"' in index
    css = (written / "catalog.css").read_text()
    for status in catalog.EOL_STATUSES:
        assert f".eol-{status}" in css


def test_values_are_escaped(written):
    index = (written / "index.html").read_text()
    assert "Debian 12 &lt;b&gt;hardened&lt;/b&gt;" in index and "<b>hardened</b>" not in index


def test_no_javascript_and_a_phone_viewport(written):
    for page in written.rglob("*.html"):
        text = page.read_text().lower()
        assert "<script" not in text and "javascript:" not in text and " onclick" not in text
        assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in text
    assert "@media (max-width" in (written / "catalog.css").read_text()


def test_catalog_json_on_disk_is_the_validated_document(written, collected):
    doc = json.loads((written / "catalog.json").read_text())
    jsonschema.Draft202012Validator(catalog.schema()).validate(doc)
    assert [i["name"] for i in doc["images"]] == [i.name for i in collected.images]


def test_readme_summarises_every_image_with_its_from_line(written, collected):
    readme = (written / "README.md").read_text()
    for image in collected.images:
        assert f"| {image.name}" in readme and f"`{image.from_line}`" in readme
    assert "| deb-debug (debug: never deploy) |" in readme


def test_pages_of_images_that_disappeared_are_removed(written, collected, world):
    (written / "images" / "gone.html").write_text("old")
    site.write(collected, written, public_key_file=world.signer.public_key)
    assert not (written / "images" / "gone.html").exists()


def test_docs_field_table_is_current():
    assert catalogdoc.main(["--check"]) == 0, "docs/catalog.md is stale: run `python bin/catalogdoc.py --docs`"
    text = catalogdoc.DOC_PATH.read_text()
    for path, _, _ in catalogdoc.schema_rows():
        assert f"| `{path}` |" in text


# --- the CLI's argument checks (nothing reaches the registry or cosign) ----------------------------


def run_cli(argv, capsys):
    import structlog

    from factory import cli

    try:
        with pytest.raises(SystemExit) as e:
            cli.main(argv)
    finally:
        structlog.reset_defaults()  # the CLI points logging at capsys's stream, closed after this test
    out = capsys.readouterr()
    return e.value.code, out.out, out.err


@pytest.mark.parametrize("argv", [
    ["diff", "r/a:1", "r/b:2", "--platform", "plan9/z80"],
    ["catalog", "--out", "site", "--platform", "plan9/z80"],
])
def test_a_bad_platform_is_a_usage_error(argv, capsys, tmp_path):
    (tmp_path / "factory.yaml").write_text("")
    code, _, err = run_cli(["--config", str(tmp_path / "factory.yaml"), *argv], capsys)
    assert code == 2 and "plan9/z80" in err


def test_an_empty_registry_gives_an_empty_but_valid_site(world, tmp_path):
    result = Collector(world.settings, lambda host: FakeRegistry(), world.signer, manifest.load_all(world.settings),
                       today=TODAY, now=NOW).collect()
    assert (result.images, result.unpublished) == ((), ("deb", "new", "py"))
    site.write(result, tmp_path / "empty", public_key_file=world.signer.public_key)
    assert site.broken_links(tmp_path / "empty") == []
    assert "Not published yet: deb, new, py." in (tmp_path / "empty" / "index.html").read_text()


def test_a_missing_public_key_is_refused_rather_than_showing_everything_unsigned(world):
    from factory.core.errors import EnvironmentProblem

    Path(world.signer.public_key).unlink()
    with pytest.raises(EnvironmentProblem, match=r"public key .* not found"):
        world.collect()


def test_a_kms_key_is_named_in_the_commands_and_nothing_is_copied(world, tmp_path):
    result = Collector(world.settings, lambda host: world.registry, world.signer, manifest.load_all(world.settings),
                       today=TODAY, now=NOW, public_key="awskms:///alias/base-images").collect()
    assert result.public_key == "awskms:///alias/base-images"
    assert "--key awskms:///alias/base-images " in result.entry("deb").verify_commands[0]
    site.write(result, tmp_path / "kms")
    assert not (tmp_path / "kms" / "cosign.pub").exists() and site.broken_links(tmp_path / "kms") == []


@pytest.mark.parametrize(("size", "text"), [(None, "n/a"), (512, "0.5 kB"), (99_999, "100.0 kB"), (100_000, "0.1 MB"),
                                            (66_200_000, "66.2 MB")])
def test_sizes_read_as_decimal_units(size, text):
    assert site.megabytes(size) == text


@pytest.mark.parametrize(("overhead", "base", "text"), [(4_900_000, 61_000_000, "+4.9 MB (+8.0%)"),
                                                       (0, 10, "+0.0 MB (+0.0%)"),
                                                       (-1_000_000, 10_000_000, "-1.0 MB (-10.0%)"), (5, None, "n/a")])
def test_overhead_reads_in_megabytes_and_percent(overhead, base, text):
    assert site.overhead_text(overhead, base) == text
