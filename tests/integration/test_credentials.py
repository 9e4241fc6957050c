"""A renewed token reaches a running lbsync without a restart: the token of
`lbsync bootstrap renew-token`, copied over the kubeconfig, is read again on SIGHUP, and by
itself after the API server refuses the old one (401), at most every REREAD_AFTER_401."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from lbsync_lab.inprocess import Running, eventually
from lbsync_lab.nodes import StandinPool
from lbsync_lab.rig import add_cluster, addr, hp
from lbsync_lab.sim import ApiServer, objects

from lbsync import kube
from lbsync.config import KubernetesConfig
from lbsync.errors import ApiError


def renew(api: ApiServer, kubeconfig: Path, token: str) -> None:
    """The API server takes only `token` from now on; the file carries it too."""
    doc = yaml.safe_load(kubeconfig.read_text())
    doc["users"][0]["user"]["token"] = token
    kubeconfig.write_text(yaml.safe_dump(doc))
    api.token = token


def test_a_401_makes_the_client_read_its_kubeconfig_again(
        api: ApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api.put(objects.node("node-1", addr(1)))
    kc = tmp_path / "kubeconfig"
    shutil.copy(api.kubeconfig_path, kc)
    client = kube.Client.from_config(KubernetesConfig(kc))
    assert list(client.list(kube.nodes()).items) == ["node-1"]
    reads: list[int] = []
    original = client._reload
    assert original is not None
    client._reload = lambda: (reads.append(1), original())[1]  # type: ignore[assignment]

    api.token = "renewed"  # the old token expires; the file is not renewed yet
    with pytest.raises(ApiError, match="401"):
        client.list(kube.nodes())
    assert len(reads) == 1  # read again, still the old token
    renew(api, kc, "renewed")
    with pytest.raises(ApiError, match="401"):
        client.list(kube.nodes())
    assert len(reads) == 1  # not again within REREAD_AFTER_401: no file read per request
    monkeypatch.setattr(kube, "REREAD_AFTER_401", 0.0)
    with pytest.raises(ApiError, match="401"):
        client.list(kube.nodes())  # refused once more, and now read again
    assert len(reads) == 2
    assert list(client.list(kube.nodes()).items) == ["node-1"]


def test_sighup_takes_a_renewed_token_without_a_restart(
        api: ApiServer, standins: StandinPool, tmp_path: Path,
        run_daemon: Callable[..., Running], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kube, "REREAD_AFTER_401", 3600.0)  # only SIGHUP may renew here
    add_cluster(api, standins, 2)
    d = run_daemon()
    d.converged(hp(1), hp(2))
    api.token = "renewed"
    api.faults.drop_watches()  # the next requests carry the old token: 401
    eventually(lambda: d.metric("lbsync_api_errors_total", code="401") >= 1, 10,
               "a 401 from the API")
    renew(api, api.kubeconfig_path, "renewed")
    api.put(objects.node("node-3", addr(3)))  # only a working client can see it
    d.daemon.request_reload()
    d.converged(hp(1), hp(2), hp(3), timeout=15)
    assert d.metric("lbsync_config_held_back") == 0
