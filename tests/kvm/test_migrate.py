"""Real migrations between two VMM processes on this host's /dev/kvm (skipped, with the reason, where
KVM does not work), with every fault of issue 7: the connection dropped at each message, a corrupted
payload, another wire version, a destination with another TSC frequency and no scaling.

Whatever happens, the guest runs on exactly one side afterwards, its kvmclock never went back, what
it saw agrees with the model's prediction for the same operations within the measured host-clock
error, and nothing is left behind: no child process, no fd, no network namespace.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kvm.host_state import all_zero_offsets, child_pids, open_fds
from tsclab.kvm import netns
from tsclab.kvm.facts import HostFacts, host_facts
from tsclab.kvm.migrate import MigrationOptions, MigrationReport, migrate
from tsclab.kvm.pvclock import PvclockTimeInfo
from tsclab.kvm.system import DEVICE, Kvm
from tsclab.kvm.vmm_process import MIGRATE_POLICIES
from tsclab.kvm.wire import Fault
from tsclab.nap.page import FLAG_UNACKED, WOKEN

MS = 1_000_000
STOP_NS = 200 * MS
#: Every message of a migration, in order (the probe guest's 2 MiB travel as 4 RAM messages).
MESSAGES = ("HELLO", "WELCOME", "RAM.0", "RAM.1", "RAM.2", "RAM.3", "CPU", "CLOCK", "READY", "GO", "DONE")
#: Policies whose own resume (and migration) hide the stop from kvmclock: QEMU's KVM_SET_CLOCK of the
#: value read at the stop. The others let kvmclock count it.
HIDES_STOP = {"qemu", "tsc-state"}
#: Steps that write the guest's TSC; this host accepts and ignores such writes.
TSC_WRITES = {"set-tsc-msrs", "set-tsc-offsets-doc", "set-tsc-offsets-scaled", "set-tsc-state"}


@pytest.fixture(scope="session")
def facts(kvm_unusable_reason: str | None) -> HostFacts:
    if kvm_unusable_reason is not None:
        pytest.skip(kvm_unusable_reason)
    with Kvm.open(DEVICE) as kvm:
        return host_facts(kvm)


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Nothing the test started outlives it: child processes, fds, network namespaces."""
    fds, children, spaces = open_fds(), child_pids(), netns.list_namespaces()
    yield
    assert child_pids() == children
    assert open_fds() == fds
    assert netns.list_namespaces() == spaces


def _run(facts: HostFacts, policy: str, **kwargs: object) -> MigrationReport:
    return migrate(MigrationOptions(policy=policy, **kwargs), facts)  # type: ignore[arg-type]


def _assert_guest_clock_correct(report: MigrationReport, policy: str) -> None:
    """Correct, per policy: never back; what the model predicts; the stop hidden or counted."""
    m, a = report.measurement, report.agreement
    assert m is not None, report.error
    assert a is not None
    assert not m.backwards
    assert a.kvmclock_agrees, a.to_dict()
    assert a.tsc_agrees, a.to_dict()
    if policy in HIDES_STOP and report.stopped:  # (a failure before the stop leaves the guest running)
        assert m.kvmclock_advance_ns < m.downtime_ns // 2  # the stop is hidden
        assert m.kvmclock_discontinuity_ns < -(m.downtime_ns // 2)
    else:  # the stop is counted, up to the host's realtime running off its TSC (100 ppm allowed)
        assert abs(m.kvmclock_discontinuity_ns) <= a.tolerance_ns + m.downtime_ns // 10_000


@pytest.mark.parametrize("policy", MIGRATE_POLICIES)
@pytest.mark.usefixtures("no_leaks")
def test_migration_per_policy_agrees_with_the_model(facts: HostFacts, policy: str) -> None:
    report = _run(facts, policy, downtime_ns=STOP_NS)
    assert report.ok, report.error
    assert report.guest_on == "destination"
    _assert_guest_clock_correct(report, policy)
    m = report.measurement
    assert m is not None
    assert m.downtime_ns >= STOP_NS
    assert m.after.method == m.before.method == "tsc"  # placed on KVM's (realtime, host TSC) pairs here
    first = report.destination.record["samples"]["first"]["pvclock"]
    stopped_flag = bool(PvclockTimeInfo.parse(bytes.fromhex(first)).guest_stopped)
    assert stopped_flag == ("kvmclock-ctrl" in report.policy.restore_resume)
    # Every step of the policy ran, in order, with a status; TSC writes as this host does them.
    ran = [(r.phase, r.step) for r in report.steps if r.phase != "nap"]
    expected = [("pause", s) for s in report.policy.pause] + [("save", s) for s in report.policy.save]
    expected += [("restore", s) for s in report.policy.restore]
    expected += [("restore_resume", s) for s in report.policy.restore_resume]
    assert ran == expected
    for r in report.steps:
        if r.step in TSC_WRITES:
            effective = facts.tsc_offset_effective or all_zero_offsets(r.detail)
            assert r.status == ("done" if effective else "ineffective"), r.detail
        else:
            assert r.status in ("done", "cannot"), r.detail
    assert set(report.clock_state) == {"source_steps", "destination_steps", "clock_message", "total"}
    assert 0 < report.clock_state["total"] < m.downtime_ns


@pytest.mark.usefixtures("no_leaks")
def test_nap_writes_the_page_the_guest_registered(facts: HostFacts) -> None:
    report = _run(facts, "nap", downtime_ns=STOP_NS)
    assert report.ok, report.error
    page = report.destination.record["nap_page"]
    m = report.measurement
    assert m is not None
    assert page["host_state"] == WOKEN
    assert page["generation"] == page["woken_generation"] == 1
    assert page["flags"] & FLAG_UNACKED  # the probe guest never parks: napped anyway after the deadline
    assert page["acked_generation"] == page["applied_generation"] == 0
    assert STOP_NS <= page["nap_ns"] <= m.downtime_ns  # from the freeze to the wake, inside the downtime
    assert page["slept_ns"] == page["nap_ns"]
    assert page["tsc_khz"] == facts.tsc_khz
    statuses = {r.step: r.status for r in report.steps if r.phase == "nap"}
    assert statuses == {
        "nap-register": "cannot",
        "nap-request": "done",
        "nap-freeze": "done",
        "nap-wake": "done",
    }


@pytest.mark.parametrize("message", MESSAGES)
@pytest.mark.usefixtures("no_leaks")
def test_connection_dropped_at_every_message(facts: HostFacts, message: str) -> None:
    report = _run(facts, "qemu", fault=Fault("drop", message), downtime_ns=50 * MS)
    assert not report.ok
    assert report.error is not None
    assert "fault injected: connection dropped instead of sending " + message in report.error
    # GO is the commit: before it the source keeps the guest, after it the destination has it.
    assert report.guest_on == ("destination" if message == "DONE" else "source")
    assert report.source.returncode == report.destination.returncode == 1
    _assert_guest_clock_correct(report, "qemu")


@pytest.mark.parametrize("policy", MIGRATE_POLICIES)
@pytest.mark.usefixtures("no_leaks")
def test_drop_after_the_stop_resumes_the_source_per_policy(facts: HostFacts, policy: str) -> None:
    report = _run(facts, policy, fault=Fault("drop", "CLOCK"), downtime_ns=STOP_NS)
    assert report.guest_on == "source"
    _assert_guest_clock_correct(report, policy)
    assert [r.step for r in report.steps if r.phase == "resume"] == list(report.policy.resume)


@pytest.mark.parametrize("message", ["RAM.1", "CLOCK", "GO"])
@pytest.mark.usefixtures("no_leaks")
def test_a_corrupted_payload_is_refused(facts: HostFacts, message: str) -> None:
    report = _run(facts, "upstream-doc", fault=Fault("corrupt", message), downtime_ns=50 * MS)
    assert report.guest_on == "source"
    assert report.destination.record["error_kind"] == "ChecksumMismatchError"
    assert f"checksum mismatch in {message.split('.')[0]}" in (report.error or "")
    _assert_guest_clock_correct(report, "upstream-doc")


@pytest.mark.parametrize("message", ["HELLO", "CLOCK"])
@pytest.mark.usefixtures("no_leaks")
def test_another_wire_version_is_refused(facts: HostFacts, message: str) -> None:
    report = _run(facts, "qemu", fault=Fault("version", message), downtime_ns=50 * MS)
    assert report.guest_on == "source"
    assert "the source sent wire version 2; this destination speaks version 1" in (report.error or "")
    _assert_guest_clock_correct(report, "qemu")


@pytest.mark.parametrize("policy", MIGRATE_POLICIES)
@pytest.mark.usefixtures("no_leaks")
def test_a_destination_with_another_tsc_frequency_refuses(facts: HostFacts, policy: str) -> None:
    if facts.tsc_scaling:
        pytest.skip("this KVM scales the TSC: a destination at another frequency would take the guest")
    other = facts.tsc_khz * 3 // 4
    report = _run(facts, policy, destination_tsc_khz=other, downtime_ns=STOP_NS)
    assert not report.ok
    assert report.guest_on == "source"
    refused = report.destination.record["refused"]
    assert refused is not None
    assert f"expected {facts.tsc_khz} kHz within 250 ppm" in refused
    assert f"this destination's at {other} kHz" in refused
    assert report.source.record["error_kind"] == "PeerError"
    _assert_guest_clock_correct(report, policy)
    m = report.measurement
    assert m is not None
    assert m.downtime_ns >= STOP_NS
    if policy == "nap":
        page = report.source.record["nap_page"]
        assert page["host_state"] == WOKEN
        assert STOP_NS <= page["nap_ns"] <= m.downtime_ns


@pytest.fixture
def namespaces_possible() -> None:
    reason = netns.unavailable_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.mark.usefixtures("namespaces_possible", "no_leaks")
def test_migration_between_two_network_namespaces(facts: HostFacts) -> None:
    report = _run(facts, "upstream-doc", netns=True, downtime_ns=50 * MS)
    assert report.ok, report.error
    assert report.namespaces is not None
    assert all(name not in netns.list_namespaces() for name in report.namespaces)
    _assert_guest_clock_correct(report, "upstream-doc")


@pytest.mark.usefixtures("namespaces_possible", "no_leaks")
def test_namespaces_are_removed_after_a_failed_migration(facts: HostFacts) -> None:
    report = _run(facts, "qemu", netns=True, fault=Fault("drop", "READY"), downtime_ns=50 * MS)
    assert report.guest_on == "source"
    _assert_guest_clock_correct(report, "qemu")


@pytest.mark.usefixtures("namespaces_possible", "no_leaks")
def test_namespaces_are_removed_when_setting_them_up_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    real = netns._ip

    def fail_on_veth(args: list[str]) -> None:
        if "veth" in args:
            raise netns.NetnsError("ip link add: injected failure")
        real(args)

    monkeypatch.setattr(netns, "_ip", fail_on_veth)
    with pytest.raises(netns.NetnsError, match="injected failure"), netns.namespace_pair():
        pass
