"""Vulnerability reports, the ignore file and the gate (no process runs)."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from factory.build import vulndb
from factory.build.scan import (
    DB_UNAVAILABLE,
    IGNORE_SCHEMA,
    NOT_SCANNED,
    SCANNED,
    Ignore,
    RecordedScanner,
    ScanReport,
    TrivyScanner,
    Vulnerability,
    describe,
    gate,
    load_ignores,
    parse_trivy_report,
    summary,
)
from factory.core.errors import IgnoreFileError, ScanError, UsageError
from tests.unit.vulndb_fakes import DATA as DATA_DB
from tests.unit.vulndb_fakes import NOW, FakeDbRegistry, db_folder

DATA = Path(__file__).resolve().parents[1] / "data" / "trivy"
ROOT = Path(__file__).resolve().parents[2]
TODAY = date(2026, 11, 28)


# --- recorded trivy reports --------------------------------------------------------------------


def test_recorded_scanner_reads_a_trivy_report():
    report = RecordedScanner(DATA / "debian-openssl-critical.json").scan(Path("unused"), "linux/arm64")
    assert report.scanner == "recorded" and report.db_available
    assert report.vulnerabilities[0] == Vulnerability(
        id="CVE-2024-5535", package="libssl3", installed_version="3.0.11-1~deb12u1",
        fixed_version="3.0.14-1~deb12u1", severity="CRITICAL",
        title="openssl: SSL_select_next_proto buffer overread",
    )
    assert [(v.id, v.package, v.severity) for v in report.vulnerabilities] == [
        ("CVE-2024-5535", "libssl3", "CRITICAL"),
        ("CVE-2024-5535", "openssl", "CRITICAL"),
        ("CVE-2023-5363", "libssl3", "HIGH"),
        ("CVE-2024-0727", "libssl3", "MEDIUM"),
        ("CVE-2011-3374", "apt", "LOW"),
        ("CVE-2024-35195", "requests", "MEDIUM"),  # language packages are a second Result
    ]
    apt = report.vulnerabilities[4]
    assert apt.fixed_version == "" and "no fix yet" in str(apt)


def test_report_without_results_has_no_vulnerabilities():
    assert RecordedScanner(DATA / "debian-clean.json").scan(Path("."), "linux/amd64").vulnerabilities == ()
    assert parse_trivy_report({"SchemaVersion": 2, "ArtifactName": "scratch"}, "x") == ()


def test_the_same_finding_twice_is_reported_once():
    item = {"VulnerabilityID": "CVE-2024-1", "PkgName": "a", "InstalledVersion": "1", "Severity": "high"}
    doc = {"SchemaVersion": 2, "Results": [{"Vulnerabilities": [item]}, {"Vulnerabilities": [item]}]}
    (vuln,) = parse_trivy_report(doc, "x")
    assert vuln.severity == "HIGH"


@pytest.mark.parametrize("doc, complaint", [
    ({"Results": []}, "not a trivy JSON report"),
    ([], "not a trivy JSON report"),
    ({"SchemaVersion": 2, "Results": [{"Vulnerabilities": [{"PkgName": "a", "InstalledVersion": "1",
                                                             "Severity": "LOW"}]}]},
     r"Results\[0\].Vulnerabilities\[0\]: missing VulnerabilityID"),
    ({"SchemaVersion": 2, "Results": [{"Vulnerabilities": ["CVE-1"]}]}, "expected an object"),
])
def test_malformed_reports_are_errors(doc, complaint):
    with pytest.raises(ScanError, match=complaint):
        parse_trivy_report(doc, "report.json")


def test_recorded_scanner_file_problems(tmp_path):
    with pytest.raises(UsageError, match="not found"):
        RecordedScanner(tmp_path / "none.json").scan(tmp_path, "linux/amd64")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ScanError, match="cannot read"):
        RecordedScanner(tmp_path / "bad.json").scan(tmp_path, "linux/amd64")


# --- the trivy scanner: its database, once per scanner --------------------------------------------


class NoRun:
    def run(self, *a, **kw):
        raise AssertionError("trivy must not run without its database")


class Trivy:
    """A runner answering `trivy version` and a scan, recording the argv of each."""

    def __init__(self, report: dict | None = None) -> None:
        self.calls: list[list[str]] = []
        self.report = report or {"SchemaVersion": 2, "Results": [{"Vulnerabilities": [
            {"VulnerabilityID": "CVE-2099-0001", "PkgName": "dpkg", "InstalledVersion": "1.21",
             "FixedVersion": "9.9.9", "Severity": "CRITICAL"}]}]}

    def run(self, argv, **kw):
        self.calls.append(argv)
        out = {"Version": "0.76.0"} if argv[1] == "version" else self.report
        return SimpleNamespace(stdout=json.dumps(out))


def scanner(runner, cache: Path, registry: FakeDbRegistry | None = None, **kw) -> TrivyScanner:
    return TrivyScanner(runner, cache, source="mirror.example.com/security/trivy-db:2" if registry else "",
                        registry_for=(lambda host: registry) if registry else None, clock=lambda: NOW, **kw)


def test_scanner_without_db_runs_nothing(tmp_path):
    report = scanner(NoRun(), tmp_path).scan(tmp_path / "layout", "linux/amd64")
    assert not report.db_available and report.db is None and report.scanned_at == "2026-11-28T12:00:00Z"
    assert report.note.startswith(f"no trivy vulnerability database at {tmp_path / 'db' / 'trivy.db'}")


def test_scanner_with_a_too_old_db_runs_nothing_and_records_its_age(tmp_path):
    db_folder(tmp_path / "db")
    report = scanner(NoRun(), tmp_path, max_age=timedelta(hours=6)).scan_sbom(tmp_path / "sbom.json", "x:1")
    assert not report.db_available and "older than scanner.db_max_age_hours (6 h)" in report.note
    assert report.db == {"source": "", "digest": "", "updated_at": "2026-11-28T00:00:00Z", "age_hours": 12.0}


def test_the_database_is_fetched_once_per_scanner(tmp_path):
    registry = FakeDbRegistry()
    digest = vulndb.push(registry, "security/trivy-db", "2", DATA_DB / "db")
    runner = Trivy()
    trivy = scanner(runner, tmp_path / "cache", registry)
    reports = [trivy.scan_sbom(tmp_path / f"sbom-{i}.json", f"img:{i}") for i in range(3)]
    assert registry.downloads == 1
    assert [c[1] for c in runner.calls] == ["version", "sbom", "sbom", "sbom"]  # the version asked once too
    first = reports[0]
    assert first.db_available and first.scanner_version == "0.76.0" and first.scanned_at == "2026-11-28T12:00:00Z"
    assert first.db == {"source": "mirror.example.com/security/trivy-db:2", "digest": digest,
                        "updated_at": "2026-11-28T00:00:00Z", "age_hours": 12.0}
    assert [v.id for v in first.vulnerabilities] == ["CVE-2099-0001"]
    # a second scanner (the next run) asks the registry again, and downloads nothing new
    scanner(runner, tmp_path / "cache", registry).database()
    assert registry.downloads == 1


def test_an_unreachable_db_repository_is_not_scanned_with_the_reason(tmp_path):
    registry = FakeDbRegistry()
    registry.unreachable = True
    report = scanner(NoRun(), tmp_path, registry).scan(tmp_path / "layout", "linux/amd64")
    assert not report.db_available
    assert report.note.startswith("cannot fetch the vulnerability database mirror.example.com/security/trivy-db:2")
    result = gate(report, image="img", fail_on=["CRITICAL"], ignores=[], db_unavailable="fail")
    assert not result.passed and result.status == NOT_SCANNED
    assert result.as_dict()["reason"] == report.note


def test_a_db_source_needs_a_registry(tmp_path):
    with pytest.raises(UsageError, match="needs a registry_for"):
        TrivyScanner(NoRun(), tmp_path, source="mirror.example.com/security/trivy-db:2").database()


def test_an_unreadable_version_is_unknown_not_an_error(tmp_path):
    runner = SimpleNamespace(run=lambda argv, **kw: SimpleNamespace(stdout="trivy 0.76"))
    assert TrivyScanner(runner, tmp_path).version() == "unknown"


def test_trivy_sbom_argv_never_updates_the_db(tmp_path):
    argv = TrivyScanner(None, tmp_path).argv(Path("/tmp/sbom.cdx.json"), kind="sbom")
    assert argv[:3] == ["trivy", "sbom", "/tmp/sbom.cdx.json"]
    assert {"--skip-db-update", "--skip-java-db-update", "--offline-scan"} <= set(argv)
    assert argv[argv.index("--cache-dir") + 1] == str(tmp_path)


def test_trivy_scan_argv_never_updates_the_db(tmp_path):
    argv = TrivyScanner(None, tmp_path).argv(Path("/tmp/v/linux-amd64"))
    assert argv[:4] == ["trivy", "image", "--input", "/tmp/v/linux-amd64"]
    assert argv[argv.index("--scanners") + 1] == "vuln" and argv[argv.index("--format") + 1] == "json"
    assert {"--skip-db-update", "--skip-java-db-update", "--offline-scan"} <= set(argv)


# --- the ignore file ---------------------------------------------------------------------------


def ignore_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "vuln-ignore.yaml"
    path.write_text(text)
    return path


GOOD = """\
ignores:
  - id: CVE-2024-5535
    reason: ALPN is not used by anything in this image; no fix in bookworm yet
    expires: 2027-01-31
    images: [debian-12-slim]
  - id: GHSA-9wx4-h78v-vm56
    reason: requests is only used against one internal host with verify on
    expires: "2026-11-28"
"""


def test_load_ignores(tmp_path):
    path = ignore_file(tmp_path, GOOD)
    ignores = load_ignores(path, TODAY)
    assert ignores == [
        Ignore("CVE-2024-5535", "ALPN is not used by anything in this image; no fix in bookworm yet",
               date(2027, 1, 31), ("debian-12-slim",), f"{path}:2"),
        Ignore("GHSA-9wx4-h78v-vm56", "requests is only used against one internal host with verify on",
               date(2026, 11, 28), (), f"{path}:6"),
    ]  # an entry is in force through its expires day


def test_missing_or_empty_ignore_file_means_none(tmp_path):
    assert load_ignores(tmp_path / "vuln-ignore.yaml", TODAY) == []
    assert load_ignores(ignore_file(tmp_path, "\n# nothing ignored\n"), TODAY) == []


@pytest.mark.parametrize("entry, line, key, complaint", [
    ("- id: CVE-2024-5535\n    expires: 2027-01-31", 2, "ignores.0.reason", "missing required key 'reason'"),
    ("- id: CVE-2024-5535\n    reason: no fix\n    expires: 2027-01-31", 3, "ignores.0.reason", "too short"),
    ("- id: CVE-2024-5535\n    reason: no\n    expires: 2027-01-31", 3, "ignores.0.reason",
     "'no' is read by YAML as False; quote it"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n", 2, "ignores.0.expires",
     "missing required key 'expires'"),
    ("- id: CVE-24-1\n    reason: not reachable from any entry point\n    expires: 2027-01-31", 2,
     "ignores.0.id", "expected CVE-YYYY-NNNN or GHSA-xxxx-xxxx-xxxx"),
    ("- id: cve-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31", 2,
     "ignores.0.id", "'cve-2024-5535' is not valid"),
    ("- id: GHSA-1234-abcd-0000\n    reason: not reachable from any entry point\n    expires: 2027-01-31", 2,
     "ignores.0.id", "GHSA-xxxx"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-02-30", 4,
     "ignores.0.expires", "'2027-02-30' is not a real date"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 31/01/2027", 4,
     "ignores.0.expires", "expected a date YYYY-MM-DD"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31\n"
     "    image: [debian-12-slim]", 5, "ignores.0.image", "unknown key 'image' (did you mean 'images'?)"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31\n"
     "    images: []", 5, "ignores.0.images", "list of manifest names"),
    # the VEX fields: affected needs an action and has no justification; not_affected has no action
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31\n"
     "    status: affected", 2, "ignores.0.action", "missing required key 'action': status affected needs an action"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31\n"
     "    status: affected\n    action: upgrade openssl when bookworm ships 3.0.14\n"
     "    justification: component_not_present", 7, "ignores.0.justification",
     "'component_not_present' is not valid here: only status not_affected has one"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31\n"
     "    action: upgrade openssl when bookworm ships 3.0.14", 5, "ignores.0.action",
     "is not valid here: status affected needs an action (what is being done), and only it has one"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31\n"
     "    status: fixed", 5, "ignores.0.status", "'fixed' is not one of ['not_affected', 'affected']"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31\n"
     "    justification: it is fine", 5, "ignores.0.justification", "'it is fine' is not one of"),
    ("- id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31\n"
     "    status: affected\n    action: later", 6, "ignores.0.action", "action 'later' is too short"),
])
def test_invalid_ignore_entries(tmp_path, entry, line, key, complaint):
    path = ignore_file(tmp_path, f"ignores:\n  {entry}\n")
    with pytest.raises(IgnoreFileError) as e:
        load_ignores(path, TODAY)
    (problem,) = e.value.problems
    assert (problem.path, problem.line, problem.key) == (str(path), line, key)
    assert complaint in problem.message
    assert str(problem).startswith(f"{path}:{line}: {key}:")


def test_every_problem_is_reported_at_once(tmp_path):
    path = ignore_file(tmp_path, "ignores:\n  - id: CVE-1\n  - reason: short\n    expires: 2027-01-31\nignore: []\n")
    with pytest.raises(IgnoreFileError) as e:
        load_ignores(path, TODAY)
    assert [(p.line, p.key) for p in e.value.problems] == [
        (2, "ignores.0.reason"), (2, "ignores.0.expires"), (2, "ignores.0.id"),
        (3, "ignores.1.id"), (3, "ignores.1.reason"), (5, "ignore")]  # in file order
    assert "did you mean 'ignores'?" in e.value.problems[-1].message
    assert str(e.value).endswith("6 problem(s) in 1 file(s)")


def test_meaning_is_checked_on_the_well_formed_entries_too(tmp_path):
    path = ignore_file(tmp_path, "ignores:\n"
                       "  - id: CVE-2024-5535\n    reason: no fix\n    expires: 2026-02-30\n"
                       "  - id: CVE-2024-5536\n    reason: not reachable from any entry point\n"
                       "    expires: 2027-02-30\n")
    with pytest.raises(IgnoreFileError) as e:
        load_ignores(path, TODAY)
    # entry 0 is malformed (its date is not judged); entry 1 is well-formed but its date is not real
    assert [(p.line, p.key) for p in e.value.problems] == [(3, "ignores.0.reason"), (7, "ignores.1.expires")]


def test_an_expired_entry_is_loaded_and_waives_nothing(tmp_path):
    path = ignore_file(tmp_path, "ignores:\n  - id: CVE-2024-5535\n    reason: not reachable from any entry point\n"
                       "    expires: 2026-11-27\n")
    (entry,) = load_ignores(path, TODAY)
    assert entry.expired and entry.expires == date(2026, 11, 27)
    assert entry.matches(vuln("CRITICAL"), "img") and not entry.applies(vuln("CRITICAL"), "img")
    assert not load_ignores(path, date(2026, 11, 27))[0].expired  # in force through its expires day
    result = gate(report(vuln("CRITICAL")), image="img", fail_on=["CRITICAL"], ignores=[entry],
                  db_unavailable="fail")
    assert not result.passed and result.ignored == []
    assert result.messages[0] == (
        "blocking: CRITICAL CVE-2024-5535 in libssl3 3.0.11-1~deb12u1 (fixed in 3.0.14-1~deb12u1): a title "
        f"(its ignore entry at {path}:2 expired on 2026-11-27: look at the finding again, then fix it or renew "
        "the entry with a new reason and date)")
    # below the gate's severities it blocks nothing, expired or not
    assert gate(report(vuln("HIGH")), image="img", fail_on=["CRITICAL"], ignores=[entry],
                db_unavailable="fail").passed


def test_the_vex_fields_are_loaded(tmp_path):
    path = ignore_file(tmp_path, "ignores:\n"
                       "  - id: CVE-2024-5535\n    reason: ALPN is not used by anything in this image\n"
                       "    expires: 2027-01-31\n    justification: vulnerable_code_not_in_execute_path\n"
                       "  - id: CVE-2023-5363\n    reason: no fix in bookworm yet, low exposure\n"
                       "    expires: 2027-01-31\n    status: affected\n"
                       "    action: rebuild when bookworm ships openssl 3.0.14\n")
    first, second = load_ignores(path, TODAY)
    assert (first.status, first.justification, first.action) == ("not_affected",
                                                                 "vulnerable_code_not_in_execute_path", "")
    assert (second.status, second.justification, second.action) == (
        "affected", "", "rebuild when bookworm ships openssl 3.0.14")
    # an affected waiver still lets the image through the factory's gate: the risk is accepted until expiry
    result = gate(report(vuln("CRITICAL", id="CVE-2023-5363")), image="img", fail_on=["CRITICAL"],
                  ignores=[second], db_unavailable="fail")
    assert result.passed and result.as_dict()["ignored"][0]["status"] == "affected"


def test_images_are_bounded(tmp_path):
    names = ", ".join(f"img-{i}" for i in range(501))
    path = ignore_file(tmp_path, "ignores:\n  - id: CVE-2024-5535\n    reason: not reachable from any entry point\n"
                       f"    expires: 2027-01-31\n    images: [{names}]\n")
    with pytest.raises(IgnoreFileError) as e:
        load_ignores(path, TODAY)
    assert [p.key for p in e.value.problems] == ["ignores.0.images"]


def test_ignores_that_is_not_a_list(tmp_path):
    with pytest.raises(IgnoreFileError) as e:
        load_ignores(ignore_file(tmp_path, "ignores: {id: CVE-2024-5535}\n"), TODAY)
    (problem,) = e.value.problems
    assert problem.key == "ignores" and "expected a list of entries" in problem.message


def test_duplicate_ignores_for_the_same_image(tmp_path):
    entry = "  - id: CVE-2024-5535\n    reason: not reachable from any entry point\n    expires: 2027-01-31\n"
    path = ignore_file(tmp_path, f"ignores:\n{entry}{entry}    images: [a]\n")
    with pytest.raises(IgnoreFileError) as e:
        load_ignores(path, TODAY)
    (problem,) = e.value.problems
    assert problem.key == "ignores.1.id" and f"already ignored for all images at {path}:2" in problem.message
    # the same id for two different images is fine
    other = f"ignores:\n{entry}    images: [a]\n{entry}    images: [b]\n"
    assert len(load_ignores(ignore_file(tmp_path, other), TODAY)) == 2


def test_yaml_problems_keep_their_line(tmp_path):
    path = ignore_file(tmp_path, "ignores:\n  - id: CVE-2024-5535\n    id: CVE-2024-5536\n")
    with pytest.raises(IgnoreFileError) as e:
        load_ignores(path, TODAY)
    assert any(p.line == 3 and "duplicate key 'id'" in p.message for p in e.value.problems)


def test_docs_show_the_ignore_schema():
    """docs/gates.md carries the schema as generated from IGNORE_SCHEMA; regenerate the block with
    `python -c "import json, factory.scan as s; print(json.dumps(s.IGNORE_SCHEMA, indent=2))"`."""
    docs = (ROOT / "docs" / "gates.md").read_text()
    block = re.search(r"<!-- ignore-schema -->\n```json\n(.*?)```", docs, re.S)
    assert block, "docs/gates.md lost its <!-- ignore-schema --> block"
    assert json.loads(block.group(1)) == IGNORE_SCHEMA, "docs/gates.md shows a stale ignore schema"


# --- the gate ----------------------------------------------------------------------------------


def vuln(severity: str, id: str = "CVE-2024-5535", package: str = "libssl3") -> Vulnerability:
    return Vulnerability(id, package, "3.0.11-1~deb12u1", "3.0.14-1~deb12u1", severity, "a title")


def report(*vulns: Vulnerability) -> ScanReport:
    return ScanReport("trivy", True, tuple(vulns))


IGNORE_5535 = Ignore("CVE-2024-5535", "ALPN is not used in this image", date(2027, 1, 31), (), "vuln-ignore.yaml:2")


@pytest.mark.parametrize("vulns, fail_on, ignores, image, passed, blocking", [
    ([], ["CRITICAL"], [], "img", True, []),
    ([vuln("CRITICAL")], ["CRITICAL"], [], "img", False, ["CVE-2024-5535"]),
    ([vuln("HIGH")], ["CRITICAL"], [], "img", True, []),  # HIGH does not block by default
    ([vuln("HIGH")], ["CRITICAL", "HIGH"], [], "img", False, ["CVE-2024-5535"]),
    ([vuln("HIGH")], ["critical", "high"], [], "img", False, ["CVE-2024-5535"]),
    ([vuln("CRITICAL")], ["CRITICAL"], [IGNORE_5535], "img", True, []),
    ([vuln("CRITICAL", id="cve-2024-5535")], ["CRITICAL"], [IGNORE_5535], "img", True, []),
    # an ignore scoped to other images does not apply here
    ([vuln("CRITICAL")], ["CRITICAL"], [Ignore("CVE-2024-5535", "r" * 10, date(2027, 1, 1), ("other",))],
     "img", False, ["CVE-2024-5535"]),
    ([vuln("CRITICAL")], ["CRITICAL"], [Ignore("CVE-2024-5535", "r" * 10, date(2027, 1, 1), ("img",))],
     "img", True, []),
    ([vuln("CRITICAL"), vuln("CRITICAL", id="CVE-2024-9143")], ["CRITICAL"], [IGNORE_5535], "img", False,
     ["CVE-2024-9143"]),
    ([vuln("CRITICAL")], [], [], "img", True, []),
])
def test_gate_table(vulns, fail_on, ignores, image, passed, blocking):
    result = gate(report(*vulns), image=image, fail_on=fail_on, ignores=ignores, db_unavailable="fail")
    assert result.passed is passed
    assert [v.id for v in result.blocking] == blocking
    assert result.db_available


def test_ignored_critical_passes_with_a_note():
    result = gate(report(vuln("CRITICAL"), vuln("HIGH", id="CVE-2023-5363")), image="img",
                  fail_on=["CRITICAL"], ignores=[IGNORE_5535], db_unavailable="fail")
    assert result.passed and result.ignored == [(vuln("CRITICAL"), IGNORE_5535)]
    assert result.counts == {"CRITICAL": 1, "HIGH": 1}
    assert ("ignored CRITICAL CVE-2024-5535 in libssl3 until 2027-01-31 (vuln-ignore.yaml:2): "
            "ALPN is not used in this image") in result.messages
    assert result.messages[-1] == "img: 1 CRITICAL, 1 HIGH (trivy); gate fails on CRITICAL: passed"


def test_blocking_messages_say_what_and_how_to_fix():
    result = gate(report(vuln("CRITICAL")), image="img", fail_on=["CRITICAL"], ignores=[], db_unavailable="warn")
    assert not result.passed
    assert result.messages[0] == ("blocking: CRITICAL CVE-2024-5535 in libssl3 3.0.11-1~deb12u1 "
                                  "(fixed in 3.0.14-1~deb12u1): a title")
    assert "vuln-ignore.yaml" in result.messages[-1]


def test_gate_on_the_recorded_report():
    recorded = RecordedScanner(DATA / "debian-openssl-critical.json").scan(Path("."), "linux/arm64")
    result = gate(recorded, image="debian-12-slim", fail_on=["CRITICAL"], ignores=[], db_unavailable="fail")
    assert not result.passed
    assert [(v.id, v.package) for v in result.blocking] == [("CVE-2024-5535", "libssl3"),
                                                            ("CVE-2024-5535", "openssl")]
    assert result.counts == {"CRITICAL": 2, "HIGH": 1, "MEDIUM": 2, "LOW": 1}
    # one ignore entry covers the CVE in both packages
    assert gate(recorded, image="debian-12-slim", fail_on=["CRITICAL"], ignores=[IGNORE_5535],
                db_unavailable="fail").passed


@pytest.mark.parametrize("mode, passed, loud", [("fail", False, "ERROR: "), ("warn", True, "WARNING: ")])
def test_gate_without_database(mode, passed, loud):
    no_db = ScanReport("trivy", db_available=False, note="no trivy vulnerability database at /x/db/trivy.db")
    result = gate(no_db, image="img", fail_on=["CRITICAL"], ignores=[], db_unavailable=mode)
    assert result.passed is passed and not result.db_available
    (message,) = result.messages
    assert message.startswith(loud + DB_UNAVAILABLE)
    assert "image NOT scanned for CVEs" in message and "/x/db/trivy.db" in message
    assert f"scanner_db_unavailable is '{mode}'" in message


@pytest.mark.parametrize("kwargs, complaint", [
    ({"db_unavailable": "ignore", "fail_on": ["CRITICAL"]}, "'fail' or 'warn'"),
    ({"db_unavailable": "fail", "fail_on": ["SEVERE"]}, "unknown severity 'SEVERE'"),
])
def test_gate_rejects_bad_settings(kwargs, complaint):
    with pytest.raises(UsageError, match=complaint):
        gate(report(), image="img", ignores=[], **kwargs)


def test_gate_result_as_dict_is_json():
    result = gate(report(vuln("CRITICAL"), vuln("LOW", id="CVE-2011-3374", package="apt")), image="img",
                  fail_on=["CRITICAL"], ignores=[IGNORE_5535], db_unavailable="fail")
    doc = json.loads(json.dumps(result.as_dict()))
    assert doc["passed"] is True and doc["counts"] == {"CRITICAL": 1, "LOW": 1}
    assert doc["ignored"][0]["id"] == "CVE-2024-5535" and doc["ignored"][0]["expires"] == "2027-01-31"


# --- the scan status: as_dict, summary, describe -------------------------------------------------------

DB = {"source": "mirror.example.com/security/trivy-db:2", "digest": "sha256:" + "d" * 64,
      "updated_at": "2026-11-28T00:00:00Z", "age_hours": 12.0}


def scanned(*vulns: Vulnerability, ignores=(), when: str = "2026-11-28T12:00:00Z") -> dict:
    report = ScanReport("trivy", True, tuple(vulns), db=DB, scanner_version="0.76.0", scanned_at=when)
    return gate(report, image="img", fail_on=["CRITICAL"], ignores=list(ignores), db_unavailable="fail").as_dict()


def not_scanned(why: str = "no trivy vulnerability database at /c/db/trivy.db") -> dict:
    report = ScanReport("trivy", False, note=why, scanned_at="2026-11-28T12:00:00Z")
    return gate(report, image="img", fail_on=["CRITICAL"], ignores=[], db_unavailable="warn").as_dict()


def test_the_record_says_what_was_scanned_with():
    doc = json.loads(json.dumps(scanned(vuln("CRITICAL"), vuln("HIGH", id="CVE-2023-5363"), ignores=[IGNORE_5535])))
    assert (doc["status"], doc["reason"], doc["scanner"], doc["db"], doc["scanned_at"]) == (
        SCANNED, "", {"name": "trivy", "version": "0.76.0"}, DB, "2026-11-28T12:00:00Z")
    assert doc["waived"] == [{"id": "CVE-2024-5535", "expires": "2027-01-31"}]
    assert doc["found"] == ["CVE-2023-5363", "CVE-2024-5535"]
    missing = not_scanned()
    assert (missing["status"], missing["passed"], missing["db"], missing["found"]) == (NOT_SCANNED, True, None, [])
    assert missing["reason"] == "no trivy vulnerability database at /c/db/trivy.db"


def test_summary_is_scanned_only_when_every_platform_was():
    both = summary({"linux/arm64": scanned(vuln("HIGH")), "linux/amd64": scanned()})
    assert both["status"] == SCANNED and both["reason"] == ""
    assert list(both["platforms"]) == ["linux/amd64", "linux/arm64"]
    assert both["platforms"]["linux/arm64"]["counts"] == {"HIGH": 1}
    assert both["platforms"]["linux/amd64"]["blocking"] == []
    one = summary({"linux/amd64": scanned(), "linux/arm64": not_scanned("DB too old")})
    assert (one["status"], one["reason"]) == (NOT_SCANNED, "DB too old")
    assert summary({}) == {"status": NOT_SCANNED, "reason": "no platform was scanned", "platforms": {}}
    blocked = summary({"linux/amd64": scanned(vuln("CRITICAL"))})
    assert blocked["platforms"]["linux/amd64"]["blocking"] == ["CVE-2024-5535"]


def test_describe_says_scanned_with_the_counts_or_not_scanned_with_why():
    record = summary({"linux/amd64": scanned(vuln("HIGH"), vuln("HIGH", id="CVE-2023-5363"),
                                             vuln("LOW", id="CVE-2011-3374")),
                      "linux/arm64": scanned(vuln("CRITICAL"), ignores=[IGNORE_5535], when="2026-11-28T11:00:00Z")})
    assert describe(record) == ("scanned 2026-11-28: 1 critical, 2 high, 1 low (1 waived: CVE-2024-5535) "
                                "[trivy 0.76.0, DB 2026-11-28 00:00]")
    assert describe(summary({"linux/amd64": scanned()})) == ("scanned 2026-11-28: 0 critical, 0 high "
                                                             "[trivy 0.76.0, DB 2026-11-28 00:00]")
    assert describe(summary({"linux/amd64": not_scanned("DB too old")})) == "NOT scanned: DB too old"
    assert describe({}) == "NOT scanned: no record"
