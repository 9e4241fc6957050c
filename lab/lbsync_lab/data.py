"""Where the shared third-party test data lives, and a loud failure when it is not there.

The data (Gateway API CRDs, Kong charts, Kubernetes' OpenAPI document) is not in the
repository: it sits in `../shared/data/` beside the project root, or where
`$LBSYNC_SHARED_DATA` points. A test that needs it must fail when it is missing, never skip
in silence: a fresh clone must not report green while tests did not run.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "LBSYNC_SHARED_DATA"
# lab/lbsync_lab/data.py -> the project root is two levels up, shared/ sits beside it.
DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "data"

GATEWAY_API_BUNDLE = "gateway-api-v1.0.0-standard-install.yaml"
OPENAPI_V2 = "kubernetes-openapi-v2.json"
KONG_CHARTS = "kong-charts"
REQUIRED = (GATEWAY_API_BUNDLE, OPENAPI_V2, f"{KONG_CHARTS}/ingress-0.10.2.tgz",
            f"{KONG_CHARTS}/ingress-0.24.0.tgz")


class MissingTestData(RuntimeError):
    """A file of the shared test data is not where the tests look for it."""


def directory() -> Path:
    env = os.environ.get(ENV)
    return Path(env) if env else DEFAULT


def path(name: str) -> Path:
    """The path of one shared data file; raises MissingTestData naming what to do."""
    found = directory() / name
    if not found.exists():
        raise MissingTestData(
            f"test data {found} is missing: put the shared data beside the project root "
            f"(../shared/data) or set ${ENV}; see ../shared/data/README.md"
        )
    return found


def missing() -> list[Path]:
    """Every required file that is not there (empty when the data is complete)."""
    return [directory() / name for name in REQUIRED if not (directory() / name).exists()]
