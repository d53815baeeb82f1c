"""``tsclab run --json``: every combination's verdicts as one deterministic record.

The schema is documented field by field in ``docs/run-json.md``.  Integers
only (times in ns of true time since guest boot); no wall-clock times and
no paths other than each scenario's as it was given, so the same scenarios
and seed give byte-identical output.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from tsclab.check.verdict import RunResult
from tsclab.scenario.model import Scenario

SCHEMA_VERSION = 1


def _combination(result: RunResult) -> dict[str, Any]:
    trace = result.trace
    return {
        "kernel": trace.kernel,
        "vmm": trace.vmm,
        "skipped": trace.skipped or None,
        "check": result.check,
        "expected": None if result.expected is None else sorted(result.expected),
        "verdicts": [v.record() for v in result.verdicts],
        "end_ns": trace.end_ns,
        "samples": len(trace.samples),
        "messages": [
            {"t_ns": m.t_ns, "vcpu": m.vcpu, "kind": m.kind, "text": m.text} for m in trace.messages
        ],
    }


def run_record(runs: list[tuple[Scenario, list[RunResult]]], seed: int) -> dict[str, Any]:
    """The JSON object of ``tsclab run --json``: scenarios in order, combinations in run order."""
    return {
        "schema": SCHEMA_VERSION,
        "tool": "tsclab",
        "seed": seed,
        "scenarios": [
            {
                "name": scenario.name,
                "description": scenario.description,
                "path": scenario.path,
                "sources": list(scenario.sources),
                "combinations": [_combination(r) for r in results],
            }
            for scenario, results in runs
        ],
    }


def dump_json(record: dict[str, Any]) -> str:
    """``record`` as deterministic JSON text: sorted keys, 2-space indent, UTF-8 as is, final newline."""
    return json.dumps(record, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that a reader sees the old file or the new, never a part.

    The bytes go to a fresh temporary file in the same directory (so the
    rename stays on one filesystem), are flushed to disk, and the file is
    renamed over ``path``.  On any failure the temporary file is removed.
    The new file's mode is the usual one (0666 less the umask).
    """
    directory = path.parent
    while True:
        tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically; see :func:`write_bytes_atomic`."""
    write_bytes_atomic(path, text.encode("utf-8"))
