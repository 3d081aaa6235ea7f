"""check-dockerfile's findings as SARIF 2.1.0, the format GitHub code scanning uploads
(``github/codeql-action/upload-sarif``): one rule per check, one result per finding, located at the
Dockerfile's ``FROM`` line. tests/data holds the SARIF 2.1.0 JSON schema the output is tested against.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from factory import __version__
from factory.consume.appcheck import RULES, Finding

SCHEMA_URI = "https://json.schemastore.org/sarif-2.1.0.json"
TOOL = "factory check-dockerfile"


def _uri(path: str) -> str:
    """A relative URI as code scanning wants it (forward slashes, no leading ./)."""
    return Path(path).as_posix().removeprefix("./")


def document(findings: Sequence[Finding], rules: Mapping[str, str] = RULES) -> dict[str, Any]:
    ids = list(rules)
    return {
        "$schema": SCHEMA_URI,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": TOOL, "version": __version__,
                "rules": [{"id": rule, "shortDescription": {"text": text},
                           "defaultConfiguration": {"level": "warning" if rule == "eol-soon" else "error"}}
                          for rule, text in rules.items()],
            }},
            "results": [{
                "ruleId": f.rule, "ruleIndex": ids.index(f.rule), "level": f.level,
                "message": {"text": f.message},
                "locations": [{"physicalLocation": {"artifactLocation": {"uri": _uri(f.path)},
                                                    "region": {"startLine": f.line}}}],
            } for f in findings],
        }],
    }


def dumps(findings: Sequence[Finding]) -> str:
    return json.dumps(document(findings), indent=2)
