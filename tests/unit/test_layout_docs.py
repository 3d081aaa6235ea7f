"""README's layout section is generated from the package's docstrings: it must be current and complete."""

from __future__ import annotations

from pathlib import Path

from tests import bintools

ROOT = Path(__file__).resolve().parents[2]


layoutdoc = bintools.load("layoutdoc")


def test_readme_layout_section_is_current():
    assert layoutdoc.main(["--check"]) == 0, "README.md's layout section is stale: run `python bin/layoutdoc.py`"


def test_every_module_of_the_package_is_listed():
    section = layoutdoc.render()
    for path in (ROOT / "factory").rglob("*.py"):
        if len(path.relative_to(ROOT / "factory").parts) > 2:
            continue  # a data package inside a stage (spec/schema/): not a module of the layout
        if path.name == "__init__.py":
            assert f"**`factory/{path.parent.name}/`**" in section or path.parent.name == "factory"
        elif path.parent.name == "factory":
            assert f"`factory/{path.name}`" in section
        else:
            assert f"`{path.parent.name}/{path.name}`" in section, f"{path} is not in the layout section"


def test_a_module_without_a_docstring_fails_the_check(tmp_path, monkeypatch):
    package = tmp_path / "factory"
    (package / "core").mkdir(parents=True)
    (package / "core" / "__init__.py").write_text('"""Below everything."""\n')
    (package / "core" / "bare.py").write_text("X = 1\n")
    readme = tmp_path / "README.md"
    readme.write_text(f"{layoutdoc.BEGIN}\n{layoutdoc.END}\n")
    monkeypatch.setattr(layoutdoc, "ROOT", tmp_path)
    monkeypatch.setattr(layoutdoc, "PACKAGE", package)
    monkeypatch.setattr(layoutdoc, "README", readme)
    assert layoutdoc.main(["--check"]) == 1


def test_a_stale_section_fails_the_check(tmp_path, monkeypatch):
    package = tmp_path / "factory"
    (package / "core").mkdir(parents=True)
    (package / "core" / "__init__.py").write_text('"""Below everything."""\n')
    (package / "core" / "errors.py").write_text('"""Every error class."""\n')
    readme = tmp_path / "README.md"
    readme.write_text(f"{layoutdoc.BEGIN}\n| `core/old.py` | gone |\n{layoutdoc.END}\n")
    for name, value in (("ROOT", tmp_path), ("PACKAGE", package), ("README", readme)):
        monkeypatch.setattr(layoutdoc, name, value)
    assert layoutdoc.main(["--check"]) == 1
    assert layoutdoc.main([]) == 0
    assert layoutdoc.main(["--check"]) == 0
    assert "`core/errors.py` | Every error class." in readme.read_text()
