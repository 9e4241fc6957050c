"""`lbsync bootstrap`: from an empty cluster to Kong serving through the Gateway API.

The package owns the companion installer. Its pure core (configuration, manifest rendering,
plan/diff, condition evaluation, doctor and pre-check rules) lives in modules that do no I/O;
`cluster` (over `lbsync.kube`), `helm` and `verify` are the edges that talk to the cluster,
the helm binary (3.17+ or 4) and the network; `actions` sequences them; `cli` wires
everything to argparse.
"""
