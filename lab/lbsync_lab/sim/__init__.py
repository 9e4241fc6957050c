"""A Kubernetes API server emulator that is faithful on the wire, for tests and demos.

Package layout (each module says what it owns):

* :mod:`lbsync_lab.sim.server` - :class:`ApiServer`: HTTPS front end, lists, watches, faults;
* :mod:`lbsync_lab.sim.store` - objects, resourceVersions, history, list snapshots;
* :mod:`lbsync_lab.sim.ops` - write semantics (create/replace/patch/apply/delete, CRDs);
* :mod:`lbsync_lab.sim.registry` - served resource types and discovery documents;
* :mod:`lbsync_lab.sim.selectors` - label and field selectors;
* :mod:`lbsync_lab.sim.faults` - fault injection state;
* :mod:`lbsync_lab.sim.objects` - factories for realistic Nodes, Services, EndpointSlices;
* :mod:`lbsync_lab.sim.tlsgen` - CA and server certificate via the openssl CLI.

Public API (see :class:`ApiServer` for details)::

    api = ApiServer(workdir, token="secret", tls=True, bookmark_interval=1.0, history=1000,
                    host="127.0.0.1", port=0)
    api.start() / api.stop() / with api: ...      # writes workdir/kubeconfig and workdir/ca.crt
    api.url, api.kubeconfig_path, api.ca_path, api.resource_version
    api.put(obj) -> dict; api.delete(kind, name, namespace=None) -> bool
    api.get(kind, name, namespace=None) -> dict | None; api.list(kind, namespace=None)
    api.compact(); api.deny(verb, resource); api.requests  # [(method, path+query, status)]
    api.faults.fail_next(n, status=500, path_contains=None); api.faults.latency = 0.2
    api.faults.set_outage(True/False); api.faults.drop_watches(); api.faults.clear()

Simplifications (known differences from a real kube-apiserver): strategic merge patch is
treated as a JSON merge patch; server-side apply treats lists as atomic and tracks
ownership per leaf field; no admission, validation against OpenAPI schemas, or
protobuf; deletions are immediate (no graceful deletion or finalizer waits).

Typical use::

    with ApiServer(workdir=tmp_path) as api:
        api.put(objects.node("node-1", "127.0.10.1"))
        kubernetes.config.load_kube_config(config_file=str(api.kubeconfig_path))
"""

from lbsync_lab.sim import objects
from lbsync_lab.sim.auth import User
from lbsync_lab.sim.faults import Faults
from lbsync_lab.sim.server import ApiServer, Change, Changes
from lbsync_lab.sim.status import ApiError, Conflict

__all__ = ["ApiError", "ApiServer", "Change", "Changes", "Conflict", "Faults", "User",
           "objects"]
