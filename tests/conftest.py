"""The suite's fixtures come from the lab (`lbsync_lab.fixtures`), and so do its helpers
(`lbsync_lab.rig`): tests never import from a conftest, so they run under
`--import-mode=importlib`. Tiers: unit/ (pure functions and single modules, tables),
integration/ (one edge against the emulator or a real nginx), e2e/ (the CLI and the daemon
as processes)."""

pytest_plugins = ["lbsync_lab.fixtures"]
