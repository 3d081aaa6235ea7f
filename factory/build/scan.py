"""The vulnerability gate: scan one platform of a built OCI layout, then decide with the ignore file.

Scanners sit behind the ``Scanner`` protocol:

- ``TrivyScanner`` runs ``trivy image --scanners vuln`` on the platform view of the layout (see
  ``factory.sbom.platform_view``: trivy cannot select a platform in a layout itself). It never
  downloads: whether the vulnerability database is there is checked *before* running, from the
  files trivy needs (``<cache>/db/trivy.db`` and ``metadata.json``); when it is missing the report
  says ``db_available=False`` and the gate follows ``policy.scanner_db_unavailable``.
- ``RecordedScanner`` reads a report that ``trivy image --format json`` wrote elsewhere (an
  external security pipeline, or a test).

``gate`` blocks on the severities in ``policy.fail_on_severities`` unless an entry of the ignore
file (``vuln-ignore.yaml``: id, reason, expiry, optional image names) accepts the finding. An
expired entry is an error, never silently skipped: the risk must be looked at again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal, Protocol

from factory.adapters.tools import Runner
from factory.build.sbom import platform_view
from factory.core.errors import IgnoreFileError, Problem, ScanError, UsageError
from factory.core.model import SEVERITIES, Vulnerability
from factory.spec import schemas, yamlload

TRIVY_DB_SCHEMA = 2  # the DB schema trivy 0.76 reads; with another one it insists on downloading
SCAN_TIMEOUT = 900  # seconds
DB_UNAVAILABLE = "vulnerability database unavailable: image NOT scanned for CVEs"


# --- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanReport:
    scanner: str
    db_available: bool
    vulnerabilities: tuple[Vulnerability, ...] = ()
    db_updated_at: str | None = None  # when the scanner's database was built, if known
    note: str = ""  # why the database is unavailable, or where a recorded report came from


class Scanner(Protocol):
    name: str

    def scan(self, layout_dir: Path, platform: str) -> ScanReport:
        ...


def parse_trivy_report(doc: Any, source: str) -> tuple[Vulnerability, ...]:
    """The vulnerabilities of a ``trivy image --format json`` report (schema version 2).

    A report with no ``Results`` is an image with nothing to report (scratch, static binaries);
    a document that is not a trivy report at all is an error, never an empty result."""
    if not isinstance(doc, Mapping) or doc.get("SchemaVersion") != 2:
        raise ScanError(f"{source}: not a trivy JSON report (expected SchemaVersion: 2, as "
                        "written by `trivy image --format json`)")
    found: dict[tuple[str, str, str], Vulnerability] = {}
    for r, result in enumerate(doc.get("Results") or []):
        for v, item in enumerate(result.get("Vulnerabilities") or []):
            vuln = _vulnerability(item, f"{source}: Results[{r}].Vulnerabilities[{v}]")
            found.setdefault((vuln.id, vuln.package, vuln.installed_version), vuln)
    return tuple(found.values())


def _vulnerability(item: Any, where: str) -> Vulnerability:
    if not isinstance(item, Mapping):
        raise ScanError(f"{where}: expected an object, got {type(item).__name__}")
    missing = [k for k in ("VulnerabilityID", "PkgName", "InstalledVersion", "Severity") if not item.get(k)]
    if missing:
        raise ScanError(f"{where}: missing {', '.join(missing)}")
    severity = str(item["Severity"]).upper()
    return Vulnerability(
        id=str(item["VulnerabilityID"]), package=str(item["PkgName"]),
        installed_version=str(item["InstalledVersion"]), fixed_version=str(item.get("FixedVersion") or ""),
        severity=severity if severity in SEVERITIES else "UNKNOWN", title=str(item.get("Title") or ""),
    )


# --- scanners ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DbStatus:
    available: bool
    updated_at: str | None
    detail: str


def trivy_db_status(cache_dir: Path) -> DbStatus:
    """Whether trivy can scan offline with ``cache_dir``: the files it would otherwise download."""
    db, meta = cache_dir / "db" / "trivy.db", cache_dir / "db" / "metadata.json"
    fetch = (f"fetch it where the DB registry is reachable: `trivy image --download-db-only "
             f"--cache-dir {cache_dir}` (or copy a db/ folder there)")
    if not db.is_file() or db.stat().st_size == 0:
        return DbStatus(False, None, f"no trivy vulnerability database at {db}; {fetch}")
    try:
        info = json.loads(meta.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return DbStatus(False, None, f"{meta} is missing or unreadable ({e}); {fetch}")
    if not isinstance(info, dict) or info.get("Version") != TRIVY_DB_SCHEMA:
        version = info.get("Version") if isinstance(info, dict) else None
        return DbStatus(False, None, f"{meta}: database schema {version!r}, trivy needs "
                                     f"{TRIVY_DB_SCHEMA}; {fetch}")
    return DbStatus(True, info.get("UpdatedAt"), f"trivy database at {db}")


class TrivyScanner:
    name = "trivy"

    def __init__(self, runner: Runner, cache_dir: Path) -> None:
        self.runner = runner
        self.cache_dir = cache_dir

    def argv(self, view: Path) -> list[str]:
        # The DB is known to be present; never update it here (no network, and a scan must not
        # change its own inputs halfway through a publish).
        return ["trivy", "image", "--input", str(view), "--scanners", "vuln", "--format", "json",
                "--cache-dir", str(self.cache_dir), "--skip-db-update", "--skip-java-db-update",
                "--offline-scan", "--list-all-pkgs=false", "--quiet", "--skip-version-check",
                "--disable-telemetry"]

    def scan(self, layout_dir: Path, platform: str) -> ScanReport:
        db = trivy_db_status(self.cache_dir)
        if not db.available:
            return ScanReport(self.name, db_available=False, note=db.detail)
        with platform_view(layout_dir, platform) as view:
            proc = self.runner.run(self.argv(view), step=f"scan {platform}", timeout=SCAN_TIMEOUT)
        try:
            doc = json.loads(proc.stdout)
        except json.JSONDecodeError as e:
            raise ScanError(f"scan {platform}: trivy did not write JSON ({e})") from None
        return ScanReport(self.name, True, parse_trivy_report(doc, f"trivy {platform}"),
                          db_updated_at=db.updated_at, note=db.detail)


class RecordedScanner:
    """A report written earlier by ``trivy image --format json``, used for every platform."""

    name = "recorded"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def scan(self, layout_dir: Path, platform: str) -> ScanReport:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise UsageError(f"{self.path}: recorded scanner report not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ScanError(f"{self.path}: cannot read recorded scanner report: {e}") from None
        vulnerabilities = parse_trivy_report(doc, str(self.path))
        created = f" created {doc['CreatedAt']}" if doc.get("CreatedAt") else ""
        return ScanReport(self.name, True, vulnerabilities, note=f"recorded report {self.path}{created}")


# --- the ignore file ---------------------------------------------------------------------------

IGNORE_FILE = "vuln-ignore.yaml"
MIN_REASON = 10
# CVE ids, and GitHub advisory ids (whose letters come from a fixed 20-character alphabet).
ID_PATTERN = "^(CVE-[0-9]{4}-[0-9]{4,}|GHSA(-[23456789cfghjmpqrvwx]{4}){3})$"

# The only definition of the ignore file's structure; docs/gates.md shows it (a test checks).
IGNORE_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "vuln-ignore.yaml",
    "description": "Vulnerabilities the gate accepts, each with a reason and an expiry date.",
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "ignores": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["id", "reason", "expires"],
                "properties": {
                    "id": {"type": "string", "pattern": ID_PATTERN,
                           "description": "CVE-YYYY-NNNN or GHSA-xxxx-xxxx-xxxx, as the scanner reports it."},
                    "reason": {"type": "string", "minLength": MIN_REASON,
                               "description": "Why the finding is acceptable (not reachable, no fix, ...)."},
                    "expires": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                                "description": "YYYY-MM-DD; in force through that day, an error after it."},
                    "images": {"type": "array", "minItems": 1, "uniqueItems": True,
                               "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$"},
                               "description": "Manifest names it applies to; all images when absent."},
                },
            },
        },
    },
}

_HINTS = {
    "ignores": "expected a list of entries (- id: ..., reason: ..., expires: ...)",
    "id": "expected CVE-YYYY-NNNN or GHSA-xxxx-xxxx-xxxx",
    "reason": f"say why this is acceptable, in at least {MIN_REASON} characters",
    "expires": "expected a date YYYY-MM-DD",
    "images": "expected a list of manifest names, e.g. [debian-12-slim]",
}


@dataclass(frozen=True)
class Ignore:
    id: str
    reason: str
    expires: date
    images: tuple[str, ...] = ()  # empty: every image
    where: str = ""  # "vuln-ignore.yaml:12", for messages

    def applies(self, vuln: Vulnerability, image: str) -> bool:
        return vuln.id.upper() == self.id.upper() and (not self.images or image in self.images)


def load_ignores(path: Path, today: date) -> list[Ignore]:
    """The entries of an ignore file; a missing or empty file means none. Raises IgnoreFileError
    with every problem (structure, bad dates, expired entries, duplicates) at once."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise UsageError(f"{path}: cannot read ignore file: {e}") from None
    if all(not line.strip() or line.lstrip().startswith(b"#") for line in data.splitlines()):
        return []  # empty, or only comments: nothing is ignored
    doc, problems = yamlload.load(data, str(path))
    if doc is None:
        raise IgnoreFileError(problems)
    problems += _structure_problems(doc, str(path))
    ignores, meaning = _entries(doc, str(path), today, skip=_broken_entries(problems))
    problems += meaning
    if problems:
        raise IgnoreFileError(sorted(problems, key=lambda p: p.line or 0))
    return ignores


_WORDS = schemas.Words(IGNORE_SCHEMA, hints=_HINTS)


def _structure_problems(doc: yamlload.Document, path: str) -> list[Problem]:
    validator = schemas.Validator(IGNORE_SCHEMA)
    out: list[Problem] = []
    for error in sorted(validator.iter_errors(doc.data), key=lambda e: [str(p) for p in e.absolute_path]):
        for key, message in schemas.explain(error, _WORDS, doc.written):
            problem = Problem(path, doc.line_of(key), key, message)
            if problem not in out:  # jsonschema reports a missing key once per `required` check
                out.append(problem)
    return out


def _broken_entries(problems: list[Problem]) -> set[int] | None:
    """Indexes of entries with structure problems (None: the list itself is broken)."""
    broken: set[int] = set()
    for p in problems:
        parts = p.key.split(".")
        if parts[0] == "ignores":
            if len(parts) < 2 or not parts[1].isdigit():
                return None
            broken.add(int(parts[1]))
    return broken


def _entries(doc: yamlload.Document, path: str, today: date,
             skip: set[int] | None) -> tuple[list[Ignore], list[Problem]]:
    """Meaning, on the entries whose structure is right: real dates, not expired, no entry
    repeated for the same image. Reported together with the structure problems of the others."""
    ignores: list[Ignore] = []
    problems: list[Problem] = []
    if skip is None:
        return ignores, problems
    for i, raw in enumerate(doc.data.get("ignores") or []):
        if i in skip:
            continue
        key = f"ignores.{i}"
        line = doc.lines.get(f"{key}.expires") or doc.lines.get(key)
        try:
            expires = date.fromisoformat(raw["expires"])
        except ValueError:
            problems.append(Problem(path, line, f"{key}.expires", f"{raw['expires']!r} is not a real date"))
            continue
        where = f"{path}:{doc.lines.get(key)}" if doc.lines.get(key) else path
        if expires < today:  # in force through its expires day, like a manifest's waivers
            problems.append(Problem(path, line, f"{key}.expires",
                                    f"ignore of {raw['id']} expired on {expires.isoformat()}: look at the "
                                    "finding again, then fix it or renew the entry with a new reason "
                                    "and date"))
        entry = Ignore(raw["id"], raw["reason"], expires, tuple(raw.get("images") or ()), where)
        earlier = next((e for e in ignores if _overlap(e, entry)), None)
        if earlier:
            scope = ", ".join(sorted(set(earlier.images) & set(entry.images))) or "all images"
            problems.append(Problem(path, doc.lines.get(key), f"{key}.id",
                                    f"{entry.id} is already ignored for {scope} at {earlier.where}; "
                                    "keep one entry per image"))
        ignores.append(entry)
    return ignores, problems


def _overlap(a: Ignore, b: Ignore) -> bool:
    """Same finding, and some image both apply to (no images = every image)."""
    same_images = not a.images or not b.images or bool(set(a.images) & set(b.images))
    return a.id.upper() == b.id.upper() and same_images


# --- the gate ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    passed: bool
    blocking: list[Vulnerability]
    ignored: list[tuple[Vulnerability, Ignore]]
    counts: dict[str, int]  # by severity, over everything found (ignored included)
    messages: list[str]
    db_available: bool = True
    fail_on: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """For the publish report (JSON)."""
        return {
            "passed": self.passed, "db_available": self.db_available, "fail_on": list(self.fail_on),
            "counts": self.counts, "messages": self.messages,
            "blocking": [asdict(v) for v in self.blocking],
            "ignored": [{**asdict(v), "reason": ig.reason, "expires": ig.expires.isoformat(),
                         "where": ig.where} for v, ig in self.ignored],
        }


def gate(report: ScanReport, *, image: str, fail_on: Sequence[str], ignores: Iterable[Ignore],
         db_unavailable: Literal["fail", "warn"]) -> GateResult:
    """Decide whether ``image`` may be published given one scan report.

    Blocking: a finding whose severity is in ``fail_on`` and that no ignore entry for this image
    accepts. Without a database nothing was scanned: ``db_unavailable`` decides, loudly."""
    if db_unavailable not in ("fail", "warn"):
        raise UsageError(f"scanner_db_unavailable must be 'fail' or 'warn', not {db_unavailable!r}")
    severities = tuple(s.upper() for s in fail_on)
    unknown = [s for s in severities if s not in SEVERITIES]
    if unknown:
        raise UsageError(f"fail_on_severities: unknown severity {unknown[0]!r}; use {', '.join(SEVERITIES)}")
    if not report.db_available:
        return _no_database(report, db_unavailable, severities)

    ignores = list(ignores)
    blocking, ignored, messages = [], [], []
    for vuln in report.vulnerabilities:
        accepted = next((ig for ig in ignores if ig.applies(vuln, image)), None)
        if accepted:
            ignored.append((vuln, accepted))
            messages.append(f"ignored {vuln.severity} {vuln.id} in {vuln.package} until "
                            f"{accepted.expires.isoformat()} ({accepted.where}): {accepted.reason}")
        elif vuln.severity in severities:
            blocking.append(vuln)
            messages.append(f"blocking: {vuln}")
    counts = {s: n for s in SEVERITIES if (n := sum(v.severity == s for v in report.vulnerabilities))}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no vulnerabilities"
    verdict = f"{len(blocking)} blocking finding(s)" if blocking else "passed"
    messages.append(f"{image}: {summary} ({report.scanner}); gate fails on "
                    f"{', '.join(severities) or 'nothing'}: {verdict}")
    if blocking:
        messages.append("fix: rebuild on a patched upstream or package, or add an entry with a reason "
                        f"and an expiry date to {IGNORE_FILE}")
    return GateResult(not blocking, blocking, ignored, counts, messages, True, severities)


def _no_database(report: ScanReport, mode: str, severities: tuple[str, ...]) -> GateResult:
    why = f" ({report.note})" if report.note else ""
    if mode == "fail":
        message = (f"ERROR: {DB_UNAVAILABLE}{why}; failing as policy.scanner_db_unavailable is "
                   "'fail' (set it to 'warn', or FACTORY_SCANNER_DB_UNAVAILABLE=warn, only where "
                   "images are scanned elsewhere)")
    else:
        message = (f"WARNING: {DB_UNAVAILABLE}{why}; passing only because "
                   "policy.scanner_db_unavailable is 'warn'")
    return GateResult(mode == "warn", [], [], {}, [message], False, severities)
