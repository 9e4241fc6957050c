"""Factories for realistic Kubernetes objects, shaped as a real cluster returns them.

This module owns what emulated objects look like: a :func:`node` carries full
conditions, addresses, labels, nodeInfo, capacity and a typical image list
(about 7 KB of JSON, like a real kubelet-registered Node). Server-owned
metadata (uid, resourceVersion, creationTimestamp) is left for the
:class:`~lbsync_lab.sim.ApiServer` to fill in, except where a factory is told otherwise.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

Obj = dict[str, Any]

KUBELET_VERSION = "v1.30.4"


def now_rfc3339(offset: float = 0.0) -> str:
    """UTC time as the API server formats it (second precision, Z suffix)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset))


def _digest(seed: str) -> str:
    return "sha256:" + hashlib.sha256(seed.encode()).hexdigest()


_IMAGES: list[tuple[str, str, int]] = [
    ("registry.k8s.io/etcd", "3.5.15-0", 56909194),
    ("registry.k8s.io/kube-apiserver", KUBELET_VERSION, 32763736),
    ("registry.k8s.io/kube-controller-manager", KUBELET_VERSION, 31305578),
    ("registry.k8s.io/kube-proxy", KUBELET_VERSION, 29036546),
    ("registry.k8s.io/kube-scheduler", KUBELET_VERSION, 19249212),
    ("registry.k8s.io/coredns/coredns", "v1.11.1", 18182961),
    ("registry.k8s.io/pause", "3.9", 321520),
    ("docker.io/calico/node", "v3.28.1", 115238612),
    ("docker.io/calico/cni", "v3.28.1", 94535610),
    ("docker.io/calico/kube-controllers", "v3.28.1", 35040765),
    ("docker.io/kong/kubernetes-ingress-controller", "3.3.1", 47812034),
    ("docker.io/library/kong", "3.7.1", 121306122),
    ("quay.io/prometheus/node-exporter", "v1.8.2", 11737842),
    ("registry.k8s.io/metrics-server/metrics-server", "v0.7.1", 19435637),
    ("docker.io/grafana/promtail", "3.1.1", 80140432),
    ("registry.k8s.io/ingress-nginx/controller", "v1.11.2", 105420115),
    ("ghcr.io/example/checkout-api", "2024.08.19", 64328190),
    ("ghcr.io/example/frontend", "2024.08.21", 48219001),
]


def _images() -> list[Obj]:
    out = []
    for repo, tag, size in _IMAGES:
        digest = _digest(repo + tag)
        out.append({"names": [f"{repo}@{digest}", f"{repo}:{tag}"], "sizeBytes": size})
    return out


def _conditions(ready: bool) -> list[Obj]:
    hb = now_rfc3339(-12)
    since = now_rfc3339(-86400 * 3)

    def cond(ctype: str, status: str, reason: str, message: str) -> Obj:
        return {"type": ctype, "status": status, "lastHeartbeatTime": hb,
                "lastTransitionTime": since, "reason": reason, "message": message}

    ready_cond = (
        cond("Ready", "True", "KubeletReady", "kubelet is posting ready status")
        if ready
        else cond("Ready", "Unknown", "NodeStatusUnknown", "Kubelet stopped posting node status.")
    )
    if not ready:
        ready_cond["lastTransitionTime"] = now_rfc3339(-40)
    return [
        cond("MemoryPressure", "False", "KubeletHasSufficientMemory",
             "kubelet has sufficient memory available"),
        cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        cond("PIDPressure", "False", "KubeletHasSufficientPID",
             "kubelet has sufficient PID available"),
        ready_cond,
    ]


def node(
    name: str,
    address: str,
    *,
    ready: bool = True,
    labels: Mapping[str, str] | None = None,
    taints: Iterable[Mapping[str, str]] = (),
    unschedulable: bool = False,
    deleting: bool = False,
    external_address: str | None = None,
    address_type: str = "InternalIP",
) -> Obj:
    """A kubelet-registered Node.

    ``taints`` are dicts with ``key``, ``effect`` and optionally ``value``;
    ``deleting`` sets ``metadata.deletionTimestamp`` (and a finalizer, so the
    object stays visible, as a node held by a finalizer does).
    """
    all_labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "node.kubernetes.io/instance-type": "m5.xlarge",
        "topology.kubernetes.io/region": "eu-west-1",
        "topology.kubernetes.io/zone": "eu-west-1" + "abc"[int(_digest(name)[-1], 16) % 3],
    }
    all_labels.update(labels or {})
    metadata: Obj = {
        "name": name,
        "labels": all_labels,
        "annotations": {
            "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///run/containerd/containerd.sock",
            "node.alpha.kubernetes.io/ttl": "0",
            "projectcalico.org/IPv4Address": f"{address}/16",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true",
        },
    }
    if deleting:
        metadata["deletionTimestamp"] = now_rfc3339()
        metadata["deletionGracePeriodSeconds"] = 0
        metadata["finalizers"] = ["example.com/drain-protection"]
    spec: Obj = {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"],
                 "providerID": f"aws:///eu-west-1a/i-{_digest(name)[7:24]}"}
    taint_list = [dict(t) for t in taints]
    if unschedulable:
        spec["unschedulable"] = True
        taint_list.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                           "timeAdded": now_rfc3339(-60)})
    if not ready:
        taint_list.append({"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule",
                           "timeAdded": now_rfc3339(-40)})
    if taint_list:
        spec["taints"] = taint_list
    addresses = [{"type": address_type, "address": address}]
    if external_address:
        addresses.append({"type": "ExternalIP", "address": external_address})
    addresses.append({"type": "Hostname", "address": name})
    resources = {"cpu": "4", "ephemeral-storage": "101430960Ki", "hugepages-1Gi": "0",
                 "hugepages-2Mi": "0", "memory": "16131452Ki", "pods": "110"}
    allocatable = dict(resources, **{"cpu": "3920m", "ephemeral-storage": "93478772582",
                                     "memory": "15214972Ki"})
    machine = _digest("machine" + name)[7:39]
    status: Obj = {
        "capacity": resources,
        "allocatable": allocatable,
        "conditions": _conditions(ready),
        "addresses": addresses,
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            "machineID": machine,
            "systemUUID": str(uuid.UUID(machine)),
            "bootID": str(uuid.uuid5(uuid.NAMESPACE_DNS, name + "boot")),
            "kernelVersion": "6.1.0-25-cloud-amd64",
            "osImage": "Debian GNU/Linux 12 (bookworm)",
            "containerRuntimeVersion": "containerd://1.7.20",
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
        },
        "images": _images(),
    }
    metadata["managedFields"] = _node_managed_fields(metadata, spec, status)
    return {"kind": "Node", "apiVersion": "v1", "metadata": metadata, "spec": spec,
            "status": status}


def _keys(d: Mapping[str, Any]) -> Obj:
    return {f"f:{k}": {} for k in d}


def _node_managed_fields(metadata: Obj, spec: Obj, status: Obj) -> list[Obj]:
    """managedFields as kubelet, kube-controller-manager and kubeadm leave them on a Node."""
    since = now_rfc3339(-86400 * 3)
    kubelet_status: Obj = {
        "f:allocatable": _keys(status["allocatable"]),
        "f:capacity": _keys(status["capacity"]),
        "f:conditions": {
            ".": {},
            **{f'k:{{"type":"{c["type"]}"}}': {".": {}, **_keys(c), } for c in
               status["conditions"]}},
        "f:daemonEndpoints": {"f:kubeletEndpoint": {"f:Port": {}}},
        "f:images": {},
        "f:nodeInfo": {"f:bootID": {}, "f:kubeletVersion": {}},
    }
    entries: list[Obj] = [
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": since,
         "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {
             "f:annotations": {".": {}, "f:volumes.kubernetes.io/controller-managed-attach-detach":
                               {}},
             "f:labels": {".": {}, **_keys(metadata["labels"])}},
             "f:spec": {"f:providerID": {}}}},
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
         "time": since, "fieldsType": "FieldsV1", "fieldsV1": {
             "f:metadata": {"f:annotations": {"f:node.alpha.kubernetes.io/ttl": {}}},
             "f:spec": {"f:podCIDR": {}, "f:podCIDRs": {".": {}, 'v:"10.244.0.0/24"': {}}}}},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
         "time": now_rfc3339(-12), "fieldsType": "FieldsV1", "fieldsV1": {
             "f:status": kubelet_status}, "subresource": "status"},
    ]
    if spec.get("taints"):
        entries[1]["fieldsV1"]["f:spec"]["f:taints"] = {}
    return entries


DEFAULT_PORTS: tuple[Mapping[str, Any], ...] = (
    {"name": "kong-proxy", "port": 80, "targetPort": 8000, "nodePort": 32001, "protocol": "TCP"},
)


def service(
    namespace: str,
    name: str,
    ports: Sequence[Mapping[str, Any]] = DEFAULT_PORTS,
    type: str = "NodePort",
    *,
    labels: Mapping[str, str] | None = None,
    selector: Mapping[str, str] | None = None,
    cluster_ip: str | None = None,
    external_traffic_policy: str = "Cluster",
    health_check_node_port: int | None = None,
) -> Obj:
    """A Service as the API server returns it after defaulting (clusterIP, policies...)."""
    ip = cluster_ip or "10.96.{}.{}".format(*_digest(namespace + "/" + name)[7:11:2].encode()[:2])
    port_list = []
    for p in ports:
        entry = {"protocol": "TCP", **dict(p)}
        entry.setdefault("targetPort", entry["port"])
        port_list.append(entry)
    spec: Obj = {
        "ports": port_list,
        "selector": dict(selector or {"app.kubernetes.io/name": name}),
        "clusterIP": ip,
        "clusterIPs": [ip],
        "type": type,
        "sessionAffinity": "None",
        "ipFamilies": ["IPv4"],
        "ipFamilyPolicy": "SingleStack",
        "internalTrafficPolicy": "Cluster",
    }
    if type in ("NodePort", "LoadBalancer"):
        spec["externalTrafficPolicy"] = external_traffic_policy
        if external_traffic_policy == "Local" and type == "LoadBalancer":
            spec["healthCheckNodePort"] = health_check_node_port or 32100
        elif health_check_node_port:
            spec["healthCheckNodePort"] = health_check_node_port
    status: Obj = {"loadBalancer": {}}
    return {"kind": "Service", "apiVersion": "v1",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": dict(labels or {"app.kubernetes.io/name": name})},
            "spec": spec, "status": status}


def endpointslice(
    namespace: str,
    service_name: str,
    endpoints: Sequence[tuple[str, str]],
    ports: Sequence[Mapping[str, Any]] = ({"name": "kong-proxy", "port": 8000,
                                           "protocol": "TCP"},),
    *,
    name: str | None = None,
    ready: bool = True,
) -> Obj:
    """An EndpointSlice for a Service; ``endpoints`` are (pod IP, node name) pairs."""
    eps = []
    for ip, node_name in endpoints:
        eps.append({
            "addresses": [ip],
            "conditions": {"ready": ready, "serving": ready, "terminating": False},
            "nodeName": node_name,
            "targetRef": {"kind": "Pod", "namespace": namespace,
                          "name": f"{service_name}-{_digest(ip)[7:17]}"},
        })
    return {
        "kind": "EndpointSlice", "apiVersion": "discovery.k8s.io/v1",
        "metadata": {
            "name": name or f"{service_name}-{_digest(namespace + service_name)[7:12]}",
            "namespace": namespace,
            "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                       "kubernetes.io/service-name": service_name},
            "generateName": f"{service_name}-",
        },
        "addressType": "IPv4",
        "endpoints": eps,
        "ports": [dict(p) for p in ports],
    }


def namespace(name: str, labels: Mapping[str, str] | None = None) -> Obj:
    """A Namespace in phase Active."""
    return {"kind": "Namespace", "apiVersion": "v1",
            "metadata": {"name": name,
                         "labels": {"kubernetes.io/metadata.name": name, **dict(labels or {})}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def node_address(i: int, total: int) -> str:
    """Loopback address for node ``i`` of ``total`` (127.0.10.x for small clusters)."""
    if total <= 250:
        return f"127.0.10.{i + 1}"
    i += 1
    return f"127.{10 + i // 62500}.{(i // 250) % 250}.{i % 250 + 1}"
