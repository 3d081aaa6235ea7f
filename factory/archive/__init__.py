"""Distribution archive indexes: what versions apt and apk would install, read from the archives themselves.

For Debian and Ubuntu the ``InRelease`` and ``Packages`` of ``<codename>``, ``<codename>-updates`` and
``<codename>-security``; for Alpine the ``APKINDEX.tar.gz`` of ``main`` and ``community`` of a branch.
Signatures are verified as the package managers do (gpgv with the distro keyring and the SHA256 list of
InRelease; the RSA signature member of APKINDEX.tar.gz); a bad signature, a hash mismatch, a missing
keyring or an unreachable mirror is an ``ArchiveError`` (exit 2), never an empty index.

Public API (stable; everything else in the package is internal):

- ``factory.archive.types``: ``Suite``, ``Package``, ``ArchiveIndex``, ``FetchStats``, ``Distro``,
  ``SuiteKind``.
- settings: ``factory.spec.config.ArchiveSettings`` (factory.yaml's ``archives``: mirrors, keyrings, bounds;
  one schema, config.schema.json).
- ``factory.archive.fetch``: ``Archives(settings, session, runner)``: ``index(distro, codename, arch)``
  and ``index_for(distro, codename, "linux/arm64")`` fetch, verify and parse one (distro, release,
  architecture) once per run; ``stats`` (requests, bytes, urls); ``arch_for(distro, platform)``.
- ``factory.archive.versions``: ``compare(distro, a, b)``, ``sort_key(distro, version)``,
  ``InvalidPackageVersion`` (a ValueError).
- errors, in ``factory.core.errors`` (all exit 2): ``ArchiveError`` and its ``ArchiveUnreachable``,
  ``ArchiveSignatureError``, ``ArchiveHashMismatch``, ``ArchiveFormatError``.

Modules: ``types`` (the data), ``versions`` (dpkg and apk order
by python-debian and univers), ``deb`` (InRelease/Packages parsing and hash checks), ``apk`` (APKINDEX
parsing and signature), ``download`` (bounded downloads), ``fetch`` (the per-run ``Archives``).
"""
