"""The hand-written sync lbsync is measured against: what a competent user writes with the
official Kubernetes client in an afternoon. Small on purpose, and fair:

- the client's own kubeconfig loader and its generated API (`CoreV1Api`), with
  `_preload_content=False` and `json.loads`, as the client's docs advise for speed (models
  would cost seconds and hundreds of MB at 5,000 nodes);
- one list of every Node, one read of the Service;
- the same node rules as lbsync (cloud-provider exclusions, Ready, an InternalIP that parses);
- write the servers file nginx includes in its upstream block (the one root's publisher
  writes for lbsync), atomically; `nginx -t`; reload. Always: it keeps no record of what
  nginx runs. It has no trust boundary either: it runs where it may write nginx's files.

    python bench/baseline.py --kubeconfig K --service kong/kong-gateway-proxy --port 80 \\
        --output FILE --test 'nginx -t -q' --reload 'nginx -s reload'
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import subprocess
import tempfile

from kubernetes import client, config

EXCLUDE = "node.kubernetes.io/exclude-from-external-load-balancers"


def eligible(node: dict) -> str | None:  # type: ignore[type-arg]
    """The node's InternalIP if a cloud load balancer would use it and it is Ready."""
    meta, spec, status = node["metadata"], node.get("spec", {}), node.get("status", {})
    if meta.get("deletionTimestamp"):
        return None
    if meta.get("labels", {}).get(EXCLUDE, "false").lower() not in ("false", "f", "0"):
        return None
    if any(t.get("key") == "ToBeDeletedByClusterAutoscaler" for t in spec.get("taints", [])):
        return None
    if not any(c["type"] == "Ready" and c["status"] == "True"
               for c in status.get("conditions", [])):
        return None
    for address in status.get("addresses", []):
        if address["type"] == "InternalIP":
            try:
                return str(ipaddress.ip_address(address["address"]))
            except ValueError:
                return None
    return None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--service", required=True, help="namespace/name")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--output", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--reload", required=True)
    args = p.parse_args()

    config.load_kube_config(config_file=args.kubeconfig)
    api = client.CoreV1Api()
    namespace, name = args.service.split("/")
    service = json.loads(api.read_namespaced_service(name, namespace,
                                                     _preload_content=False).data)
    node_port = next(p["nodePort"] for p in service["spec"]["ports"] if p["port"] == args.port)
    nodes = json.loads(api.list_node(_preload_content=False).data)["items"]
    servers = sorted((ip, n["metadata"]["name"]) for n in nodes if (ip := eligible(n)))

    lines = [f"server {f'[{ip}]' if ':' in ip else ip}:{node_port};  # {node}"
             for ip, node in servers]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(args.output))
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, args.output)
    subprocess.run(shlex.split(args.test), check=True)
    subprocess.run(shlex.split(args.reload), check=True)
    print(f"{len(servers)} nodes, reloaded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
