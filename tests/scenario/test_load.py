"""The scenario loader: good files load exactly; each kind of mistake is named precisely."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tsclab.scenario.load import ScenarioError, load_scenario, parse_scenario
from tsclab.scenario.model import Event, Expectation, GuestSpec, HostSpec, Scenario, Workload
from tsclab.sim.trace import CLOCKS

DATA = Path(__file__).parent / "data"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "scenarios.md"
S = 1_000_000_000
MS = 1_000_000

MINIMAL = (DATA / "minimal.toml").read_text()


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text, "test.toml")
    return caught.value


def _with_events(events: str) -> str:
    """The minimal scenario with a second host and its events replaced."""
    head = MINIMAL[: MINIMAL.index("[[events]]")]
    return head + '[[hosts]]\nname = "dst"\ntsc_khz = 2000000\n\n' + events


def test_a_file_with_every_field_loads_to_exact_values() -> None:
    scenario = load_scenario(DATA / "full.toml")
    assert scenario == Scenario(
        name="seed-200s-migration",
        description="A 2-vCPU TSC guest migrated with 200 s of downtime, then paused",
        sources=("LKML <87blf42dvv.fsf@nanos.tec.linutronix.de>",),
        vmms=("qemu", "upstream-doc", "firecracker@1.12"),
        settle_ns=60 * S,
        realtime_bound_ns=500 * MS,
        timer_late_bound_ns=20 * MS,
        guest=GuestSpec(
            vcpus=2,
            clocksource="tsc",
            kernels=("linux-6.1", "linux-6.10"),
            hz=1000,
            tsc_khz=2_500_000,
            watchdog="acpi_pm",
            ntp=False,
            epoch_s=1_700_000_000,
            watchdog_thresh_s=20,
            hung_task_timeout_s=240,
            rcu_stall_timeout_s=60,
            workload=(
                Workload("reader", 0, every_ns=1 * MS, clocks=("MONOTONIC", "REALTIME"), path="kernel"),
                Workload("timer", 0, every_ns=10 * MS, name="app-timer"),
                Workload("idle", 1),
                Workload("blocked-task", 1, every_ns=1500 * MS),
            ),
        ),
        hosts=(
            HostSpec(
                name="src",
                tsc_khz=2_500_000,
                drift_ppb=-120,
                uptime_ns=2 * 86_400 * S,
                realtime_error_ns=-3 * MS,
                scaling="none",
                clocksource="hpet",
                tsc_in_suspend="nonstop",
                kvm=(5, 15),
            ),
            HostSpec(name="dst", tsc_khz=2_100_000),
        ),
        events=(
            Event(10 * S, "migrate", 200 * S, to="dst", precopy_ns=1 * S, clock_realtime=True),
            Event(211 * S, "pause", 8 * 3600 * S, unresponsive=True),
            Event(30_000 * S, "snapshot", 100 * MS),
        ),
        expect=(
            Expectation("linux-6.1", "qemu", frozenset({"softlockup", "rcu-stall"})),
            Expectation("*", "*", frozenset()),
        ),
    )
    assert scenario.path == str(DATA / "full.toml")


def test_a_file_with_only_required_fields_takes_the_model_defaults() -> None:
    scenario = parse_scenario(MINIMAL)
    assert scenario == Scenario(
        name="minimal",
        description="One pause",
        guest=GuestSpec(vcpus=1, clocksource="kvm-clock", kernels=("linux-6.13",)),
        hosts=(HostSpec(name="host", tsc_khz=3_000_000),),
        vmms=("qemu",),
        events=(Event(5 * S, "pause", 200 * S),),
    )
    assert scenario.path == "<string>"


def test_workload_defaults_reader_reads_every_clock_timer_is_named_after_its_vcpu() -> None:
    text = MINIMAL.replace(
        "[[hosts]]",
        '[[guest.workload]]\nkind = "reader"\nvcpu = 0\nevery = "1ms"\n\n'
        '[[guest.workload]]\nkind = "timer"\nvcpu = 0\nevery = "4ms"\n\n[[hosts]]',
    )
    assert parse_scenario(text).guest.workload == (
        Workload("reader", 0, every_ns=1 * MS, clocks=CLOCKS, path="vdso"),
        Workload("timer", 0, every_ns=4 * MS, name="timer0"),
    )


def test_the_docs_example_is_the_full_test_file() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(), re.DOTALL)
    assert blocks, "docs/scenarios.md has no ```toml example"
    assert parse_scenario(blocks[0]) == load_scenario(DATA / "full.toml")


def test_error_text_is_path_field_message() -> None:
    error = ScenarioError("a.toml", "events[2].duration", "expected a duration")
    assert str(error) == "a.toml: events[2].duration: expected a duration"
    assert (error.path, error.field, error.message) == ("a.toml", "events[2].duration", "expected a duration")
    assert isinstance(error, ValueError)


def test_missing_field() -> None:
    error = _error(MINIMAL.replace("vcpus = 1\n", ""))
    assert str(error) == "test.toml: guest.vcpus: missing; expected an integer from 1 to 64"


def test_missing_table() -> None:
    head = MINIMAL[: MINIMAL.index("[[events]]")]
    assert str(_error(head)).startswith("test.toml: events: missing; expected an array of tables, [[events]]")


@pytest.mark.parametrize(
    ("old", "new", "field", "expected"),
    [
        ("vcpus = 1", 'vcpus = "1"', "guest.vcpus", "expected an integer from 1 to 64, got a string"),
        ("vcpus = 1", "vcpus = true", "guest.vcpus", "expected an integer from 1 to 64, got a boolean"),
        ("vcpus = 1", "vcpus = 1.0", "guest.vcpus", "expected an integer from 1 to 64, got a float"),
        ('at = "5s"', "at = 5", "events[0].at", 'expected a duration like "200s"'),
        ('at = "5s"', 'at = "5"', "events[0].at", "expected a duration with a unit"),
        ('clocksource = "kvm-clock"', 'clocksource = "jiffies"', "guest.clocksource",
         'expected one of: tsc, kvm-clock, hpet, acpi_pm, got "jiffies"'),
        ("[guest]", "[guest]\nhz = 200", "guest.hz", "expected one of: 100, 250, 300, 1000, got an integer"),
        ("[guest]", "[guest]\nntp = 1", "guest.ntp", "expected true or false, got an integer"),
        ('vmms = ["qemu"]', 'vmms = "qemu"', "vmms",
         "expected an array of strings, at least one, got a string"),
        ('vmms = ["qemu"]', "vmms = []", "vmms",
         "expected an array of strings, at least one, got an empty array"),
        ('name = "minimal"', 'name = "Minimal"', "name", "expected a string matching [a-z0-9][a-z0-9._-]*"),
        ('description = "One pause"', 'description = " "', "description", "expected a non-empty string"),
        ('[guest]\nvcpus = 1\nclocksource = "kvm-clock"\nkernels = ["linux-6.13"]', 'guest = "x"', "guest",
         "expected a [guest] table, got a string"),
        ("tsc_khz = 3000000", "tsc_khz = 4294967296", "hosts[0].tsc_khz",
         "expected an integer from 1 to 4294967295, got 4294967296"),
        ("tsc_khz = 3000000", 'tsc_khz = 3000000\nkvm = "3.10"', "hosts[0].kvm",
         'expected a KVM version "major.minor", at least "4.0", got "3.10"'),
        ("tsc_khz = 3000000", "tsc_khz = 3000000\nkvm = 6.8", "hosts[0].kvm", "got a float"),
    ],
)  # fmt: skip
def test_wrong_type_or_value(old: str, new: str, field: str, expected: str) -> None:
    error = _error(MINIMAL.replace(old, new))
    assert error.field == field
    assert expected in error.message


def test_unknown_key() -> None:
    error = _error(MINIMAL.replace("tsc_khz = 3000000", "tsc_mhz = 3000"))
    assert error.field == "hosts[0].tsc_mhz"
    assert error.message == (
        "unknown key; allowed keys: name, tsc_khz, drift_ppb, uptime, realtime_error, scaling, "
        "clocksource, tsc_in_suspend, kvm"
    )
    assert _error('"odd key" = 1\n' + MINIMAL).field == '"odd key"'


def test_key_for_another_kind_or_action() -> None:
    timer = '[[guest.workload]]\nkind = "timer"\nvcpu = 0\nevery = "1ms"\nclocks = ["TAI"]\n\n[[hosts]]'
    error = _error(MINIMAL.replace("[[hosts]]", timer))
    assert (
        str(error) == 'test.toml: guest.workload[0].clocks: not allowed for kind = "timer" (only for: reader)'
    )
    error = _error(MINIMAL.replace('action = "pause"', 'action = "pause"\nprecopy = "1s"'))
    assert str(error) == 'test.toml: events[0].precopy: not allowed for action = "pause" (only for: migrate)'


def test_unknown_profile() -> None:
    error = _error(MINIMAL.replace('kernels = ["linux-6.13"]', 'kernels = ["linux-6.13", "linux-9.9"]'))
    assert error.field == "guest.kernels[1]"
    assert error.message.startswith("unknown kernel profile 'linux-9.9'; expected one of: linux-5.10")


def test_unknown_policy() -> None:
    error = _error(MINIMAL.replace('vmms = ["qemu"]', 'vmms = ["qemu", "vmware"]'))
    assert error.field == "vmms[1]"
    assert error.message.startswith("unknown VMM policy 'vmware'; expected one of: qemu")
    assert _error(MINIMAL.replace('vmms = ["qemu"]', 'vmms = ["qemu@9.9"]')).field == "vmms[0]"


def test_name_listed_twice() -> None:
    error = _error(MINIMAL.replace('vmms = ["qemu"]', 'vmms = ["qemu", "qemu"]'))
    assert str(error) == 'test.toml: vmms[1]: "qemu" is listed twice'


def test_unknown_host_in_to() -> None:
    error = _error(
        _with_events('[[events]]\nat = "1s"\naction = "migrate"\nto = "elsewhere"\nduration = "1s"\n')
    )
    assert str(error) == 'test.toml: events[0].to: unknown host "elsewhere"; expected one of: host, dst'


def test_migrate_needs_a_destination() -> None:
    error = _error(_with_events('[[events]]\nat = "1s"\naction = "migrate"\nduration = "1s"\n'))
    assert error.field == "events[0].to"
    assert error.message.startswith("missing")


def test_duplicate_host_name() -> None:
    text = MINIMAL.replace("[[events]]", '[[hosts]]\nname = "host"\ntsc_khz = 1\n\n[[events]]')
    assert str(_error(text)) == 'test.toml: hosts[1].name: host "host" is defined twice'


def test_events_out_of_order() -> None:
    events = (
        '[[events]]\nat = "100s"\naction = "pause"\nduration = "1s"\n\n'
        '[[events]]\nat = "50s"\naction = "stop"\nduration = "1s"\n'
    )
    error = _error(_with_events(events))
    assert str(error) == (
        "test.toml: events[1].at: 50s is before events[0] (pause at 100s); events must be in time order"
    )


def test_overlapping_events_count_the_precopy() -> None:
    events = (
        '[[events]]\nat = "10s"\naction = "migrate"\nto = "dst"\nprecopy = "1s"\nduration = "200s"\n\n'
        '[[events]]\nat = "210s"\naction = "host-suspend"\nduration = "1h"\n'
    )
    error = _error(_with_events(events))
    assert (
        str(error) == "test.toml: events[1].at: 210s overlaps events[0] (migrate at 10s), which ends at 211s"
    )
    back_to_back = parse_scenario(_with_events(events.replace('"210s"', '"211s"')))
    assert [event.at_ns for event in back_to_back.events] == [10 * S, 211 * S]


def test_negative_duration() -> None:
    error = _error(MINIMAL.replace('duration = "200s"', 'duration = "-200s"'))
    assert str(error) == "test.toml: events[0].duration: expected a non-negative duration, got '-200s'"


def test_zero_duration_event() -> None:
    error = _error(MINIMAL.replace('duration = "200s"', 'duration = "0s"'))
    assert error.field == "events[0].duration"
    assert error.message == 'expected a duration greater than 0, got "0s"'


def test_duration_past_64_bits() -> None:
    for text in ("300y", "1e20s", "1e999999s"):
        error = _error(MINIMAL.replace('duration = "200s"', f'duration = "{text}"'))
        assert error.field == "events[0].duration"


def test_realtime_error_may_be_negative_only_there() -> None:
    text = MINIMAL.replace("tsc_khz = 3000000", 'tsc_khz = 3000000\nrealtime_error = "-1.5s"')
    assert parse_scenario(text).hosts[0].realtime_error_ns == -1500 * MS
    error = _error(MINIMAL.replace("tsc_khz = 3000000", 'tsc_khz = 3000000\nuptime = "-1s"'))
    assert error.field == "hosts[0].uptime"


def test_vcpu_out_of_range() -> None:
    workload = '[[guest.workload]]\nkind = "idle"\nvcpu = 1\n\n[[hosts]]'
    error = _error(MINIMAL.replace("[[hosts]]", workload))
    assert str(error) == "test.toml: guest.workload[0].vcpu: expected an integer from 0 to 0, got 1"
    assert _error(MINIMAL.replace("vcpus = 1", "vcpus = 65")).field == "guest.vcpus"


def test_a_vcpu_is_busy_or_idle() -> None:
    workload = (
        '[[guest.workload]]\nkind = "reader"\nvcpu = 0\nevery = "1ms"\n\n'
        '[[guest.workload]]\nkind = "idle"\nvcpu = 0\n\n[[hosts]]'
    )
    error = _error(MINIMAL.replace("[[hosts]]", workload))
    assert error.field == "guest.workload[1].vcpu"
    assert "vCPU 0 already has a reader or idle workload (guest.workload[0])" in error.message


def test_bad_verdict_id() -> None:
    expect = '\n[[expect]]\nkernel = "*"\nvmm = "qemu"\nverdicts = ["softlockup", "time-travel"]\n'
    error = _error(MINIMAL + expect)
    assert error.field == "expect[0].verdicts[1]"
    assert error.message.startswith('unknown verdict ID "time-travel"; expected one of: time-backwards')


def test_expectation_names_a_listed_kernel_and_vmm() -> None:
    error = _error(MINIMAL + '\n[[expect]]\nkernel = "linux-6.1"\nvmm = "*"\nverdicts = []\n')
    assert str(error) == (
        'test.toml: expect[0].kernel: "linux-6.1" is not in guest.kernels; expected "*" or one of: linux-6.13'
    )


def test_toml_syntax_error_names_the_line() -> None:
    error = _error(MINIMAL.replace("vcpus = 1", "vcpus = = 1"))
    assert error.field == "line 7"
    assert error.message.startswith("invalid TOML: Invalid value (column")
    assert _error("a = [1,\n").field == "line 1"


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ScenarioError) as caught:
        load_scenario(missing)
    assert str(caught.value) == f"{missing}: file: cannot read: No such file or directory"
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b'name = "\xff"\n')
    with pytest.raises(ScenarioError) as caught:
        load_scenario(binary)
    assert str(caught.value) == f"{binary}: file: cannot read: not UTF-8 text (invalid start byte at byte 8)"


def test_deep_nesting_is_an_error_not_a_crash() -> None:
    assert _error("a = " + "[" * 5000 + "]" * 5000).field == "file"
