"""docs/manifests.md is generated from the schema: it must be current, complete, and its example valid."""

from __future__ import annotations

import re

from factory.spec import config, manifest, schemas
from tests import bintools

docgen = bintools.load("docgen")


def test_the_committed_doc_is_current():
    assert docgen.DOC_PATH.read_text(encoding="utf-8") == docgen.render(), \
        f"docs/manifests.md is stale: run `{docgen.REGENERATE}` and commit the result"
    assert docgen.main(["--check"]) == 0


def test_the_doc_says_how_to_regenerate_it():
    assert docgen.REGENERATE in docgen.render().splitlines()[0]


def test_every_schema_key_has_a_row_with_a_description():
    rows = {r.key: r for r in docgen.rows()}
    expected = {"apiVersion", "upstream.digest", "user.uid", "variants.debug.packages", "tests[].expect_exit",
                "waivers[].expires", *schemas.load("manifest")["properties"]}
    assert expected <= set(rows)
    assert [k for k, r in rows.items() if not r.description] == []
    for key in rows:
        assert f"| `{key}` |" in docgen.render()


def test_defaults_come_from_the_config_schema():
    rows = {r.key: r for r in docgen.rows()}
    assert rows["timezone"].default == "`UTC` (factory.yaml `defaults.timezone`)"
    assert rows["user"].default == "`{name: app, uid: 1001, gid: 1001}` (factory.yaml `defaults.user`)"
    assert rows["platforms"].default == "`[linux/amd64, linux/arm64]` (factory.yaml `platforms`)"
    assert rows["tests[].expect_exit"].default == "`0`"


def test_the_example_in_the_doc_is_a_valid_manifest(tmp_path):
    text = docgen.DOC_PATH.read_text(encoding="utf-8")
    example = re.search(r"## Example\n\n```yaml\n(.*?)```", text, re.S)[1]
    name = re.search(r"^name: (\S+)", example, re.M)[1]
    (tmp_path / "factory.yaml").write_text("manifests_dir: .\n")
    path = tmp_path / f"{name}.yaml"
    path.write_text(example)
    m = manifest.load_file(path, config.load(tmp_path / "factory.yaml", environ={}))
    assert m.name == name and m.variant("debug") and m.tests and m.upstream.digest
    used = set(re.findall(r"^(\w+):", example, re.M))
    assert used == set(schemas.load("manifest")["properties"]) - {"parent", "waivers", "deprecated"}, \
        "the example shows every top-level key (parent, waivers and deprecated as comments)"
