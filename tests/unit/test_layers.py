"""The layers, checked by machine: what each part of lbsync may import and do.

An equivalent of import-linter's contracts, small enough to read, run on both library sets:
- no import cycles between lbsync's modules (imports inside functions count too);
- the pure core (the model, the desired state, rendering, the schemas and text helpers, the
  bootstrap's manifests and rules) imports no I/O: none of lbsync's edges, no sockets, HTTP,
  processes, threads or the Kubernetes client, directly or through another lbsync module;
- `kubernetes` is imported only by the Kubernetes edge (`lbsync.kube`);
- `subprocess` only where nginx and helm are run (`lbsync.nginxctl`, `lbsync.bootstrap.helm`);
- files are written only by `lbsync.files`;
- the daemon's package never imports the lab.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2] / "lbsync"

PURE = {
    "lbsync.model", "lbsync.desired", "lbsync.render", "lbsync.schema", "lbsync.text",
    "lbsync.errors", "lbsync.bootstrap.config", "lbsync.bootstrap.manifests",
    "lbsync.bootstrap.plan", "lbsync.bootstrap.conditions", "lbsync.bootstrap.crds",
    "lbsync.bootstrap.report", "lbsync.health", "lbsync.guard", "lbsync.serverlines",
    "lbsync.loadbalancer",
}
# lbsync's own modules that do I/O: the pure core must not reach them, even indirectly.
EDGES = {
    "lbsync.kube", "lbsync.kubeconfig", "lbsync.files", "lbsync.nginxctl", "lbsync.apply",
    "lbsync.sync",
    "lbsync.watch", "lbsync.daemon", "lbsync.httpapi", "lbsync.notify", "lbsync.logs",
    "lbsync.cli", "lbsync.cliargs", "lbsync.cmd_sync", "lbsync.cmd_daemon",
    "lbsync.bootstrap.cluster", "lbsync.bootstrap.helm", "lbsync.bootstrap.actions",
    "lbsync.bootstrap.verify", "lbsync.bootstrap.cli", "lbsync.probe", "lbsync.publish",
    "lbsync.leader", "lbsync.statuswriter",
}
IO_MODULES = {"subprocess", "socket", "ssl", "http", "urllib", "urllib3", "kubernetes",
              "threading", "tempfile", "shutil", "fcntl", "signal", "requests"}
ONLY_IN = {
    "kubernetes": {"lbsync.kube"},
    "subprocess": {"lbsync.nginxctl", "lbsync.bootstrap.helm"},
}
# Calls that write, rename or remove files, and who may make them.
WRITE_CALLS = {"write_text", "write_bytes", "mkstemp", "replace", "rename", "unlink", "rmdir",
               "mkdir", "chmod", "fchmod", "symlink_to", "NamedTemporaryFile", "copy",
               "copyfile", "rmtree"}
WRITERS = {"lbsync.files"}


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imports(name: str, tree: ast.Module) -> Iterator[str]:
    """Every module `name` imports, anywhere in the file."""
    package = name if name.endswith("__init__") else name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


MODULES = modules()
GRAPH = {name: {i for i in imports(name, tree) if i in MODULES and i != name}
         for name, tree in MODULES.items()}


def externals(name: str) -> set[str]:
    return {i.split(".")[0] for i in imports(name, MODULES[name])}


def reachable(start: str) -> set[str]:
    seen: set[str] = set()
    todo = [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_lists_name_real_modules() -> None:
    assert set(MODULES) >= PURE | EDGES, (PURE | EDGES) - set(MODULES)


def test_no_import_cycles() -> None:
    cycles = sorted(m for m in MODULES if m in reachable(m))
    assert not cycles, f"modules in an import cycle: {cycles}"


@pytest.mark.parametrize("module", sorted(PURE))
def test_the_pure_core_reaches_no_io(module: str) -> None:
    reached = reachable(module) | {module}
    assert not reached & EDGES, f"{module} reaches {sorted(reached & EDGES)}"
    io = {m: externals(m) & IO_MODULES for m in reached}
    assert not any(io.values()), f"{module} reaches I/O: { {k: v for k, v in io.items() if v} }"


@pytest.mark.parametrize(("external", "allowed"), sorted(ONLY_IN.items()))
def test_only_one_module_imports(external: str, allowed: set[str]) -> None:
    importers = {m for m in MODULES if external in externals(m)}
    assert importers <= allowed, f"{external} imported by {sorted(importers - allowed)}"


def test_only_the_files_module_writes_files() -> None:
    offenders = []
    for name, tree in MODULES.items():
        if name in WRITERS:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _writes(node):
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, f"file writes outside lbsync.files: {offenders}"


def _writes(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in WRITE_CALLS:
        # str.replace is not a file operation: os.replace and Path.replace take a path.
        return not (func.attr == "replace" and not _is_os(func.value))
    if (isinstance(func, ast.Name) and func.id == "open") or \
            (isinstance(func, ast.Attribute) and func.attr == "open"):
        return any(isinstance(a, ast.Constant) and isinstance(a.value, str)
                   and set(a.value) & set("wax+") for a in [*call.args[1:2],
                                                            *(k.value for k in call.keywords
                                                              if k.arg == "mode")])
    return False


def _is_os(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id in ("os", "shutil")


def test_the_daemon_never_imports_the_lab() -> None:
    importers = {m for m in MODULES if "lbsync_lab" in externals(m)}
    assert not importers, importers
