"""Shared fixtures: paths to the project's and the shared reference data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

# No wall-clock deadlines (shared machines are noisy); in CI, a fixed example
# sequence so that a red run replays exactly.
settings.register_profile("default", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")

ROOT = Path(__file__).resolve().parent.parent
# The shared data sits beside the checkout (../shared), as laid out for CI.
SHARED = ROOT.parent / "shared"
DMESG_SAMPLE = SHARED / "data" / "dmesg-clocksources-sample.json"


@pytest.fixture(scope="session")
def dmesg_records() -> list[dict[str, Any]]:
    """Real kernels' clocksource registration lines (shared/data)."""
    if not DMESG_SAMPLE.exists():
        pytest.fail(f"reference data missing: {DMESG_SAMPLE} (expected shared/ beside the checkout)")
    records: list[dict[str, Any]] = json.loads(DMESG_SAMPLE.read_text())["records"]
    return records
