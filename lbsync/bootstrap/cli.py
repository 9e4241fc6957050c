"""The `lbsync bootstrap` command line: render, check, apply, verify, doctor, uninstall,
renew-token.

Owns argument parsing, building the config from file + flags (flags are written into the
document, then one validator checks both), constructing the cluster and helm edges, and
output selection (people or `-o json`). Errors and exit codes are `lbsync.errors`', handled
once by `lbsync.cli` for every command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import yaml

from lbsync.bootstrap import actions, checks, doctor, helm, manifests, verify
from lbsync.bootstrap.cluster import ApiCluster
from lbsync.bootstrap.config import BootstrapConfig
from lbsync.bootstrap.config import load as load_bootstrap_config
from lbsync.bootstrap.helm import Helm
from lbsync.bootstrap.report import Report, Result, Status, format_result, write_human, write_json
from lbsync.cliargs import EXIT_CODES
from lbsync.config import read_yaml
from lbsync.errors import ApiError, ConfigError

DEFAULT_HOST_KUBECONFIG = "/etc/lbsync/kubeconfig"
EPILOG = EXIT_CODES + """
apply's last line (and -o json "changed") says whether it changed anything.
walk-through: docs/bootstrap.md
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `bootstrap` and its sub-commands to the main CLI."""
    common = _common_parser()
    parser = subparsers.add_parser(
        "bootstrap", help="install Kong + Gateway API and lbsync's access into a cluster",
        description="From an empty cluster to Kong serving through the Gateway API, "
                    "idempotently, verified and reversible.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="bootstrap_command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("render", parents=[common], help="print every manifest and the Helm values")
    p.add_argument("--with-crds", action="store_true",
                   help="include the Gateway API CRD bundle (downloads it unless "
                        "--gateway-api-crds is given)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("check", parents=[common], help="pre-flight checks (read-only)")
    p.add_argument("--pre", action="store_true", default=True,
                   help="checks before installing (the default and only mode)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("apply", parents=[common], help="install or update everything, then wait")
    p.add_argument("--dry-run", action="store_true", help="show what would change; change nothing")
    p.add_argument("--force-conflicts", action="store_true",
                   help="take back fields another field manager changed")
    p.add_argument("--write-kubeconfig", metavar="FILE",
                   help="write a kubeconfig (mode 0600) for lbsync on the gateway host")
    p.add_argument("--write-config", metavar="FILE",
                   help="also write a matching lbsync config.yaml")
    p.add_argument("--host-kubeconfig-path", default=DEFAULT_HOST_KUBECONFIG, metavar="PATH",
                   help="where the kubeconfig will live on the gateway host, for --write-config "
                        f"(default {DEFAULT_HOST_KUBECONFIG})")
    p.add_argument("--server", metavar="URL",
                   help="API server URL as the gateway host reaches it (default: the admin "
                        "kubeconfig's)")
    p.set_defaults(func=cmd_apply)

    p = sub.add_parser("verify", parents=[common], help="send test requests through the node port")
    p.add_argument("--address", help="node address to probe (default: first Ready node's IP)")
    p.add_argument("--port", type=int, help="port to probe (default: the node port)")
    p.add_argument("--timeout", type=float, default=5.0, help="per-request timeout, seconds")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("doctor", parents=[common], help="diagnose an install, with fixes")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("uninstall", parents=[common], help="remove everything, in reverse order")
    p.add_argument("--purge", action="store_true", help="also delete the Gateway API CRDs")
    p.set_defaults(func=cmd_uninstall)

    p = sub.add_parser("renew-token", parents=[common],
                       help="write the gateway host's kubeconfig again, with a fresh token")
    p.add_argument("--write-kubeconfig", metavar="FILE", required=True,
                   help="the kubeconfig to (re)write, mode 0600")
    p.add_argument("--server", metavar="URL",
                   help="API server URL as the gateway host reaches it (default: the admin "
                        "kubeconfig's)")
    p.add_argument("--if-expires-within", type=float, metavar="DAYS",
                   help="only if FILE's token expires within DAYS (for a timer)")
    p.set_defaults(func=cmd_renew_token)


def _common_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("cluster and output")
    # Not -c/--config: at the top level of `lbsync` those name lbsync's own config file.
    g.add_argument("--bootstrap-config", dest="bootstrap_config", metavar="FILE",
                   help="bootstrap config file (YAML); flags override it")
    g.add_argument("--kubeconfig", help="admin kubeconfig (default: $KUBECONFIG, ~/.kube/config)")
    g.add_argument("--context", help="kubeconfig context")
    g.add_argument("--helm", default="helm", metavar="PATH",
                   help="the helm binary, 3.17+ or 4 (default: helm on PATH)")
    g.add_argument("-o", "--output", choices=("text", "json"), default="text")
    # SUPPRESS: `lbsync --debug bootstrap ...` sets it before the subcommand; keep that value.
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show tracebacks")
    o = common.add_argument_group("overrides")
    o.add_argument("--gateway-api-version", help="Gateway API bundle, e.g. v1.0.0")
    o.add_argument("--gateway-api-crds", metavar="FILE", help="local standard-install.yaml")
    o.add_argument("--chart-version", help="kong/ingress chart version")
    o.add_argument("--namespace", help="Kong's namespace (default kong)")
    o.add_argument("--node-port", type=int, help="proxy HTTP node port (default 32001)")
    o.add_argument("--node-port-range", metavar="LOW-HIGH",
                   help="the cluster's NodePort range (default 30000-32767)")
    o.add_argument("--hostname", help="Gateway listener hostname (default: none)")
    o.add_argument("--route", action="append", metavar="SPEC",
                   help="'host/path -> namespace/service:port' (repeatable; replaces the "
                        "config's routes)")
    o.add_argument("--wait-timeout", type=float, metavar="SECONDS", help="per wait (default 300)")
    return common


# ---- config ----------------------------------------------------------------------------------

# Flag -> its key in the file. Flags are written into the document before validation, so a
# flag and a file key obey exactly the same rules.
FLAG_KEYS = {
    "gateway_api_version": ("gateway_api", "version"),
    "gateway_api_crds": ("gateway_api", "crds_file"),
    "chart_version": ("kong", "chart_version"),
    "namespace": ("kong", "namespace"),
    "node_port": ("kong", "node_port"),
    "hostname": ("gateway", "hostname"),
    "route": ("routes",),
    "wait_timeout": ("wait_timeout",),
    "node_port_range": ("node_port_range",),
}


def load_config(args: argparse.Namespace) -> BootstrapConfig:
    data: Any = {}
    base = Path.cwd()
    if args.bootstrap_config:
        path = Path(args.bootstrap_config)
        data = read_yaml(path, "bootstrap config") or {}
        base = path.parent
        if not isinstance(data, dict):
            raise ConfigError(f"bootstrap config {path}: must be a mapping at the top level")
    for flag, key in FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        node = data
        for part in key[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{part}: must be a mapping")
        # A path given on the command line is relative to where the command runs.
        node[key[-1]] = os.path.abspath(value) if flag == "gateway_api_crds" else value
    return load_bootstrap_config(data, base)


# ---- plumbing --------------------------------------------------------------------------------

def _cluster(args: argparse.Namespace) -> ApiCluster:
    return ApiCluster(args.kubeconfig, args.context)


def _helm(args: argparse.Namespace) -> Helm:
    return Helm(args.kubeconfig, args.context, binary=args.helm)


def _context(args: argparse.Namespace, cfg: BootstrapConfig, cluster: ApiCluster,
             out: TextIO) -> actions.Context:
    ctx = actions.Context(cfg, cluster, _helm(args))
    if args.output == "text":
        # Stream as steps finish: an apply can wait for minutes and people want to see progress.
        ctx.on_result = lambda r: _print_result(r, out)
    return ctx


def _print_result(result: Result, out: TextIO) -> None:
    out.write(format_result(result))
    out.flush()


def _finish(args: argparse.Namespace, report: Report, streamed: bool = False) -> int:
    out = sys.stdout
    if args.output == "json":
        write_json(report, out)
    elif streamed:
        out.write(report.summary() + "\n")
    else:
        write_human(report, out)
    return report.exit_code()


# ---- commands --------------------------------------------------------------------------------

def cmd_render(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    objects = manifests.cluster_objects(cfg) + manifests.gateway_objects(cfg)
    bundle = actions.load_bundle(cfg) if args.with_crds else []
    values = manifests.helm_values(cfg)
    if args.output == "json":
        json.dump({"crds_source": cfg.gateway_api.crds_source, "crds": bundle,
                   "helm": _helm_json(cfg, values), "objects": objects}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(f"# Gateway API CRDs {cfg.gateway_api.version}: {cfg.gateway_api.crds_source}\n")
    if bundle:
        out.write(manifests.dump_all(bundle) + "---\n")
    kong = cfg.kong
    out.write(f"# Helm: helm upgrade --install {kong.release} {helm.chart_name(cfg)} --repo "
              f"{kong.repo_url} --version {kong.chart_version} -n {kong.namespace} "
              "-f values.yaml --wait\n# values.yaml:\n")
    out.write("".join(f"#   {line}\n" for line in
                      yaml.safe_dump(values, sort_keys=False).splitlines()))
    out.write(manifests.dump_all(objects))
    return 0


def _helm_json(cfg: BootstrapConfig, values: dict[str, Any]) -> dict[str, Any]:
    kong = cfg.kong
    return {"release": kong.release, "namespace": kong.namespace,
            "chart": helm.chart_name(cfg), "version": kong.chart_version,
            "repo": kong.repo_url, "values": values}


def cmd_check(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    return _finish(args, checks.run_pre(cfg, _cluster(args), _helm(args)))


def cmd_apply(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    if args.write_config and not args.write_kubeconfig:
        raise ConfigError("--write-config needs --write-kubeconfig")
    cluster = _cluster(args)
    ctx = _context(args, cfg, cluster, sys.stdout)
    ctx.force_conflicts = args.force_conflicts
    report = actions.apply(ctx, dry_run=args.dry_run)
    if args.write_kubeconfig and not report.failed:
        results = ([Result(f"kubeconfig {args.write_kubeconfig}", Status.SKIPPED, "dry run")]
                   if args.dry_run else _write_kubeconfig(args, ctx, cluster))
        for result in results:
            report.add(result)
            ctx.on_result(result)
    report.extra["dry_run"] = bool(args.dry_run)
    return _finish(args, report, streamed=True)


def _write_kubeconfig(args: argparse.Namespace, ctx: actions.Context,
                      cluster: ApiCluster) -> list[Result]:
    ep = cluster.endpoint()
    try:
        return actions.write_kubeconfig(ctx, args.server or ep.server, ep.ca_pem, ep.insecure,
                                        args.write_kubeconfig, args.write_config,
                                        args.host_kubeconfig_path)
    except ApiError as exc:
        return [Result(f"kubeconfig {args.write_kubeconfig}", Status.FAILED, str(exc))]


def cmd_verify(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    cluster = None if args.address else _cluster(args)
    return _finish(args, verify.run_verify(cfg, cluster, args.address, args.port, args.timeout))


def cmd_doctor(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    return _finish(args, doctor.diagnose(cfg, doctor.gather(cfg, _cluster(args))))


def cmd_renew_token(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    cluster = _cluster(args)
    ctx = _context(args, cfg, cluster, sys.stdout)
    ep = cluster.endpoint()
    within = None if args.if_expires_within is None else args.if_expires_within * 86400
    report = actions.renew_token(ctx, args.server or ep.server, ep.ca_pem, ep.insecure,
                                 args.write_kubeconfig, within, time.time())
    return _finish(args, report)


def cmd_uninstall(args: argparse.Namespace) -> int:
    cfg = load_config(args)
    ctx = _context(args, cfg, _cluster(args), sys.stdout)
    return _finish(args, actions.uninstall(ctx, purge=args.purge), streamed=True)
