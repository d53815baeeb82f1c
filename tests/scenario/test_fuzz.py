"""Fuzzing the loader: any mutation of a valid file gives a Scenario or a ScenarioError, nothing else."""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tsclab.scenario.load import ScenarioError, parse_scenario
from tsclab.scenario.model import Scenario

BASE_TEXT = (Path(__file__).parent / "data" / "full.toml").read_text()
PATH = "fuzz.toml"

# Any TOML value: scalars of every type, and arrays and inline tables of them.
SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.sampled_from([0, 1, -1, 64, 65, 2**32, 10**30])
    | st.floats()
    | st.text(max_size=12)
    | st.sampled_from(
        ["", "200s", "-5s", "0s", "1.5s", "1e999999s", "nan s", "6.8", "*", "qemu", "linux-6.1"]
    )
    | st.datetimes(timezones=st.none() | st.just(dt.UTC))
    | st.dates()
    | st.times()
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(min_size=1, max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _quote(text: str) -> str:
    out = []
    for char in text:
        if char.isascii() and char.isprintable() and char not in '"\\':
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _dump_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else {math.inf: "inf", -math.inf: "-inf"}.get(value, repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_dump_value(item) for item in value) + "]"
    return "{" + ", ".join(f"{_quote(key)} = {_dump_value(item)}" for key, item in value.items()) + "}"


def dump(document: dict[str, Any]) -> str:
    """TOML text for a document: one ``key = value`` line each, tables written inline."""
    return "".join(f"{_quote(key)} = {_dump_value(value)}\n" for key, value in document.items())


def _tables(value: Any) -> list[dict[str, Any]]:
    """Every table in a document, itself first."""
    found: list[dict[str, Any]] = []
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else []
    if isinstance(value, dict):
        found.append(value)
    for item in items:
        found.extend(_tables(item))
    return found


def _mutate(data: st.DataObject, document: dict[str, Any]) -> None:
    tables = [table for table in _tables(document) if table]
    table = data.draw(st.sampled_from(tables or [document]))
    mutation = data.draw(st.sampled_from(["delete", "replace", "unknown", "shuffle", "negate"]))
    if mutation == "delete" and table:
        del table[data.draw(st.sampled_from(sorted(table)))]
    elif mutation == "replace" and table:
        table[data.draw(st.sampled_from(sorted(table)))] = data.draw(VALUES)
    elif mutation == "unknown":
        table[data.draw(st.text(min_size=1, max_size=10))] = data.draw(VALUES)
    elif mutation == "shuffle" and isinstance(document.get("events"), list):
        document["events"] = data.draw(st.permutations(document["events"]))
    elif mutation == "negate":
        for key, value in table.items():
            if isinstance(value, str) and value[:1].isdigit():
                table[key] = "-" + value


def _garble(data: st.DataObject, text: str) -> str:
    raw = bytearray(text.encode())
    for _ in range(data.draw(st.integers(1, 8))):
        where = data.draw(st.integers(0, len(raw)))
        action = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        byte = data.draw(st.integers(0, 255))
        if action == "insert" or where == len(raw):
            raw.insert(where, byte)
        elif action == "flip":
            raw[where] = byte
        else:
            del raw[where]
    return raw.decode("utf-8", errors="replace")


def test_the_base_document_is_valid_and_dumps_faithfully() -> None:
    scenario = parse_scenario(BASE_TEXT)
    assert parse_scenario(dump(tomllib.loads(BASE_TEXT))) == scenario


@settings(derandomize=True, max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_documents_load_or_raise_scenario_error(data: st.DataObject) -> None:
    mode = data.draw(st.sampled_from(["mutate", "mutate", "mutate", "garble", "both"]))
    text = BASE_TEXT
    if mode != "garble":
        document = tomllib.loads(BASE_TEXT)
        for _ in range(data.draw(st.integers(1, 4))):
            _mutate(data, document)
        text = dump(document)
    if mode != "mutate":
        text = _garble(data, text)
    try:
        result: Scenario | ScenarioError = parse_scenario(text, PATH)
    except ScenarioError as error:
        result = error
    if isinstance(result, ScenarioError):
        assert str(result).startswith(f"{PATH}: ")
        assert result.field
        assert result.message
    else:
        assert isinstance(result, Scenario)
