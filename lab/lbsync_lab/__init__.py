"""lbsync's lab: everything that stands in for a cluster and a gateway on one machine.

Never installed on a gateway. Modules, each owning one thing:

* :mod:`lbsync_lab.sim` - the Kubernetes API emulator (HTTPS, lists, watches, writes);
* :mod:`lbsync_lab.controllers` - stand-ins for what a cluster runs (Kong's controller, the
  token controller, Kong's proxy), driving the emulator through its public API;
* :mod:`lbsync_lab.nodes` - stand-in nodes: HTTP servers on free loopback addresses;
* :mod:`lbsync_lab.nginx` - a private nginx in its own prefix;
* :mod:`lbsync_lab.rig` - the one rig that wires them together for the demo, the tests, the
  package test and the benchmarks;
* :mod:`lbsync_lab.load` - a steady, bounded request load through nginx, in its own process,
  and what every request felt;
* :mod:`lbsync_lab.churn` - the churn rig: `lbsync run` as a process under load while nodes
  drain, crash, hang and join, the events' bounds from the settings, and their targets;
* :mod:`lbsync_lab.data` - the shared third-party test data (CRDs, charts, OpenAPI);
* :mod:`lbsync_lab.demo` and :mod:`lbsync_lab.cli` - `lbsync demo` and `lbsync-lab`.
"""
