"""The check suite on a real guest: a stock Debian kernel under QEMU, paused for real.

Runs where QEMU and the fetched guest are present (``tsclab guest fetch``);
elsewhere each case is skipped with what is missing - unless
``TSCLAB_REQUIRE_GUEST=1`` (set by ``.ci/run``, which installs QEMU and
fetches the guest), where a missing piece fails instead.  The ~20 min
overflow cases run only with ``TSCLAB_GUEST_LONG=1``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tsclab.guest.accel import choose_accel
from tsclab.guest.assets import GuestAssets, MissingAssets, load_assets, missing_host_tools
from tsclab.guest.cases import SUITE, GuestCase
from tsclab.guest.run import run_case
from tsclab.report.guest_check import render_case

QEMU = "qemu-system-x86_64"


def _assets_or_skip() -> GuestAssets:
    missing = [f"{m.what} ({m.how})" for m in missing_host_tools(for_fetch=False)]
    try:
        assets = load_assets()
    except MissingAssets as err:
        missing.append(str(err))
    if missing:
        reason = "no real guest here: " + "; ".join(missing)
        if os.environ.get("TSCLAB_REQUIRE_GUEST") == "1":
            pytest.fail(reason + " (TSCLAB_REQUIRE_GUEST=1)")
        pytest.skip(reason)
    return assets


def _long_cases_wanted(case: GuestCase) -> bool:
    return not case.long or os.environ.get("TSCLAB_GUEST_LONG") == "1"


@pytest.mark.parametrize("case", SUITE, ids=[case.name for case in SUITE])
def test_real_guest_matches_model(case: GuestCase, tmp_path: Path) -> None:
    if not _long_cases_wanted(case):
        pytest.skip(f"{case.name} pauses for {case.pause_ns // 10**9} s: set TSCLAB_GUEST_LONG=1 to run it")
    assets = _assets_or_skip()
    accel = choose_accel(assets, QEMU).accel
    result = run_case(case, assets, tmp_path / case.name, accel=accel, qemu=QEMU)
    assert result.passed, "\n" + render_case(result)
    # The comparison had something to compare: every reader sampled around the pause.
    assert len(result.observation.cpus) == case.vcpus
