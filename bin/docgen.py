"""Write docs/manifests.md from the manifest JSON Schema, the only definition of the format.

    python bin/docgen.py            # rewrite docs/manifests.md
    python bin/docgen.py --check    # exit 1 if the committed file differs (CI, unit test)

Defaults for optional keys come from the ``defaults`` of config.schema.json (what factory.yaml
gives when it does not override them); expected forms come from ``manifest.PATTERN_WORDS``, the
same words the error messages use.

A developer's tool, kept out of the runtime package (the installed `factory` never needs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from factory.spec import manifest, schemas, yamlload
from factory.spec.schemas import Schema

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "manifests.md"
REGENERATE = "python bin/docgen.py"

# The full example. A unit test loads it through factory.manifest: it must stay valid.
EXAMPLE = """\
# One file per org image: manifests/<name>.yaml, and the file name must match `name`.
apiVersion: factory/v1
name: python-3.11-slim-bookworm      # the tag prefix: python-3.11-slim-bookworm-v1.0.<patch>
version: "1.0"                       # major.minor, quoted; the patch is assigned at publish
description: Python 3.11 on Debian 12 slim, hardened
upstream:                            # exactly one of upstream / parent
  image: docker.io/library/python
  tag: 3.11.16-slim-bookworm
  # The index digest, from docker-library/repo-info repos/python/remote/3.11.16-slim-bookworm.md
  digest: sha256:c425d915a89a6dcd3183b1797ad9bd8878caff5a417f6371c8df93c8ea8b727f
# parent: debian-12-slim             # instead of upstream: build FROM another org image
distro: debian
release: "12"
runtime: python
platforms: [linux/amd64, linux/arm64]
timezone: UTC
user: {name: app, uid: 1001, gid: 1001}
ca_certificates: true                # the public CA bundle; the org CAs (factory.yaml) are trusted anyway
certificates:                        # CA files this image trusts besides the org's (docs/certificates.md)
  additional: [certs/payments-ca.pem]
env:
  PYTHONUNBUFFERED: "1"              # quote numbers: env values are text
packages: [tzdata]
labels:
  org.example.team: platform
licenses: PSF-2.0
eol: 2027-10-31                      # may tighten, never extend, the distro's end of life
variants:
  debug:
    packages: [curl, jq, procps]
    env: {DEBUG: "1"}
tests:
  - name: python runs
    run: [python3, -c, "print('ok')"]
    expect_stdout: ok
    expect_exit: 0
# waivers:                           # only with a reason and an expiry date
#   - rule: POL-006
#     reason: migration to Debian 13 is scheduled for Q1
#     expires: 2027-03-31
# deprecated:                        # app teams are told to move (catalog, verify, check-dockerfile)
#   successor: python-3.12-slim-bookworm
#   reason: Python 3.11 ends its security support in October 2027
"""

# Where a manifest key's default comes from factory.yaml (config.schema.json), not the manifest schema.
_CONFIG_DEFAULTS = {
    "timezone": ("defaults", "timezone"),
    "user": ("defaults", "user"),
    "ca_certificates": ("defaults", "ca_certificates"),
    "licenses": ("defaults", "licenses"),
    "platforms": ("platforms",),
}

_CHECKS = """\
## Checks beyond the schema

After the schema, `factory validate` checks what a schema cannot, and reports all of it at once:

- the file is named `<name>.yaml` (or `.yml`) after its `name`;
- `name` is unique across all manifests;
- `parent` names a manifest that exists (a single file given on the command line finds its
  parents in `manifests_dir`), and the parents form no cycle;
- `eol` and `waivers[].expires` are real calendar dates (`2028-02-30` is not);
- every `platforms` entry is a known platform, and no platform is listed twice under two spellings
  (`linux/arm64` and `linux/aarch64`);
- then the policy rules in [policy.md](policy.md) (errors and warnings).

The YAML reader refuses, before any of this: files over {max_kib} KiB, text that is not UTF-8,
nesting deeper than {depth} levels, more than {aliases} aliases (`*name`), merge keys (`<<`),
tags such as `!!python/object`, duplicate keys (YAML would silently keep one), and a top level
that is not a mapping. Dates may be written quoted or not: `eol: 2028-06-30` stays text until the
factory reads it, so both spellings mean the same.

Every problem is printed as `path:line: key.path: message`, for example:

```text
manifests/python.yaml:4: version: expected text, got a number (1.10); quote it: "1.10"
manifests/python.yaml:9: upstream.digets: unknown key 'digets'; did you mean 'digest'?
```
"""


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    required: str
    default: str
    form: str
    description: str


def _resolved(node: Schema) -> Schema:
    return schemas.resolve_ref(node, schemas.load("manifest"))


def rows() -> list[Row]:
    """One row per key, nested keys as dotted paths (list items as `tests[].name`)."""
    out: list[Row] = []
    _walk(schemas.load("manifest"), "", out)
    return out


def _walk(node: Schema, prefix: str, out: list[Row]) -> None:
    required = set(node.get("required", ()))
    for key, written in node.get("properties", {}).items():
        sub = _resolved(written)
        path = f"{prefix}{key}"
        out.append(Row(path, _type(sub), _required(prefix, key, required), _default(path, sub),
                       _form(sub), sub.get("description", "")))
        if sub.get("type") == "object" and "properties" in sub:
            _walk(sub, f"{path}.", out)
        items = _resolved(sub.get("items", {}))
        if items.get("type") == "object":
            _walk(items, f"{path}[].", out)


def _type(node: Schema) -> str:
    kind = str(node.get("type"))
    if kind == "array":
        return f"list of {_type(_resolved(node.get('items', {})))}"
    if kind == "object" and "properties" not in node:
        return f"mapping of text to {_type(_resolved(node.get('additionalProperties', {})))}"
    if kind == "object":
        return "mapping"
    if "enum" in node or "const" in node:
        return "text"
    return {"string": "text", "integer": "integer", "boolean": "boolean", "number": "number"}.get(kind, "any")


def _required(prefix: str, key: str, required: set[str]) -> str:
    if not prefix and key in ("upstream", "parent"):
        return "one of upstream, parent"
    return "yes" if key in required else ""


def _default(path: str, node: Schema) -> str:
    if path in _CONFIG_DEFAULTS:
        where = _CONFIG_DEFAULTS[path]
        value = _config_default(where)
        return f"{_yaml(value)} (factory.yaml `{'.'.join(where)}`)"
    if "default" in node:
        return _yaml(node["default"])
    return ""


def _config_default(where: tuple[str, ...]) -> object:
    node = schemas.load("config")
    for key in where:
        node = node["properties"][key]
    return node["default"]


def _form(node: Schema) -> str:
    parts = []
    if "const" in node:
        parts.append(f"`{node['const']}`")
    if "enum" in node:
        parts.append("one of " + ", ".join(f"`{v}`" for v in node["enum"]))
    if "pattern" in node:
        parts.append(manifest.PATTERN_WORDS[node["pattern"]])
    if "propertyNames" in node:
        names = node["propertyNames"]
        parts.append(f"keys: {manifest.PATTERN_WORDS[names['pattern']]}")
        values = _resolved(node.get("additionalProperties", {}))
        if "pattern" in values:
            parts.append(f"values: {manifest.PATTERN_WORDS[values['pattern']]}")
    items = _resolved(node.get("items", {}))
    if "pattern" in items:
        parts.append(f"items: {manifest.PATTERN_WORDS[items['pattern']]}")
    for keyword, words in (("minLength", "at least {} characters"), ("maxLength", "at most {} characters"),
                           ("minimum", "at least {}"), ("maximum", "at most {}"),
                           ("minItems", "at least {} item(s)"), ("maxItems", "at most {} items"),
                           ("maxProperties", "at most {} keys")):
        if keyword in node:
            parts.append(words.format(node[keyword]))
    if node.get("uniqueItems"):
        parts.append("no repeats")
    return "; ".join(parts)


def _yaml(value: object) -> str:
    """A default as YAML flow text: `UTC`, `true`, `[linux/amd64, linux/arm64]`, `{name: app, ...}`."""
    if isinstance(value, dict):
        return "`{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}`"
    if isinstance(value, list):
        return "`[" + ", ".join(_plain(v) for v in value) + "]`"
    return f"`{_plain(value)}`"


def _plain(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render() -> str:
    header = (
        f"<!-- Generated by `{REGENERATE}` from factory/spec/schema/manifest.schema.json;"
        " do not edit by hand. -->\n\n"
    )
    intro = (
        "# Manifests\n\n"
        "One YAML file per org base image, in `manifests/` (`manifests_dir` in factory.yaml).\n"
        "The format is defined by the JSON Schema (Draft 2020-12) in\n"
        "[`factory/spec/schema/manifest.schema.json`](../factory/spec/schema/manifest.schema.json), reproduced at\n"
        "the end of this page; unknown keys are errors. Check manifests with\n"
        "`factory validate [PATH...]` (default: all of `manifests/`).\n\n"
        f"This page is generated: change the schema, then run `{REGENERATE}`. A unit test fails\n"
        "when the committed page is stale.\n\n"
    )
    table = ["## Keys\n",
             "| Key | Type | Required | Default | Form | Description |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows():
        table.append("| " + " | ".join(_cell(c) for c in (f"`{r.key}`", r.type, r.required, r.default,
                                                             r.form, r.description)) + " |")
    checks = _CHECKS.format(max_kib=yamlload.MAX_BYTES // 1024, depth=yamlload.MAX_DEPTH,
                            aliases=yamlload.MAX_ALIASES)
    example = f"## Example\n\n```yaml\n{EXAMPLE}```\n"
    schema_text = json.dumps(schemas.load("manifest"), indent=2)
    published = f"## The schema\n\n```json\n{schema_text}\n```\n"
    return header + intro + "\n".join(table) + "\n\n" + checks + "\n" + example + "\n" + published


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bin/docgen.py", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/manifests.md is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.exists() else ""
        if current != text:
            print(f"{DOC_PATH} is stale: run {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
