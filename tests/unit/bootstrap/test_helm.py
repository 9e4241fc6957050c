"""The helm edge's pure rules: argv for helm 3 and 4, versions, release parsing, "up to date",
and one-line errors from what the real helm 4.1.4 and 3.17.3 print (copied from their runs
against the emulator)."""

from __future__ import annotations

import pytest

from lbsync.bootstrap import helm
from lbsync.bootstrap.config import BootstrapConfig, KongSection
from lbsync.bootstrap.helm import Release

CFG = BootstrapConfig()

# What the real helms print on stderr when they fail (log lines, Error:, continuations).
HELM4_WAIT = """\
level=WARN msg="This chart or one of its subcharts contains CRDs. Rendering may fail or \
contain inaccuracies."
Error: resource Deployment/kong/kong-gateway not ready. status: InProgress, message: \
Available: 0/1
context deadline exceeded
"""
HELM3_WAIT = "Error: context deadline exceeded\n"
HELM3_CRDS = """\
Error: INSTALLATION FAILED: unable to build kubernetes objects from release manifest: \
resource mapping not found for name: "kong-controller-validations" namespace: "" from "": no \
matches for kind "ValidatingWebhookConfiguration" in version \
"admissionregistration.k8s.io/v1beta1"
ensure CRDs are installed first
"""
HELM3_UNINSTALL_DEBUG = """\
[debug] uninstall: Deleting kong
client.go:486: 2026-11-26 07:13:10.4 +0000 UTC m=+0.10 [debug] Starting delete for "kong" \
IngressClass
uninstall.go:124: 2026-11-26 07:13:10.4 +0000 UTC m=+0.12 [debug] uninstall: Failed to \
delete release: [injected failure (500)]
Error: failed to delete release: kong
helm.go:86: 2026-11-26 07:13:10.4 +0000 UTC m=+0.12 [debug] failed to delete release: kong
helm.sh/helm/v3/pkg/action.(*Uninstall).Run
\thelm.sh/helm/v3/pkg/action/uninstall.go:125
"""
HELM4_UNINSTALL_DEBUG = """\
level=DEBUG msg="uninstall: deleting release" name=kong
level=DEBUG msg="starting delete resource" namespace="" name=kong kind=IngressClass
level=DEBUG msg="uninstall: Failed to delete release" error="[injected failure (500)]"
Error: failed to delete release: kong
"""


@pytest.mark.parametrize(("stderr", "text"), [
    (HELM4_WAIT, "resource Deployment/kong/kong-gateway not ready. status: InProgress, "
                 "message: Available: 0/1; context deadline exceeded"),
    (HELM3_WAIT, "context deadline exceeded"),
    (HELM3_CRDS, 'INSTALLATION FAILED: unable to build kubernetes objects from release '
                 'manifest: resource mapping not found for name: "kong-controller-validations" '
                 'namespace: "" from "": no matches for kind "ValidatingWebhookConfiguration" '
                 'in version "admissionregistration.k8s.io/v1beta1"; ensure CRDs are installed '
                 'first'),
    (HELM3_UNINSTALL_DEBUG, "failed to delete release: kong (cause: [injected failure (500)])"),
    (HELM4_UNINSTALL_DEBUG, "failed to delete release: kong (cause: [injected failure (500)])"),
    ("Error: unknown shorthand flag: 'a' in -a\n", "unknown shorthand flag: 'a' in -a"),
    ("just a line\n\n", "just a line"),
    ("", ""),
])
def test_error_text_keeps_the_cause_in_one_line(stderr: str, text: str) -> None:
    assert helm.error_text(stderr) == text


def test_error_text_is_bounded() -> None:
    assert len(helm.error_text("Error: " + "x" * 5000)) == helm.MAX_ERROR + 3


@pytest.mark.parametrize(("message", "timeout"), [
    (helm.error_text(HELM4_WAIT), True), (helm.error_text(HELM3_WAIT), True),
    ("timed out waiting for the condition", True), (helm.error_text(HELM3_CRDS), False)])
def test_is_wait_timeout(message: str, timeout: bool) -> None:
    assert helm.is_wait_timeout(message) is timeout


def test_list_argv_per_major() -> None:
    assert helm.list_argv(3, "kong", "kong") == [
        "list", "-n", "kong", "-o", "json", "--filter", "^kong$", "-a"]
    assert "-a" not in helm.list_argv(4, "kong", "kong")  # helm 4 lists every status


def test_upgrade_argv_fetches_the_chart_by_url() -> None:
    argv = helm.upgrade_argv(CFG, "/tmp/v.yaml", 300)
    assert argv == ["upgrade", "--install", "kong", "ingress", "--repo",
                    "https://charts.konghq.com", "--version", "0.24.0", "-n", "kong",
                    "-f", "/tmp/v.yaml", "--wait", "--timeout", "300s"]
    dry = helm.upgrade_argv(CFG, "/tmp/v.yaml", 300, dry_run=True)
    assert dry[-1] == "--dry-run=server" and "--wait" not in dry
    legacy = BootstrapConfig(kong=KongSection(chart="kong/ingress"))
    assert helm.chart_args(legacy)[0] == "ingress"


@pytest.mark.parametrize(("version", "why"), [
    ((4, 1, 4), ""), ((3, 17, 0), ""), ((3, 16, 9), "v3.16.9 is older than v3.17.0"),
    ((5, 0, 0), "v5.0.0: helm 5 is not supported (helm 3.17+ or helm 4)")])
def test_unsupported(version: helm.Version, why: str) -> None:
    assert helm.unsupported(version) == why


@pytest.mark.parametrize(("text", "version"), [
    ("v3.17.3+ge4da497\n", (3, 17, 3)), ("v4.1.4+g05fa379", (4, 1, 4)), ("garbage", None)])
def test_parse_version(text: str, version: helm.Version | None) -> None:
    assert helm.parse_version(text) == version


def test_parse_release() -> None:
    out = ('[{"name":"kong","namespace":"kong","revision":"2","updated":"...",'
           '"status":"uninstalling","chart":"ingress-0.24.0","app_version":"3.9"}]')
    assert helm.parse_release(out, "kong", "kong") == Release(
        "kong", "kong", "ingress-0.24.0", "uninstalling", 2)
    assert helm.parse_release("[]", "kong", "kong") is None


@pytest.mark.parametrize(("release", "live", "fresh"), [
    (Release("kong", "kong", "ingress-0.24.0", "deployed", 1), "same", True),
    (Release("kong", "kong", "ingress-0.10.2", "deployed", 1), "same", False),
    (Release("kong", "kong", "ingress-0.24.0", "failed", 2), "same", False),
    (Release("kong", "kong", "ingress-0.24.0", "deployed", 1), "more", False),
    (None, None, False),
])
def test_release_up_to_date(release: Release | None, live: str | None, fresh: bool) -> None:
    from lbsync.bootstrap import manifests

    values = manifests.helm_values(CFG)
    live_values = None if live is None else dict(values, extra=1) if live == "more" else values
    assert helm.release_up_to_date(CFG, release, live_values, values) is fresh


@pytest.mark.parametrize(("message", "text"), [
    ("Unable to continue with install: Service \"x\" ... invalid ownership metadata",
     "meta.helm.sh/release-namespace=kong"),
    ('chart "ingress" version "9.9.9" not found in http://x repository', "--chart-version"),
    ("context deadline exceeded", "describe deployment"),
    ("helm: 'helm' not found on PATH", "install helm 3.17+ or helm 4"),
    ("failed to delete release: kong", "namespace kong is kept"),
    ("something else", ""),
])
def test_hint(message: str, text: str) -> None:
    assert text in helm.hint(CFG, message) and (text or helm.hint(CFG, message) == "")
