"""The built-in scenarios: TOML files shipped with tsclab, each reproducing a public report."""

from __future__ import annotations

from pathlib import Path

from tsclab.scenario.load import ScenarioError, load_scenario
from tsclab.scenario.model import Scenario

LIBRARY_DIR = Path(__file__).parent / "library"


def builtin_names() -> list[str]:
    """Every built-in scenario's name, sorted."""
    return sorted(p.stem for p in LIBRARY_DIR.glob("*.toml"))


def builtin_path(name: str) -> Path:
    return LIBRARY_DIR / f"{name}.toml"


def load_builtin(name: str) -> Scenario:
    path = builtin_path(name)
    if not path.is_file():
        raise ScenarioError(
            name, "name", f"no such built-in scenario; expected one of: {', '.join(builtin_names())}"
        )
    return load_scenario(path)


def resolve(arg: str) -> Scenario:
    """A scenario file's path, or a built-in scenario's name."""
    path = Path(arg)
    if path.suffix == ".toml" or path.exists():
        return load_scenario(path)
    return load_builtin(arg)
