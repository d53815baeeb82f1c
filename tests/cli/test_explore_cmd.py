"""``tsclab explore``: the models, their figures and counterexamples, JSON, bad input."""

from __future__ import annotations

import json

import pytest

from tsclab.cli import main


def test_explore_finds_the_three_bugs_and_clears_their_fixed_variants(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["explore", "thread", "--json"]) == 0
    results = {r["model"]: r for r in json.loads(capsys.readouterr().out)}
    violated = {name: set(r["violated"]) for name, r in results.items()}
    assert violated == {
        "nohz-livelock (linux-6.1-debug)": {"livelock:cpu0"},
        "nohz-no-livelock (linux-6.1-debug)": set(),
        "write-section-pause (linux-6.1)": {"reader-value-exact"},
        "write-section-pause (linux-6.10)": set(),
        "fast-timekeeper-backwards (linux-6.10)": {"fast-monotonic"},
    }
    assert all(r["complete"] for r in results.values())
    pause = results["write-section-pause (linux-6.1)"]["counterexamples"][0]["steps"]
    # The pause falls between the writer's counter read and its publish.
    labels = [label for _process, label in pause]
    assert labels.index("pause the VM") < labels.index("tk_core.timekeeper = shadow_timekeeper")
    assert pause[0][0] == "writer"


def test_reduction_explores_fewer_transitions_and_finds_the_same(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "fast-timekeeper-backwards", "--json"]) == 0
    (reduced,) = json.loads(capsys.readouterr().out)
    assert main(["explore", "fast-timekeeper-backwards", "--json", "--no-reduction"]) == 0
    (plain,) = json.loads(capsys.readouterr().out)
    assert reduced["states"] == plain["states"]
    assert reduced["transitions"] < plain["transitions"]
    assert reduced["violated"] == plain["violated"]


def test_text_output_prints_each_counterexample_step_by_step(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "nohz-livelock"]) == 0
    out = capsys.readouterr().out
    assert "livelock:cpu0" in out
    assert "then forever" in out
    assert "cpu_relax(), loop" in out


def test_unknown_model_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["explore", "nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'nope'; expected one of: thread, nap, nap-controls, nohz-livelock" in err
    assert main(["explore", "--max-depth", "0"]) == 2
