"""The JSON Schema validator shared by manifests and factory.yaml, with two fixes over the stock one.

- ``pattern`` with ECMA-262 ``$``: Python's ``$`` also matches before a trailing newline, so
  ``name: "ok\\n"`` would pass ``^[a-z]+$`` and could break out of a Dockerfile line.
- ``number`` means a finite number: YAML's ``.nan`` and ``.inf`` pass every ``minimum`` and ``maximum``
  (a comparison with NaN is always false), so a budget of ``.nan`` would switch a gate off.
"""

from __future__ import annotations

import math
import re

import jsonschema
from jsonschema.exceptions import ValidationError


def _strict_pattern(validator, pattern, instance, schema_):
    if not validator.is_type(instance, "string"):
        return
    match = re.search(pattern, instance)
    if match is None or (pattern.endswith("$") and match.end() != len(instance)):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


def _finite_number(checker, instance) -> bool:
    return jsonschema.Draft202012Validator.TYPE_CHECKER.is_type(instance, "number") and math.isfinite(instance)


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _strict_pattern},
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("number", _finite_number),
)
