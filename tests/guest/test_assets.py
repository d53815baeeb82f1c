"""guest/assets.py: the initramfs layout, the cache and its manifest, fetch failures, the static probe."""

from __future__ import annotations

import os
import shutil
import stat
import struct
from collections.abc import Sequence
from pathlib import Path

import pytest

from tsclab.guest import assets
from tsclab.guest.assets import (
    FetchError,
    GuestAssets,
    Missing,
    MissingAssets,
    cache_dir,
    compile_probe,
    fetch,
    initramfs_bytes,
    load_assets,
    missing_host_tools,
    write_manifest,
)

# ---------------------------------------------------------------------------
# A newc reader, independent of the writer under test


def _align4(n: int) -> int:
    return (n + 3) & ~3


def read_newc(blob: bytes) -> list[tuple[str, int, bytes]]:
    """(name, mode, data) of every member before the trailer; checks the framing."""
    members: list[tuple[str, int, bytes]] = []
    offset = 0
    while True:
        head = blob[offset : offset + 110]
        assert head[:6] == b"070701", f"bad magic at {offset}"
        fields = [int(head[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, namesize = fields[1], fields[6], fields[11]
        assert fields[2] == fields[3] == 0, "owned by root"
        name_end = offset + 110 + namesize
        assert blob[name_end - 1] == 0, "name is NUL-terminated"
        name = blob[offset + 110 : name_end - 1].decode()
        offset = _align4(name_end)
        data = blob[offset : offset + filesize]
        offset = _align4(offset + filesize)
        if name == "TRAILER!!!":
            assert offset == len(blob), "nothing after the trailer"
            return members
        members.append((name, mode, data))


def test_initramfs_layout() -> None:
    blob = initramfs_bytes(b"BUSYBOX\x7f", b"PROBE", b"#!/bin/busybox sh\n")
    assert read_newc(blob) == [
        ("bin", stat.S_IFDIR | 0o755, b""),
        ("dev", stat.S_IFDIR | 0o755, b""),
        ("proc", stat.S_IFDIR | 0o755, b""),
        ("sys", stat.S_IFDIR | 0o755, b""),
        ("bin/busybox", stat.S_IFREG | 0o755, b"BUSYBOX\x7f"),
        ("init", stat.S_IFREG | 0o755, b"#!/bin/busybox sh\n"),
        ("probe", stat.S_IFREG | 0o755, b"PROBE"),
    ]


def test_initramfs_is_deterministic() -> None:
    args = (b"b" * 1001, b"p" * 7, b"i" * 3)
    assert initramfs_bytes(*args) == initramfs_bytes(*args)


# ---------------------------------------------------------------------------
# cache_dir


def test_cache_dir_prefers_tsclab_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TSCLAB_CACHE", str(tmp_path / "own"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "own"


def test_cache_dir_uses_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TSCLAB_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "tsclab"


@pytest.mark.parametrize("xdg", [None, "", "relative/cache"])
def test_cache_dir_falls_back_to_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, xdg: str | None
) -> None:
    monkeypatch.delenv("TSCLAB_CACHE", raising=False)
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "tsclab"


# ---------------------------------------------------------------------------
# GuestAssets and the manifest


def fake_cache(cache: Path) -> GuestAssets:
    """A guest directory of tiny files, with a manifest from the module's own writer."""
    root = cache / "guest"
    root.mkdir(parents=True)
    made = GuestAssets(
        root=root,
        kernel=root / "vmlinuz",
        kernel_config=root / "config",
        kernel_release="6.1.0-56-amd64",
        kernel_package_version="6.1.192-2",
        busybox=root / "busybox",
        probe=root / "probe",
        initramfs=root / "initramfs.cpio",
    )
    for role, path in made.files().items():
        path.write_bytes(role.encode())
    write_manifest(made, packages={"linux-image-6.1.0-56-amd64": "6.1.192-2"})
    return made


@pytest.mark.parametrize(
    ("release", "profile"),
    [
        ("6.1.0-56-amd64", "linux-6.1"),
        ("6.10.3-arch1", "linux-6.10"),
        ("5.10.0-30-cloud-amd64", "linux-5.10"),
    ],
)
def test_profile_name(tmp_path: Path, release: str, profile: str) -> None:
    p = tmp_path
    made = GuestAssets(p, p / "k", p / "c", release, "1", p / "b", p / "p", p / "i")
    assert made.profile_name() == profile


def test_manifest_round_trip(tmp_path: Path) -> None:
    made = fake_cache(tmp_path)
    assert load_assets(tmp_path) == made
    leftovers = [p.name for p in made.root.iterdir() if p.name.startswith(".")]
    assert leftovers == [], "the atomic write leaves no temporary file"


def test_load_assets_empty_cache(tmp_path: Path) -> None:
    with pytest.raises(MissingAssets, match="not fetched") as caught:
        load_assets(tmp_path)
    assert "manifest.json" in caught.value.what
    assert str(tmp_path / "guest") in str(caught.value)
    assert caught.value.how == "run `tsclab guest fetch`"


@pytest.mark.parametrize("role", ["kernel", "kernel_config", "busybox", "probe", "initramfs"])
def test_load_assets_names_the_changed_file(tmp_path: Path, role: str) -> None:
    path = fake_cache(tmp_path).files()[role]
    path.write_bytes(b"changed")
    with pytest.raises(MissingAssets, match="corrupt") as caught:
        load_assets(tmp_path)
    assert str(path) in caught.value.what


def test_load_assets_names_the_missing_file(tmp_path: Path) -> None:
    made = fake_cache(tmp_path)
    made.probe.unlink()
    with pytest.raises(MissingAssets, match="probe is missing") as caught:
        load_assets(tmp_path)
    assert str(made.probe) in str(caught.value)


@pytest.mark.parametrize(
    "text",
    ["not json", "[]", '{"format": 99}', '{"format": 1, "kernel_release": "6.1"}'],
)
def test_load_assets_bad_manifest(tmp_path: Path, text: str) -> None:
    fake_cache(tmp_path)
    (tmp_path / "guest" / "manifest.json").write_text(text)
    with pytest.raises(MissingAssets, match=r"manifest .* is unreadable"):
        load_assets(tmp_path)


def test_manifest_path_outside_the_cache_is_refused(tmp_path: Path) -> None:
    made = fake_cache(tmp_path)
    manifest = made.root / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"path": "probe"', '"path": "../probe"'))
    with pytest.raises(MissingAssets, match="outside the cache"):
        load_assets(tmp_path)


# ---------------------------------------------------------------------------
# Host tools


def test_missing_host_tools_all(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda _name: None)
    assert missing_host_tools(for_fetch=False) == [
        Missing("qemu-system-x86_64", "apt-get install --no-install-recommends qemu-system-x86")
    ]
    fetch_missing = missing_host_tools(for_fetch=True)
    assert [m.what for m in fetch_missing] == ["apt-get", "apt-cache", "dpkg", "dpkg-deb", "gcc"]
    assert fetch_missing[-1].how == "apt-get install gcc libc6-dev"


def test_missing_static_libc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(assets, "_static_libc", lambda: False)
    assert missing_host_tools(for_fetch=True) == [
        Missing("a static glibc (libc.a)", "apt-get install libc6-dev")
    ]


# ---------------------------------------------------------------------------
# Fetch, with the external commands simulated

KERNEL_PKG = "linux-image-6.1.0-99-amd64"
RELEASE = "6.1.0-99-amd64"


class FakeHost:
    """Stands in for ``assets._run``: apt, dpkg and gcc, as far as fetch sees them."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.fail_on = fail_on
        self.steps: list[str] = []

    def __call__(
        self, step: str, argv: Sequence[str], cwd: Path, timeout: float = assets.QUERY_TIMEOUT
    ) -> str:
        self.steps.append(step)
        assert timeout >= assets.QUERY_TIMEOUT, "no command is cut short"
        if step == self.fail_on:
            raise FetchError(step, argv, 100, f"W: noise\nE: Unable to locate package {argv[-1]}\n")
        match list(argv):
            case ["apt-cache", "depends", "linux-image-amd64"]:
                return f"linux-image-amd64\n  Depends: {KERNEL_PKG}\n"
            case ["apt-get", "download", package]:
                (cwd / f"{package}_1_amd64.deb").write_bytes(package.encode())
                return ""
            case ["dpkg-deb", "--field", deb, "Version"]:
                return "6.1.999-1\n" if "linux-image" in deb else "1:1.35.0-4\n"
            case ["dpkg", "-x", deb, tree]:
                self._unpack(Path(deb), Path(tree))
                return ""
            case ["gcc", "-static", *_, "probe.c"]:
                assert (cwd / "probe.c").read_bytes().startswith(b"/*")
                (cwd / "probe").write_bytes(b"\x7fELF fake probe")
                return ""
        raise AssertionError(f"unexpected command {argv}")

    @staticmethod
    def _unpack(deb: Path, tree: Path) -> None:
        if deb.name.startswith("linux-image"):
            (tree / "boot").mkdir(parents=True)
            (tree / "boot" / f"vmlinuz-{RELEASE}").write_bytes(b"MZ kernel")
            (tree / "boot" / f"config-{RELEASE}").write_text("CONFIG_X86_TSC=y\n")
            (tree / "lib" / "modules" / RELEASE).mkdir(parents=True)
            (tree / "lib" / "modules" / RELEASE / "big.ko").write_bytes(b"module")
        else:
            (tree / "bin").mkdir(parents=True)
            (tree / "bin" / "busybox").write_bytes(b"\x7fELF busybox")


def test_fetch_simulated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = FakeHost()
    monkeypatch.setattr(assets, "_run", host)
    said: list[str] = []
    got = fetch(tmp_path, progress=said.append)
    assert got == load_assets(tmp_path)
    assert (got.kernel_release, got.kernel_package_version) == (RELEASE, "6.1.999-1")
    assert got.kernel.read_bytes() == b"MZ kernel"
    blob = got.initramfs.read_bytes()
    members = {name: data for name, _, data in read_newc(blob)}
    assert members["bin/busybox"] == b"\x7fELF busybox"
    assert members["probe"] == b"\x7fELF fake probe"
    assert members["init"] == (Path(assets.__file__).parent / "init.sh").read_bytes()
    # Only the kept files and the manifest: no staging, no modules.
    assert sorted(p.name for p in got.root.iterdir()) == sorted(
        ["busybox", "config", "initramfs.cpio", "manifest.json", "probe", "vmlinuz"]
    )
    assert said[:2] == ["resolving linux-image-amd64 ...", f"downloading {KERNEL_PKG} ..."]
    assert all("\n" not in line for line in said)


def test_fetch_reuses_a_valid_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    made = fake_cache(tmp_path)
    monkeypatch.setattr(assets, "_run", FakeHost(fail_on="resolve kernel package"))
    assert fetch(tmp_path) == made


def test_fetch_of_another_kernel_does_not_take_the_cached_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake_cache(tmp_path)
    host = FakeHost()
    monkeypatch.setattr(assets, "_run", host)
    said: list[str] = []
    fetch(tmp_path, kernel_package="linux-image-6.1.0-99-cloud-amd64", progress=said.append)
    assert "download kernel" in host.steps
    assert (
        said[0]
        == "the cached guest has linux-image-6.1.0-56-amd64; fetching linux-image-6.1.0-99-cloud-amd64"
    )
    # Asking for the cached kernel by name reuses it.
    monkeypatch.setattr(assets, "_run", FakeHost(fail_on="download kernel"))
    assert fetch(tmp_path, kernel_package=f"linux-image-{RELEASE}").kernel_release == RELEASE


def test_fetch_force_replaces_a_valid_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake_cache(tmp_path)
    monkeypatch.setattr(assets, "_run", FakeHost())
    assert fetch(tmp_path, force=True).kernel_release == RELEASE
    assert load_assets(tmp_path).kernel_release == RELEASE


def test_fetch_explicit_kernel_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = FakeHost()
    monkeypatch.setattr(assets, "_run", host)
    fetch(tmp_path, kernel_package="linux-image-6.1.0-99-cloud-amd64")
    assert "resolve kernel package" not in host.steps


def test_fetch_failure_names_step_and_command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(assets, "_run", FakeHost(fail_on="download kernel"))
    with pytest.raises(FetchError) as caught:
        fetch(tmp_path)
    message = str(caught.value)
    assert "'download kernel'" in message
    assert f"`apt-get download {KERNEL_PKG}`" in message
    assert "exited with status 100" in message
    assert f"E: Unable to locate package {KERNEL_PKG}" in message
    root = tmp_path / "guest"
    assert list(root.iterdir()) == [], "staging removed, no manifest"


def test_fetch_failure_drops_a_stale_manifest_only_once_installing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made = fake_cache(tmp_path)
    monkeypatch.setattr(assets, "_run", FakeHost(fail_on="compile probe"))
    with pytest.raises(FetchError, match="'compile probe'"):
        fetch(tmp_path, force=True)
    # The failure came before anything was installed: the old guest is intact.
    assert load_assets(tmp_path) == made
    assert not [p for p in made.root.iterdir() if p.name.startswith(".fetch-")]


def test_fetch_package_without_kernel(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    host = FakeHost()
    monkeypatch.setattr(host, "_unpack", lambda _deb, tree: tree.mkdir())
    monkeypatch.setattr(assets, "_run", host)
    with pytest.raises(FetchError, match=r"'unpack kernel': .*holds 0 boot/vmlinuz-\* files"):
        fetch(tmp_path)


def test_resolve_without_dependency(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(assets, "_run", lambda *_args, **_kwargs: "linux-image-amd64\n")
    with pytest.raises(FetchError, match="apt-get update"):
        fetch(tmp_path)


# ---------------------------------------------------------------------------
# The real runner


def test_run_nonzero_exit(tmp_path: Path) -> None:
    script = "echo 'W: Download is performed unsandboxed as root' >&2; echo first >&2; echo last >&2; exit 3"
    with pytest.raises(FetchError) as caught:
        assets._run("some step", ["sh", "-c", script], tmp_path)
    error = caught.value
    assert (error.step, error.returncode, error.stderr_tail) == ("some step", 3, "first\nlast")
    assert "`sh -c " in str(error)
    assert "unsandboxed" not in error.stderr_tail


def test_run_missing_program(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="no tsclab-no-such-tool on PATH"):
        assets._run("step", ["tsclab-no-such-tool"], tmp_path)


def test_run_timeout(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"timed out after 0\.2 s"):
        assets._run("step", ["sleep", "5"], tmp_path, timeout=0.2)


def test_run_returns_stdout(tmp_path: Path) -> None:
    assert assets._run("step", ["sh", "-c", "pwd"], tmp_path).strip() == str(tmp_path)


# ---------------------------------------------------------------------------
# The real probe and the real fetch

PT_INTERP = 3


def elf_segment_types(binary: bytes) -> list[int]:
    """p_type of every program header of a 64-bit little-endian ELF."""
    assert binary[:4] == b"\x7fELF"
    assert binary[4] == 2, "ELF64"
    assert binary[5] == 1, "little-endian"
    (phoff,) = struct.unpack_from("<Q", binary, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", binary, 0x36)
    return [struct.unpack_from("<I", binary, phoff + i * phentsize)[0] for i in range(phnum)]


def _compiler_missing() -> str | None:
    gaps = [m for m in missing_host_tools(for_fetch=True) if m.what in ("gcc", "a static glibc (libc.a)")]
    return "; ".join(f"no {m.what} ({m.how})" for m in gaps) or None


@pytest.mark.skipif(_compiler_missing() is not None, reason=f"cannot link statically: {_compiler_missing()}")
def test_probe_compiles_static(tmp_path: Path) -> None:
    probe = compile_probe(tmp_path)
    binary = probe.read_bytes()
    types = elf_segment_types(binary)
    assert types, "has program headers"
    assert PT_INTERP not in types, "no dynamic loader requested"
    assert os.access(probe, os.X_OK)


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs apt-get (a Debian or Ubuntu host)")
@pytest.mark.skipif(
    os.environ.get("TSCLAB_REAL_FETCH") != "1", reason="downloads ~70 MB: set TSCLAB_REAL_FETCH=1 to run"
)
def test_real_fetch(tmp_path: Path) -> None:
    got = fetch(tmp_path)
    assert load_assets(tmp_path) == got
    assert got.profile_name().startswith("linux-")
    kernel = got.kernel.read_bytes()
    assert kernel[0x202:0x206] == b"HdrS", "an x86 bzImage"
    assert "CONFIG_X86_TSC=y" in got.kernel_config.read_text()
    members = {name: data for name, _, data in read_newc(got.initramfs.read_bytes())}
    for name in ("bin/busybox", "probe"):
        assert PT_INTERP not in elf_segment_types(members[name]), f"{name} is static"
    assert fetch(tmp_path) == got, "the second fetch is the cache"
