"""OCI annotations: the values a publish writes (inputs.oci_annotations), how they reach buildx's OCI exporter
(buildx.annotation_attrs) and fan-out's index (index.put_index), byte for byte as buildx writes its own."""

from __future__ import annotations

import csv
import json

from factory.adapters.gitinfo import Revision
from factory.build.buildx import annotation_attrs
from factory.core import labels, versioning
from factory.oci.layout import OCI_INDEX, OCI_MANIFEST, Descriptor, sha256_digest
from factory.publish import inputs
from factory.publish.destination import Destination
from factory.publish.index import put_index
from tests.unit.test_render import make_manifest, settings  # noqa: F401  (fixture)

DIGEST = "sha256:" + "a" * 64
FP = "sha256:" + "f" * 64


def args(**overrides: str) -> dict[str, str]:
    found = inputs.build_args(Revision("c" * 40, 1700000000, False), versioning.Version(1, 2, 3), FP,
                              f"127.0.0.1:5000/myorg/base@{DIGEST}", DIGEST,
                              base_name="127.0.0.1:5000/myorg/base:parent-v1.2", source="https://git.example.org/x")
    return {**found, **overrides}


def test_the_annotations_are_the_labels_values(settings):
    found = inputs.oci_annotations(make_manifest(settings, licenses="PSF-2.0"), args())
    assert found == {
        labels.CREATED_LABEL: "2023-11-14T22:13:20Z", labels.REVISION_LABEL: "c" * 40,
        labels.SOURCE_LABEL: "https://git.example.org/x", labels.VERSION_LABEL: "1.2.3",
        labels.LICENSES_LABEL: "PSF-2.0", labels.BASE_NAME_LABEL: "127.0.0.1:5000/myorg/base:parent-v1.2",
        labels.BASE_DIGEST_LABEL: DIGEST, labels.FINGERPRINT_LABEL: FP,
    }
    assert tuple(found) == labels.ANNOTATED_LABELS


def test_no_spdx_expression_and_no_source_are_left_out(settings):
    found = inputs.oci_annotations(make_manifest(settings, licenses="NOASSERTION"), args(FACTORY_SOURCE=""))
    assert labels.LICENSES_LABEL not in found and labels.SOURCE_LABEL not in found
    assert "@" not in found[labels.BASE_NAME_LABEL]  # a tag, never the digest reference built FROM


def test_base_name_of_an_upstream_image_is_its_tag(settings):
    m = make_manifest(settings)
    dest = Destination(None, "myorg/base", "127.0.0.1:5000/myorg/base")  # type: ignore[arg-type]
    assert inputs.base_name(m, {}, dest) == f"{m.upstream.image}:{m.upstream.tag}"  # type: ignore[arg-type]


def parse_output(attrs: dict[str, str]) -> dict[str, str]:
    """What buildx makes of --output: python-on-whales joins key=value with ",", buildx reads one CSV record."""
    line = ",".join(f"{k}={v}" for k, v in {"type": "oci", **attrs}.items())
    fields = next(csv.reader([line]))
    return dict(f.split("=", 1) for f in fields)


def test_exporter_attributes_for_both_levels_and_a_comma_in_a_value():
    found = parse_output(annotation_attrs({labels.VERSION_LABEL: "1.2.3", labels.SOURCE_LABEL: 'https://x/a,b"c'},
                                          multi_platform=True))
    assert found == {"type": "oci",
                     f"annotation-index.{labels.VERSION_LABEL}": "1.2.3",
                     f"annotation-manifest.{labels.VERSION_LABEL}": "1.2.3",
                     f"annotation-index.{labels.SOURCE_LABEL}": 'https://x/a,b"c',
                     f"annotation-manifest.{labels.SOURCE_LABEL}": 'https://x/a,b"c'}


def test_a_one_platform_build_annotates_only_its_manifest():
    # BuildKit refuses index annotations when there is no index ("not supported for single platform export")
    assert list(annotation_attrs({labels.VERSION_LABEL: "1"}, multi_platform=False)) == [
        f"annotation-manifest.{labels.VERSION_LABEL}"]


class Registry:
    def __init__(self) -> None:
        self.put: dict[str, bytes] = {}

    def head_manifest(self, repo: str, ref: str) -> Descriptor:
        return Descriptor(OCI_MANIFEST, ref, 547)

    def put_manifest(self, repo: str, ref: str, raw: bytes, media_type: str) -> str:
        assert media_type == OCI_INDEX and ref == sha256_digest(raw)
        self.put[ref] = raw
        return ref


def test_fanouts_index_carries_the_annotations_as_buildx_writes_them():
    registry = Registry()
    dest = Destination(registry, "myorg/base", "127.0.0.1:5000/myorg/base")  # type: ignore[arg-type]
    annotations = {labels.VERSION_LABEL: "1.2.3", labels.SOURCE_LABEL: "https://x/y"}
    digest = put_index(dest, {"linux/amd64": "sha256:" + "1" * 64}, annotations)
    # buildx (Go): the fields in this order, two-space indent, the annotation keys sorted
    expected = {"schemaVersion": 2, "mediaType": OCI_INDEX,
                "manifests": [{"mediaType": OCI_MANIFEST, "digest": "sha256:" + "1" * 64, "size": 547,
                               "platform": {"architecture": "amd64", "os": "linux"}}],
                "annotations": {labels.SOURCE_LABEL: "https://x/y", labels.VERSION_LABEL: "1.2.3"}}
    assert registry.put[digest] == json.dumps(expected, indent=2).encode()
    assert put_index(dest, {"linux/amd64": "sha256:" + "1" * 64}) != digest  # without: another index
