"""A Kubernetes API server emulator that is faithful on the wire, for tests and demos.

Package layout (each module says what it owns):

* :mod:`lbsync.sim.server` - :class:`ApiServer`: HTTPS front end, lists, watches, faults;
* :mod:`lbsync.sim.store` - objects, resourceVersions, history, list snapshots;
* :mod:`lbsync.sim.ops` - write semantics (create/replace/patch/apply/delete, CRDs);
* :mod:`lbsync.sim.registry` - served resource types and discovery documents;
* :mod:`lbsync.sim.selectors` - label and field selectors;
* :mod:`lbsync.sim.faults` - fault injection state;
* :mod:`lbsync.sim.objects` - factories for realistic Nodes, Services, EndpointSlices;
* :mod:`lbsync.sim.tlsgen` - CA and server certificate via the openssl CLI.

Typical use::

    with ApiServer(workdir=tmp_path) as api:
        api.put(objects.node("node-1", "127.0.10.1"))
        kubernetes.config.load_kube_config(config_file=str(api.kubeconfig_path))
"""

from lbsync.sim import objects
from lbsync.sim.faults import Faults
from lbsync.sim.server import ApiServer

__all__ = ["ApiServer", "Faults", "objects"]
