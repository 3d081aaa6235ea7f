"""Write the catalog as a static site: plain HTML and CSS from Jinja2 templates, no JavaScript.

    out/index.html            every image: tags, digest, platforms, sizes, EOL, FROM line, verify command
    out/images/<name>.html    one page per image: versions newest first, each with its changelog
    out/catalog.json          the same data for tools (schema/catalog.schema.json, docs/catalog.md)
    out/README.md             a summary table
    out/catalog.css, out/cosign.pub

Every link is relative, so the folder reads the same from a file:// URL, a web server or a zip.
docs/catalog.md's field table is generated from the same schema by bin/catalogdoc.py (a developer's tool).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Mapping
from datetime import date
from html.parser import HTMLParser
from importlib import resources
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jinja2
import requests

from factory.adapters.tools import Runner
from factory.archive.fetch import Archives
from factory.consume import catalog as catalog_mod
from factory.consume.catalog import SITE_PUBLIC_KEY, SiteCatalog
from factory.core import log
from factory.core.model import Manifest
from factory.oci.registry import Registry
from factory.security.check import FixesChecker
from factory.spec import manifest
from factory.spec.config import Settings
from factory.trust.sign import Signer

STYLESHEET = "catalog.css"


# --- formatting (template filters) ---------------------------------------------------------------


def megabytes(size: int | None) -> str:
    """Decimal megabytes, as the publish gates and `docker images` show them (kB below 100 kB)."""
    if size is None:
        return "n/a"
    return f"{size / 1000:.1f} kB" if size < 100_000 else f"{size / 1_000_000:.1f} MB"


def overhead_text(overhead: int | None, base_size: int | None) -> str:
    """"+4.8 MB (+7.8%)" over the base; "n/a" when the base could not be read."""
    if overhead is None or not base_size:
        return "n/a"
    sign = "+" if overhead >= 0 else "-"
    return f"{sign}{abs(overhead) / 1_000_000:.1f} MB ({sign}{abs(overhead) / base_size * 100:.1f}%)"


def short_digest(digest: str) -> str:
    """sha256:0123456789ab (12 hex digits): enough to tell versions apart on a page."""
    algo, _, hexpart = digest.partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else digest


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("factory.consume", "templates"),
        autoescape=True,  # every value comes from the registry or a manifest: escape all of it
        undefined=jinja2.StrictUndefined,  # a typo in a template fails the build, not the page
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters.update(mb=megabytes, overhead=overhead_text, short=short_digest)
    return env


# --- `factory catalog` ----------------------------------------------------------------------------


def build(settings: Settings, registry_for: Callable[[str], Registry], signer: Signer, out: Path, *, today: date,
          public_key: Path | None, reference_platform: str, runner: Runner | None = None) -> SiteCatalog:
    """Read every image, version and changelog from the registry, and write the site into ``out``. With
    ``runner`` and policy.security_fixes not off, the security fixes pending in each version and platform
    are checked against the archive indexes (each read once for the whole catalog)."""
    manifests = _manifests(settings)
    with requests.Session() as session:
        fixes = None
        if runner is not None and settings.policy.security_fixes != "off":
            fixes = FixesChecker(settings, registry_for, signer, manifests,
                                 Archives(settings.archives, session, runner), public_key=public_key)
        collector = catalog_mod.Collector(settings, registry_for, signer, manifests, today=today,
                                          public_key=public_key, reference_platform=reference_platform, fixes=fixes)
        result = collector.collect()
    write(result, out, public_key_file=collector.key_file)
    return result


def _manifests(settings: Settings) -> Mapping[str, Manifest]:
    if settings.manifests_dir.is_dir():
        return manifest.load_all(settings)  # invalid manifests fail here: no silent "EOL unknown"
    log.get("catalog").warning("no manifests folder: upstream, parent and EOL unknown",
                               manifests_dir=str(settings.manifests_dir))
    return {}


# --- writing -------------------------------------------------------------------------------------


def render_pages(catalog: SiteCatalog) -> dict[str, str]:
    """Relative path -> content of every generated text file (pure: no files touched)."""
    env = _environment()
    names = frozenset(i.name for i in catalog.images)  # link only to images that have a page
    pages = {"index.html": env.get_template("index.html.j2").render(catalog=catalog, names=names, root="")}
    image_page = env.get_template("image.html.j2")
    for entry in catalog.images:
        pages[entry.page] = image_page.render(catalog=catalog, image=entry, names=names, root="../")
    pages["catalog.json"] = json.dumps(catalog_mod.as_document(catalog), indent=2) + "\n"
    pages["README.md"] = env.get_template("README.md.j2").render(catalog=catalog)
    pages[STYLESHEET] = resources.files("factory.consume").joinpath("templates", STYLESHEET).read_text()
    return pages


def write(catalog: SiteCatalog, out: Path, *, public_key_file: Path | str | None = None) -> list[Path]:
    """Write the site into ``out`` (created; pages of images that no longer exist are removed)."""
    pages = render_pages(catalog)
    out.mkdir(parents=True, exist_ok=True)
    stale = set((out / "images").glob("*.html")) if (out / "images").is_dir() else set()
    written = []
    for rel, content in pages.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        stale.discard(path)
        written.append(path)
    for path in stale:
        path.unlink()
    if catalog.public_key == SITE_PUBLIC_KEY:  # the pages link to it and the commands name it
        if public_key_file is None or not Path(public_key_file).is_file():
            raise ValueError(f"the catalog names {SITE_PUBLIC_KEY} but no key file was given ({public_key_file})")
        shutil.copyfile(public_key_file, out / SITE_PUBLIC_KEY)
        written.append(out / SITE_PUBLIC_KEY)
    return written


# --- link check (the tests run it on every generated site) ------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append(value)
            elif name == "id" and value:
                self.ids.add(value)


def _parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def links_in(path: Path) -> list[str]:
    return _parse(path).links


def broken_links(root: Path) -> list[str]:
    """``page: link`` for every relative link in the site's HTML whose file (or #fragment) is
    missing, and for every absolute URL (a page must read offline)."""
    broken = []
    parsed = {p: _parse(p) for p in sorted(root.rglob("*.html"))}
    for page, found in parsed.items():
        for link in found.links:
            if not _link_ok(page, link, parsed):
                broken.append(f"{page.relative_to(root)}: {link}")
    return broken


def _link_ok(page: Path, link: str, parsed: dict[Path, _Links]) -> bool:
    parts = urlsplit(link)
    if parts.scheme or parts.netloc:
        return False
    target = (page.parent / unquote(parts.path)).resolve() if parts.path else page.resolve()
    if not target.is_file():
        return False
    if not parts.fragment:
        return True
    ids = parsed[target].ids if target in parsed else _parse(target).ids
    return unquote(parts.fragment) in ids
