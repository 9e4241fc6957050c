"""Gateway API bundle: parsing, version order, the never-downgrade decision."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from lbsync_lab import data

from lbsync.bootstrap import crds
from lbsync.bootstrap.config import ConfigError


def crd(name: str, version: str | None, established: bool | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if version:
        meta["annotations"] = {crds.BUNDLE_VERSION_ANNOTATION: version}
    obj: dict[str, Any] = {"kind": "CustomResourceDefinition", "metadata": meta}
    if established is not None:
        obj["status"] = {"conditions": [{"type": "Established",
                                         "status": "True" if established else "False"}]}
    return obj


@pytest.mark.parametrize(("lower", "higher"), [
    ("v1.0.0", "v1.0.1"), ("v1.0.0", "v1.1.0"), ("v1.9.0", "v1.10.0"), ("v0.8.1", "v1.0.0"),
    ("v1.1.0-rc1", "v1.1.0"), ("v1.1.0-rc1", "v1.1.0-rc2"), ("1.0.0", "v1.0.1"),
])
def test_version_order(lower: str, higher: str) -> None:
    lo, hi = crds.version_key(lower), crds.version_key(higher)
    assert lo is not None and hi is not None and lo < hi


@pytest.mark.parametrize("bad", ["", "latest", "v1", "v1.0"])
def test_version_unparsable(bad: str) -> None:
    assert crds.version_key(bad) is None


@pytest.mark.parametrize(("installed", "decision"), [
    (None, crds.CrdDecision.INSTALL),
    ("v0.8.0", crds.CrdDecision.INSTALL),
    ("v1.0.0", crds.CrdDecision.SAME),
    ("v1.2.0", crds.CrdDecision.NEWER),
    ("v1.0.0-rc1", crds.CrdDecision.INSTALL),
    ("", crds.CrdDecision.INSTALL),  # hand-installed, no annotation: apply ours
])
def test_decide(installed: str | None, decision: crds.CrdDecision) -> None:
    live = None if installed is None else crd("x", installed)
    plan = crds.decide(crd("x", "v1.0.0"), live)
    assert plan.decision is decision


def test_established() -> None:
    assert crds.is_established(crd("x", None, True))
    assert not crds.is_established(crd("x", None, False))
    assert not crds.is_established(crd("x", None))


@pytest.mark.parametrize(("text", "match"), [
    ("", "no CustomResourceDefinitions"),
    ("kind: Service\n", "found Service"),
    ("a: [", "not valid YAML"),
])
def test_parse_bundle_errors(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        crds.parse_bundle(text, "b.yaml")


def test_real_v1_0_0_bundle(shared_data: Path) -> None:
    path = shared_data / data.GATEWAY_API_BUNDLE
    bundle = crds.parse_bundle(path.read_text(), str(path))
    names = sorted(c["metadata"]["name"] for c in bundle)
    assert names == [f"{p}.gateway.networking.k8s.io" for p in
                     ("gatewayclasses", "gateways", "httproutes", "referencegrants")]
    assert crds.bundle_versions(bundle) == {"v1.0.0"}
    assert all("creationTimestamp" not in c["metadata"] and "status" not in c for c in bundle)
