"""A Kubernetes API server emulator that is faithful on the wire, for tests and demos.

Real clients we did not write (helm 4.1.4 and 3.17.3, kubectl 1.35.2: see
``tests/integration/emulator/test_kubectl.py`` and ``test_helm.py``) work against it as
against kube-apiserver 1.35.

Package layout (each module says what it owns):

* :mod:`lbsync_lab.sim.server` - :class:`ApiServer`: HTTPS front end, routing, lists, watches
  (watch-list included), dry runs, faults; the facade below;
* :mod:`lbsync_lab.sim.store` - objects, resourceVersions, history, list snapshots;
* :mod:`lbsync_lab.sim.ops` - write semantics (create/replace/patch/apply/delete, CRDs, field
  validation);
* :mod:`lbsync_lab.sim.openapi` - the real OpenAPI v2 document (shared test data; missing, it
  raises ``lbsync_lab.data.MissingTestData``), the served types and ``/openapi/v2|v3``;
* :mod:`lbsync_lab.sim.schema` - unknown-field pruning and strategic merge patch by schema;
* :mod:`lbsync_lab.sim.registry` - served resource types and discovery (legacy, aggregated);
* :mod:`lbsync_lab.sim.auth` - bearer tokens (admin, ServiceAccount JWTs) and RBAC;
* :mod:`lbsync_lab.sim.reviews` - access/rules/self reviews, TokenReview, TokenRequest;
* :mod:`lbsync_lab.sim.negotiate` - request Content-Type and response Accept;
* :mod:`lbsync_lab.sim.protobuf` - Kubernetes protobuf request bodies (some kinds);
* :mod:`lbsync_lab.sim.tables` - Table output (``kubectl get``, ``-o wide``);
* :mod:`lbsync_lab.sim.selectors` - label and field selectors;
* :mod:`lbsync_lab.sim.faults` - fault injection state;
* :mod:`lbsync_lab.sim.objects` - factories for realistic Nodes, Services, EndpointSlices;
* :mod:`lbsync_lab.sim.tlsgen` - CA and server certificate via the openssl CLI;
* :mod:`lbsync_lab.sim.clients` - the real helm/kubectl from ``scripts/get-tools.sh`` and a
  loopback chart repository, for tests.

What kube-controller-manager does (Deployments' ReplicaSets and readiness, ServiceAccount
token Secrets, garbage collection) is not in the emulator: :mod:`lbsync_lab.controllers`
runs stand-ins over the public API below. Without them, a Deployment stays without status,
as on a cluster whose controller manager is down.

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

For controllers (read-modify-write without the emulator's locks)::

    api.update(obj) -> dict    # only if obj's metadata.resourceVersion is still current,
                               # else raises Conflict (409): read again and retry
    api.create(obj) -> dict    # ApiError 409 AlreadyExists when it exists
    feed = api.changes(); feed.wait(timeout) -> [Change(type, kind, obj)]  # every write since;
                               # a RESYNC change means writes were missed: list again
    api.tokens.legacy(namespace, account, secret) -> str   # a Secret-bound account token
    api.authenticate("Bearer ...") -> User | None          # who a token is

Authentication and authorization: the admin kubeconfig's token (``token=``) is user
``kubernetes-admin`` in ``system:masters`` and may do everything; ServiceAccount tokens (from
token Secrets, or ``serviceaccounts/<name>/token``) are checked against RBAC Roles,
ClusterRoles and their bindings (verbs, apiGroups, resources and subresources, resourceNames,
nonResourceURLs) plus the discovery and self-review rules every authenticated user has;
refusals are 403s with kube-apiserver's message. ``token=None`` turns authentication off.

Simplifications (known differences from a real kube-apiserver 1.35):

* served types are the GA versions of the real document (no alpha/beta APIs); objects of a
  resource served in two versions (autoscaling v1/v2 HPAs, events v1 and events.k8s.io/v1)
  are stored apart per version, without conversion; subresources served are ``status`` and
  ``serviceaccounts/token`` only (no ``scale``, ``log``, ``exec``, ``eviction``, ``proxy``...);
* no defaulting beyond Services (clusterIP, nodePorts, policies) and Namespaces, and no
  validation beyond unknown fields (no types, formats, required fields, immutability or CEL);
  a schema's object without declared properties keeps whatever it is given; duplicate JSON
  keys are not detected;
* server-side apply treats lists as atomic and tracks ownership per leaf field; strategic
  merge patch supports the directives client-go sends but not ``$retainKeys`` strategies
  beyond dropping keys;
* protobuf request bodies are decoded for Secret, ConfigMap, Namespace, ServiceAccount,
  RBAC kinds, DeleteOptions, TokenRequest and the self reviews only; other kinds (e.g. a
  Deployment from ``kubectl create deployment``) get 415; responses are always JSON, and
  ``/openapi/v2`` is served as JSON only (a protobuf-only Accept gets 406);
* Table output has kube-apiserver's columns for Nodes, Namespaces, Services, Pods,
  Deployments, ReplicaSets, ConfigMaps, Secrets, ServiceAccounts, IngressClasses and
  (Cluster)RoleBindings, a CRD's printer columns for custom resources, and Name/Created At
  for the rest;
* no admission (no webhooks are called, no quota, no ServiceAccount admission), no
  aggregated APIs, no CBOR; the default ClusterRoles (``cluster-admin``, ``view``...) are not
  stored objects, and ClusterRole aggregation is not computed;
* deletions are immediate (no graceful deletion, no finalizer waits; a Namespace's contents
  go with it at once); dependents are removed only while stand-in controllers run;
* token signatures are HMAC with a per-emulator key (not the cluster's RSA key; no OIDC
  discovery or JWKS); TokenRequest audiences are recorded, not enforced.

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
