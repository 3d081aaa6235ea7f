"""The vulnerability gate: scan one platform of a built OCI layout, then decide with the ignore file.

Scanners sit behind the ``Scanner`` protocol:

- ``TrivyScanner`` runs ``trivy image --scanners vuln`` on the platform view of the layout (see
  ``factory.sbom.platform_view``: trivy cannot select a platform in a layout itself), or ``trivy
  sbom`` on a published image's SBOM (``factory scan``). trivy never downloads: the database comes
  from ``scanner.db_repository`` through ``factory.build.vulndb`` once per run, and is checked
  *before* running (present, schema 2, not older than ``scanner.db_max_age_hours``); when it cannot
  be used the report says ``db_available=False`` and the gate follows ``policy.scanner_db_unavailable``.
- ``RecordedScanner`` reads a report that ``trivy image --format json`` wrote elsewhere (an
  external security pipeline, or a test).

``gate`` blocks on the severities in ``policy.fail_on_severities`` unless an entry of the ignore
file (``vuln-ignore.yaml``: id, reason, expiry, VEX status, optional image names) accepts the
finding. An expired entry waives nothing: it is reported, and its finding blocks again.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

from factory.adapters.tools import Runner
from factory.build import vulndb
from factory.build.sbom import platform_view
from factory.core.errors import IgnoreFileError, Problem, ScanError, UsageError
from factory.core.model import SEVERITIES, Vulnerability
from factory.oci.registry import Registry
from factory.spec import schemas, yamlload

SCAN_TIMEOUT = 900  # seconds
DB_UNAVAILABLE = "vulnerability database unavailable: image NOT scanned for CVEs"
SCANNED, NOT_SCANNED = "scanned", "not scanned"


# --- reports -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScanReport:
    scanner: str
    db_available: bool
    vulnerabilities: tuple[Vulnerability, ...] = ()
    db: Mapping[str, Any] | None = None  # vulndb.DbInfo.as_dict() at scan time: source, digest, updated_at, age
    note: str = ""  # why the database is unavailable, or where a recorded report came from
    scanner_version: str = ""
    scanned_at: str = ""  # RFC 3339, UTC


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


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class TrivyScanner:
    """trivy on a built layout (``scan``) or on a published image's SBOM (``scan_sbom``), with the
    database of ``scanner.db_repository`` fetched once for the scanner's life (one run), however many
    images and threads ask."""

    name = "trivy"

    def __init__(self, runner: Runner, cache_dir: Path, *, source: str = "",
                 registry_for: Callable[[str], Registry] | None = None,
                 max_age: timedelta = timedelta(hours=48), clock: Callable[[], datetime] = _now) -> None:
        self.runner = runner
        self.cache_dir = cache_dir
        self.source = source  # "": the cache's database as it is
        self.registry_for = registry_for
        self.max_age = max_age
        self.clock = clock
        self._lock = threading.Lock()
        self._db: vulndb.DbStatus | None = None
        self._version: str | None = None

    def database(self) -> vulndb.DbStatus:
        with self._lock:
            if self._db is None:
                self._db = self._prepare()
            return self._db

    def _prepare(self) -> vulndb.DbStatus:
        if self.source:
            if self.registry_for is None:
                raise UsageError("TrivyScanner: a db source needs a registry_for")
            try:
                vulndb.fetch(self.registry_for, self.source, self.cache_dir)
            except ScanError as e:
                return vulndb.DbStatus(False, str(e))
        return vulndb.status(self.cache_dir, max_age=self.max_age, now=self.clock())

    def version(self) -> str:
        with self._lock:
            if self._version is None:
                proc = self.runner.run(["trivy", "version", "--format", "json"], step="trivy version", timeout=60)
                try:
                    self._version = str(json.loads(proc.stdout).get("Version") or "unknown")
                except (json.JSONDecodeError, AttributeError):
                    self._version = "unknown"
            return self._version

    def argv(self, target: Path, *, kind: str = "image") -> list[str]:
        # The DB is known to be present; never update it here (a scan must not change its own
        # inputs halfway through a publish, and trivy's own download ignores our limits).
        source = ["image", "--input", str(target)] if kind == "image" else ["sbom", str(target)]
        return ["trivy", *source, "--scanners", "vuln", "--format", "json",
                "--cache-dir", str(self.cache_dir), "--skip-db-update", "--skip-java-db-update",
                "--offline-scan", "--list-all-pkgs=false", "--quiet", "--skip-version-check",
                "--disable-telemetry"]

    def scan(self, layout_dir: Path, platform: str) -> ScanReport:
        db = self.database()
        if not db.available:
            return self._unavailable(db)
        with platform_view(layout_dir, platform) as view:
            return self._run(self.argv(view), db, f"scan {platform}", f"trivy {platform}")

    def scan_sbom(self, sbom_file: Path, what: str) -> ScanReport:
        """A published image, again, from its CycloneDX SBOM (written by trivy: it knows the OS)."""
        db = self.database()
        if not db.available:
            return self._unavailable(db)
        return self._run(self.argv(sbom_file, kind="sbom"), db, f"rescan {what}", f"trivy sbom {what}")

    def _unavailable(self, db: vulndb.DbStatus) -> ScanReport:
        now = self.clock()
        return ScanReport(self.name, db_available=False, note=db.detail,
                          db=db.info.as_dict(now) if db.info else None, scanned_at=_stamp(now))

    def _run(self, argv: list[str], db: vulndb.DbStatus, step: str, source: str) -> ScanReport:
        version = self.version()
        proc = self.runner.run(argv, step=step, timeout=SCAN_TIMEOUT)
        try:
            doc = json.loads(proc.stdout)
        except json.JSONDecodeError as e:
            raise ScanError(f"{step}: trivy did not write JSON ({e})") from None
        now = self.clock()
        return ScanReport(self.name, True, parse_trivy_report(doc, source),
                          db=db.info.as_dict(now) if db.info else None, note=db.detail,
                          scanner_version=version, scanned_at=_stamp(now))


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
# OpenVEX v0.2.0's statuses a waiver may state, and its justifications for not_affected.
VEX_STATUSES = ("not_affected", "affected")
VEX_JUSTIFICATIONS = ("component_not_present", "vulnerable_code_not_present", "vulnerable_code_not_in_execute_path",
                      "vulnerable_code_cannot_be_controlled_by_adversary", "inline_mitigations_already_exist")
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
                                "description": "YYYY-MM-DD; in force through that day. After it the entry "
                                               "waives nothing (the gate names it) and is not stated as VEX."},
                    "images": {"type": "array", "minItems": 1, "maxItems": 500, "uniqueItems": True,
                               "items": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$"},
                               "description": "Manifest names it applies to; all images when absent."},
                    "status": {"enum": list(VEX_STATUSES), "default": "not_affected",
                               "description": "The OpenVEX status the signed VEX attestation states: not_affected "
                                              "(scanners that read VEX then suppress the finding) or affected "
                                              "(the risk is accepted for now; scanners still report it)."},
                    "justification": {"enum": list(VEX_JUSTIFICATIONS),
                                      "description": "not_affected only: the OpenVEX justification; the reason "
                                                     "is the impact statement."},
                    "action": {"type": "string", "minLength": MIN_REASON, "maxLength": 2000,
                               "description": "affected only (and required there): what is being done about "
                                              "it, the OpenVEX action statement."},
                },
                "allOf": [
                    {"if": {"properties": {"status": {"const": "affected"}}, "required": ["status"]},
                     "then": {"required": ["action"], "properties": {"justification": {"not": {}}}},
                     "else": {"properties": {"action": {"not": {}}}}},
                ],
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
    "status": f"expected one of {', '.join(VEX_STATUSES)}",
    "justification": f"only status not_affected has one, one of {', '.join(VEX_JUSTIFICATIONS)}",
    "action": "status affected needs an action (what is being done), and only it has one",
}


@dataclass(frozen=True)
class Ignore:
    id: str
    reason: str
    expires: date
    images: tuple[str, ...] = ()  # empty: every image
    where: str = ""  # "vuln-ignore.yaml:12", for messages
    status: str = "not_affected"  # the VEX status (VEX_STATUSES)
    justification: str = ""
    action: str = ""
    expired: bool = False  # past its expires day when loaded: waives nothing, never stated as VEX

    def for_image(self, image: str) -> bool:
        return not self.images or image in self.images

    def matches(self, vuln: Vulnerability, image: str) -> bool:
        return vuln.id.upper() == self.id.upper() and self.for_image(image)

    def applies(self, vuln: Vulnerability, image: str) -> bool:
        """Whether this entry waives ``vuln`` in ``image``: it names both, and has not expired."""
        return self.matches(vuln, image) and not self.expired


def load_ignores(path: Path, today: date) -> list[Ignore]:
    """The entries of an ignore file; a missing or empty file means none. Raises IgnoreFileError
    with every problem (structure, bad dates, duplicates) at once. An entry past its expiry is
    returned marked ``expired``: it waives nothing, and the gate says so where it would have."""
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
        entry = Ignore(raw["id"], raw["reason"], expires, tuple(raw.get("images") or ()), where,
                       status=raw.get("status", "not_affected"), justification=raw.get("justification", ""),
                       action=raw.get("action", ""),
                       expired=expires < today)  # in force through its expires day, like a manifest's waivers
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
    report: ScanReport | None = None  # what was scanned with, for the record

    @property
    def status(self) -> str:
        return SCANNED if self.db_available else NOT_SCANNED

    def as_dict(self) -> dict[str, Any]:
        """For the publish report (JSON), the conformance predicate and the rescan record: what was
        scanned with (scanner, version, database), the status and why, counts and every finding."""
        r = self.report
        return {
            "status": self.status, "reason": "" if self.db_available else (r.note if r else DB_UNAVAILABLE),
            "scanner": {"name": r.scanner if r else "", "version": r.scanner_version if r else ""},
            "db": dict(r.db) if r and r.db else None, "scanned_at": r.scanned_at if r else "",
            "passed": self.passed, "db_available": self.db_available, "fail_on": list(self.fail_on),
            "counts": self.counts, "messages": self.messages,
            "blocking": [asdict(v) for v in self.blocking],
            "ignored": [{**asdict(v), "reason": ig.reason, "expires": ig.expires.isoformat(),
                         "where": ig.where, "status": ig.status} for v, ig in self.ignored],
            "waived": [{"id": i, "expires": e} for i, e in sorted({(ig.id, ig.expires.isoformat())
                                                                    for _, ig in self.ignored})],
            "found": sorted({v.id for v in r.vulnerabilities}) if r else [],
        }


def gate(report: ScanReport, *, image: str, fail_on: Sequence[str], ignores: Iterable[Ignore],
         db_unavailable: Literal["fail", "warn"]) -> GateResult:
    """Decide whether ``image`` may be published given one scan report.

    Blocking: a finding whose severity is in ``fail_on`` and that no ignore entry for this image
    accepts (an expired entry accepts nothing). Without a database nothing was scanned:
    ``db_unavailable`` decides, loudly."""
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
        lapsed = next((ig for ig in ignores if ig.expired and ig.matches(vuln, image)), None)
        if accepted:
            ignored.append((vuln, accepted))
            messages.append(f"ignored {vuln.severity} {vuln.id} in {vuln.package} until "
                            f"{accepted.expires.isoformat()} ({accepted.where}): {accepted.reason}")
        elif vuln.severity in severities:
            blocking.append(vuln)
            expired = (f" (its ignore entry at {lapsed.where} expired on {lapsed.expires.isoformat()}: look at the "
                       "finding again, then fix it or renew the entry with a new reason and date)") if lapsed else ""
            messages.append(f"blocking: {vuln}{expired}")
    counts = {s: n for s in SEVERITIES if (n := sum(v.severity == s for v in report.vulnerabilities))}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no vulnerabilities"
    verdict = f"{len(blocking)} blocking finding(s)" if blocking else "passed"
    messages.append(f"{image}: {summary} ({report.scanner}); gate fails on "
                    f"{', '.join(severities) or 'nothing'}: {verdict}")
    if blocking:
        messages.append("fix: rebuild on a patched upstream or package, or add an entry with a reason "
                        f"and an expiry date to {IGNORE_FILE}")
    return GateResult(not blocking, blocking, ignored, counts, messages, True, severities, report)


def _no_database(report: ScanReport, mode: str, severities: tuple[str, ...]) -> GateResult:
    why = f" ({report.note})" if report.note else ""
    if mode == "fail":
        message = (f"ERROR: {DB_UNAVAILABLE}{why}; failing as policy.scanner_db_unavailable is "
                   "'fail' (set it to 'warn', or FACTORY_SCANNER_DB_UNAVAILABLE=warn, only where "
                   "images are scanned elsewhere)")
    else:
        message = (f"WARNING: {DB_UNAVAILABLE}{why}; passing only because "
                   "policy.scanner_db_unavailable is 'warn'")
    return GateResult(mode == "warn", [], [], {}, [message], False, severities, report)


def summary(per_platform: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The scan status of an image from its platforms' ``GateResult.as_dict()`` (or entries of an earlier
    summary): what the conformance predicate, ``factory verify`` and the catalog say. Scanned only when
    every platform was."""
    platforms = {p: {k: d.get(k) for k in ("status", "reason", "scanner", "db", "scanned_at", "counts",
                                           "waived", "found", "fail_on")}
                 | {"blocking": sorted(v["id"] if isinstance(v, Mapping) else str(v) for v in d.get("blocking") or [])}
                 for p, d in sorted(per_platform.items())}
    scanned = bool(platforms) and all(p["status"] == SCANNED for p in platforms.values())
    reasons = sorted({str(p["reason"]) for p in platforms.values() if p["status"] != SCANNED and p["reason"]})
    return {"status": SCANNED if scanned else NOT_SCANNED,
            "reason": "" if scanned else ("; ".join(reasons) or "no platform was scanned"),
            "platforms": platforms}


def describe(record: Mapping[str, Any]) -> str:
    """One line for people: "scanned 2026-12-01: 0 critical, 2 high (trivy 0.76.0, DB 2026-12-01 10:00)",
    or "NOT scanned: <why>"."""
    if record.get("status") != SCANNED:
        return f"NOT scanned: {record.get('reason') or 'no record'}"
    platforms = list((record.get("platforms") or {}).values())
    counts = {s: max(int((p.get("counts") or {}).get(s, 0)) for p in platforms) for s in SEVERITIES}
    when = min(str(p.get("scanned_at") or "") for p in platforms)[:10]
    shown = ", ".join(f"{counts[s]} {s.lower()}" for s in ("CRITICAL", "HIGH"))
    shown += "".join(f", {counts[s]} {s.lower()}" for s in ("MEDIUM", "LOW", "UNKNOWN") if counts[s])
    waived = sorted({str(w.get("id")) for p in platforms for w in p.get("waived") or [] if isinstance(w, dict)})
    first = platforms[0] if platforms else {}
    scanner = first.get("scanner") or {}
    db = first.get("db") or {}
    tool = f"{scanner.get('name', '')} {scanner.get('version', '')}".strip()
    db_text = f", DB {str(db.get('updated_at', ''))[:16].replace('T', ' ')}" if db else ""
    return (f"scanned {when}: {shown}" + (f" ({len(waived)} waived: {', '.join(waived)})" if waived else "")
            + (f" [{tool}{db_text}]" if tool else ""))
