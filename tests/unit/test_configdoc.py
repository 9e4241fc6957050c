"""The configuration docs and example files are what the code declares: generated from the
schemas, and checked here, so neither the README's table nor an example can drift."""

from __future__ import annotations

from pathlib import Path

import pytest

from lbsync import config, configdoc, schema
from lbsync.bootstrap import config as bootstrap_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(configdoc.outputs((ROOT / "README.md").read_text())))
def test_generated_files_are_up_to_date(name: str) -> None:
    want = configdoc.outputs((ROOT / "README.md").read_text())[name]
    assert (ROOT / name).read_text() == want, f"{name} is stale: run ./scripts/gen-docs"


def test_every_key_is_in_the_readme_and_the_example() -> None:
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / "config" / "lbsync.example.yaml").read_text()
    for entry in schema.entries(config.Config):
        assert f"`{entry.key}`" in readme
        assert f"{entry.key.rsplit('.', 1)[-1]}:" in example


def test_the_examples_load_with_their_own_validators() -> None:
    cfg = config.load(ROOT / "config" / "lbsync.example.yaml", check_paths=False)
    assert cfg.upstreams[0].name == "k8s_cluster"
    # Every default in the example is the default in the code.
    assert cfg == config.parse({"upstreams": [{"name": "k8s_cluster",
                                               "service": "kong/kong-gateway-proxy",
                                               "port": 80}]}, check_paths=False)
    raw = config.read_yaml(ROOT / "config" / "bootstrap.example.yaml")
    assert bootstrap_config.load(raw) == bootstrap_config.BootstrapConfig()


def test_a_changed_default_makes_the_files_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text()
    before = configdoc.outputs(readme)
    field = next(f for f, _ in schema.fields(config.SyncConfig) if f.name == "debounce")
    monkeypatch.setattr(field, "default", 0.5)
    after = configdoc.outputs(readme)
    assert after["config/lbsync.example.yaml"] != before["config/lbsync.example.yaml"]
    assert after["README.md"] != before["README.md"]
