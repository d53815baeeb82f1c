"""What a real guest run needs, fetched once and cached.

A run boots Debian's stock kernel (the ABI package that the
``linux-image-amd64`` meta package currently depends on) with an initramfs
holding a static busybox, the ``/init`` script and the static probe.
``fetch`` downloads the two packages with apt, keeps only the files it
needs, compiles the probe and builds the initramfs, all in a staging
directory inside the cache.  The manifest, holding the sha256 of every
file, is written last and atomically: ``load_assets`` believes nothing
else, so an interrupted fetch is never taken for a good one.

Layout: ``<cache>/guest/`` holds ``vmlinuz``, ``config``, ``busybox``,
``probe``, ``initramfs.cpio`` and ``manifest.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from tsclab.guest import initramfs

KERNEL_PACKAGE_META = "linux-image-amd64"
BUSYBOX_PACKAGE = "busybox-static"

GUEST_SUBDIR = "guest"
MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
FETCH_HOW = "run `tsclab guest fetch`"

# File names inside the guest directory.  Fixed names, whatever the kernel
# release, so a re-fetch of a newer kernel leaves nothing stale behind.
KERNEL_FILE = "vmlinuz"
CONFIG_FILE = "config"
BUSYBOX_FILE = "busybox"
PROBE_FILE = "probe"
INITRAMFS_FILE = "initramfs.cpio"

# Seconds.  The kernel package is ~70 MB and unpacks to ~400 MB of modules.
QUERY_TIMEOUT = 120.0
DOWNLOAD_TIMEOUT = 1800.0
UNPACK_TIMEOUT = 600.0
COMPILE_TIMEOUT = 300.0

STDERR_TAIL_LINES = 6

_RELEASE = re.compile(r"(\d+)\.(\d+)")
_DEPENDS = re.compile(r"^\s*\|?Depends:\s*(linux-image-\S+)\s*$", re.MULTILINE)

# Labels used in messages, in manifest order.
_LABELS = {
    "kernel": "kernel",
    "kernel_config": "kernel config",
    "busybox": "busybox",
    "probe": "probe",
    "initramfs": "initramfs",
}


@dataclass(frozen=True)
class GuestAssets:
    """The fetched files of one guest, all inside ``root``."""

    root: Path
    kernel: Path  # vmlinuz
    kernel_config: Path
    kernel_release: str  # e.g. "6.1.0-56-amd64"
    kernel_package_version: str  # e.g. "6.1.192-2"
    busybox: Path
    probe: Path  # the compiled static probe
    initramfs: Path

    def files(self) -> dict[str, Path]:
        """Each file by its field name, in manifest order."""
        return {
            "kernel": self.kernel,
            "kernel_config": self.kernel_config,
            "busybox": self.busybox,
            "probe": self.probe,
            "initramfs": self.initramfs,
        }

    def profile_name(self) -> str:
        """The tsclab kernel profile named after this kernel's major.minor, e.g. "linux-6.1".

        Only the name: whether such a profile exists is the caller's check.
        """
        match = _RELEASE.match(self.kernel_release)
        if match is None:
            raise ValueError(f"not a kernel release: {self.kernel_release!r}")
        return f"linux-{int(match[1])}.{int(match[2])}"


@dataclass(frozen=True)
class Missing:
    """A host tool that is not there, and how to get it."""

    what: str
    how: str


class MissingAssets(Exception):  # noqa: N818  (the name callers know; it is a state, not a bug)
    """The cache holds no complete, intact guest."""

    def __init__(self, what: str, how: str = FETCH_HOW) -> None:
        super().__init__(f"{what}: {how}")
        self.what = what
        self.how = how


class FetchError(Exception):
    """A fetch step failed: which step, which command, and the end of its stderr.

    ``command`` is empty for a step that ran no command (a package that does
    not hold what it should); ``problem`` then says what went wrong.
    """

    def __init__(
        self,
        step: str,
        command: Sequence[str],
        returncode: int | None,
        stderr: str,
        *,
        problem: str | None = None,
    ) -> None:
        self.step = step
        self.command = tuple(command)
        self.returncode = returncode
        self.stderr_tail = _tail(stderr)
        self.problem = problem if problem is not None else f"exited with status {returncode}"
        text = f"fetching the guest failed at step '{step}': "
        if self.command:
            text += f"`{shlex.join(self.command)}` "
        text += self.problem
        if self.stderr_tail:
            text += "; its stderr ends:\n" + "\n".join(
                f"    {line}" for line in self.stderr_tail.splitlines()
            )
        super().__init__(text)


def _tail(stderr: str) -> str:
    # Run as root, apt warns that it cannot drop to its '_apt' user to
    # write into our staging directory; harmless, and it would crowd out
    # the real error.
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip() and "unsandboxed" not in line]
    return "\n".join(lines[-STDERR_TAIL_LINES:])


def cache_dir() -> Path:
    """``$TSCLAB_CACHE``, else ``$XDG_CACHE_HOME/tsclab``, else ``~/.cache/tsclab``."""
    own = os.environ.get("TSCLAB_CACHE")
    if own:
        return Path(own).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative path is invalid and to be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "tsclab"
    return Path.home() / ".cache" / "tsclab"


def guest_dir(cache: Path | None = None) -> Path:
    """The directory holding the guest's files and manifest."""
    return (cache if cache is not None else cache_dir()) / GUEST_SUBDIR


# ---------------------------------------------------------------------------
# Host tools


def _static_libc() -> bool:
    # gcc prints the bare name back when it has no such file.
    try:
        done = subprocess.run(
            ["gcc", "-print-file-name=libc.a"],
            capture_output=True,
            text=True,
            timeout=QUERY_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    found = done.stdout.strip()
    return done.returncode == 0 and os.path.isabs(found) and os.path.isfile(found)


def missing_host_tools(*, for_fetch: bool) -> list[Missing]:
    """What the host lacks to fetch the guest (``for_fetch``) or to run it."""
    if not for_fetch:
        if shutil.which("qemu-system-x86_64") is None:
            return [Missing("qemu-system-x86_64", "apt-get install --no-install-recommends qemu-system-x86")]
        return []
    missing = [
        Missing(tool, "a Debian or Ubuntu host")
        for tool in ("apt-get", "apt-cache", "dpkg", "dpkg-deb")
        if shutil.which(tool) is None
    ]
    if shutil.which("gcc") is None:
        missing.append(Missing("gcc", "apt-get install gcc libc6-dev"))
    elif not _static_libc():
        missing.append(Missing("a static glibc (libc.a)", "apt-get install libc6-dev"))
    return missing


# ---------------------------------------------------------------------------
# Manifest


def _sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def guest_sources_digest() -> str:
    """sha256 over the packaged guest sources: a cached initramfs built from others is stale."""
    digest = hashlib.sha256()
    for name in ("probe.c", "init.sh"):
        digest.update(name.encode() + b"\0" + _package_resource(name) + b"\0")
    return digest.hexdigest()


def write_manifest(assets: GuestAssets, *, packages: Mapping[str, str] | None = None) -> Path:
    """Record ``assets`` (and the package versions that went in) in ``<root>/manifest.json``.

    Atomic: a reader sees the old manifest or the whole new one.
    """
    files: dict[str, dict[str, str]] = {}
    for role, path in assets.files().items():
        # relative_to refuses a file outside the root: the cache must be movable.
        files[role] = {"path": path.relative_to(assets.root).as_posix(), "sha256": _sha256(path)}
    record = {
        "format": MANIFEST_FORMAT,
        "kernel_release": assets.kernel_release,
        "kernel_package_version": assets.kernel_package_version,
        "packages": dict(packages or {}),
        "guest_sources": guest_sources_digest(),
        "files": files,
    }
    final = assets.root / MANIFEST
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST}.", dir=assets.root)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(record, indent=2, sort_keys=True) + "\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def _manifest_text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"no {key}")
    return value


def load_assets(cache: Path | None = None) -> GuestAssets:
    """The fetched guest, every file checked against the manifest's sha256.

    Raises ``MissingAssets`` naming the first missing or damaged file.
    """
    root = guest_dir(cache)
    manifest = root / MANIFEST
    try:
        data = json.loads(manifest.read_text())
    except FileNotFoundError:
        raise MissingAssets(f"the guest kernel is not fetched ({root}: no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise MissingAssets(f"the guest manifest {manifest} is unreadable ({exc})") from None
    try:
        if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"not a format {MANIFEST_FORMAT} manifest")
        release = _manifest_text(data, "kernel_release")
        if _RELEASE.match(release) is None:
            raise ValueError(f"kernel_release {release!r} is not a kernel release")
        version = _manifest_text(data, "kernel_package_version")
        entries = data.get("files")
        if not isinstance(entries, dict):
            raise ValueError("no files")
        recorded: dict[str, tuple[Path, str]] = {}
        for role in _LABELS:
            entry = entries.get(role)
            if not isinstance(entry, dict):
                raise ValueError(f"no {role} entry")
            rel = Path(_manifest_text(entry, "path"))
            if rel.is_absolute() or ".." in rel.parts:
                raise ValueError(f"{role} path {rel} is outside the cache")
            recorded[role] = (root / rel, _manifest_text(entry, "sha256"))
    except ValueError as exc:
        raise MissingAssets(f"the guest manifest {manifest} is unreadable ({exc})") from None
    for role, (path, digest) in recorded.items():
        label = _LABELS[role]
        if not path.is_file():
            raise MissingAssets(f"the guest {label} is missing ({path})")
        if _sha256(path) != digest:
            raise MissingAssets(f"the guest {label} is corrupt ({path}: sha256 differs from {MANIFEST})")
    if data.get("guest_sources") != guest_sources_digest():
        raise MissingAssets(
            f"the guest initramfs in {root} is stale (built from another probe.c or init.sh)",
            "run `tsclab guest fetch --force`",
        )
    paths = {role: path for role, (path, _) in recorded.items()}
    return GuestAssets(
        root=root,
        kernel=paths["kernel"],
        kernel_config=paths["kernel_config"],
        kernel_release=release,
        kernel_package_version=version,
        busybox=paths["busybox"],
        probe=paths["probe"],
        initramfs=paths["initramfs"],
    )


# ---------------------------------------------------------------------------
# Building blocks


def _run(step: str, argv: Sequence[str], cwd: Path, timeout: float = QUERY_TIMEOUT) -> str:
    """Run one external command of ``step``; its stdout, or ``FetchError``.

    Every external command of a fetch goes through here (tests replace it).
    """
    # apt's output is parsed: keep it in English whatever the user's locale.
    env = {**os.environ, "LC_ALL": "C"}
    try:
        done = subprocess.run(
            list(argv), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except FileNotFoundError:
        raise FetchError(step, argv, None, "", problem=f"could not start: no {argv[0]} on PATH") from None
    except subprocess.TimeoutExpired as exc:
        # The partial output of a timed-out run comes back as bytes, text=True or not.
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise FetchError(step, argv, None, stderr, problem=f"timed out after {timeout:g} s") from None
    if done.returncode != 0:
        raise FetchError(step, argv, done.returncode, done.stderr)
    return done.stdout


def initramfs_bytes(busybox: bytes, probe: bytes, init_script: bytes) -> bytes:
    """The guest's initramfs: busybox, ``/init`` and ``/probe``.

    /init installs busybox's applet links itself, and mounts proc, sysfs
    and devtmpfs on the empty directories made here.
    """
    return initramfs.build(
        [
            initramfs.directory("bin"),
            initramfs.directory("dev"),
            initramfs.directory("proc"),
            initramfs.directory("sys"),
            initramfs.file("bin/busybox", busybox, 0o755),
            initramfs.file("init", init_script, 0o755),
            initramfs.file("probe", probe, 0o755),
        ]
    )


def _package_resource(name: str) -> bytes:
    return resources.files("tsclab.guest").joinpath(name).read_bytes()


def compile_probe(workdir: Path) -> Path:
    """Compile the packaged ``probe.c`` statically in ``workdir``; the binary's path."""
    (workdir / "probe.c").write_bytes(_package_resource("probe.c"))
    # Static: the initramfs has no dynamic loader and no libc.
    argv = ["gcc", "-static", "-O2", "-Wall", "-Wextra", "-o", "probe", "probe.c"]
    _run("compile probe", argv, workdir, timeout=COMPILE_TIMEOUT)
    return workdir / "probe"


def _resolve_kernel_package(workdir: Path) -> str:
    step = "resolve kernel package"
    argv = ["apt-cache", "depends", KERNEL_PACKAGE_META]
    match = _DEPENDS.search(_run(step, argv, workdir))
    if match is None:
        raise FetchError(
            step,
            argv,
            0,
            "",
            problem="names no linux-image-* dependency (are the package lists current? try `apt-get update`)",
        )
    return match[1]


def _download_and_unpack(
    what: str, package: str, workdir: Path, progress: Callable[[str], None]
) -> tuple[str, Path]:
    """Download ``package`` into ``workdir`` and unpack it; its version and unpacked tree."""
    workdir.mkdir()
    progress(f"downloading {package} ...")
    _run(f"download {what}", ["apt-get", "download", package], workdir, timeout=DOWNLOAD_TIMEOUT)
    debs = sorted(workdir.glob("*.deb"))
    if len(debs) != 1:
        raise FetchError(
            f"download {what}", (), None, "", problem=f"expected one .deb in {workdir}, found {len(debs)}"
        )
    deb = debs[0]
    version = _run(f"read {what} version", ["dpkg-deb", "--field", str(deb), "Version"], workdir).strip()
    if not version:
        raise FetchError(f"read {what} version", (), None, "", problem=f"{deb.name} has no Version field")
    progress(f"unpacking {package} {version} ...")
    tree = workdir / "tree"
    _run(f"unpack {what}", ["dpkg", "-x", str(deb), str(tree)], workdir, timeout=UNPACK_TIMEOUT)
    deb.unlink()  # it has served; keep the staging area's peak size down
    return version, tree


def _quiet(_message: str) -> None:
    pass


# ---------------------------------------------------------------------------
# Fetch


def fetch(
    cache: Path | None = None,
    *,
    progress: Callable[[str], None] = _quiet,
    force: bool = False,
    kernel_package: str | None = None,
) -> GuestAssets:
    """Fetch, build and cache everything a real guest run needs; the cached assets.

    A valid cache is returned as is unless ``force``, or unless it holds
    another kernel than ``kernel_package``, which overrides the kernel
    package (default: what ``linux-image-amd64`` depends on now).  Needs
    apt, dpkg, gcc and a static glibc (see ``missing_host_tools``); a
    failing step raises ``FetchError``.
    """
    root = guest_dir(cache)
    if not force:
        try:
            assets = load_assets(cache)
        except MissingAssets:
            pass
        else:
            cached = f"linux-image-{assets.kernel_release}"
            if kernel_package is None or kernel_package == cached:
                progress(f"using the cached guest in {root}")
                return assets
            # Another kernel was asked for: the cached one does not answer it.
            progress(f"the cached guest has {cached}; fetching {kernel_package}")
    root.mkdir(parents=True, exist_ok=True)
    # Inside the guest directory so the final moves are renames on one file system.
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=root))
    try:
        return _fetch_into(root, staging, progress, kernel_package)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _fetch_into(
    root: Path, staging: Path, progress: Callable[[str], None], kernel_package: str | None
) -> GuestAssets:
    out = staging / "out"
    out.mkdir()

    if kernel_package is None:
        progress(f"resolving {KERNEL_PACKAGE_META} ...")
        kernel_package = _resolve_kernel_package(staging)
    kernel_version, tree = _download_and_unpack("kernel", kernel_package, staging / "kernel", progress)
    kernels = sorted((tree / "boot").glob("vmlinuz-*"))
    if len(kernels) != 1:
        raise FetchError(
            "unpack kernel",
            (),
            None,
            "",
            problem=f"{kernel_package} holds {len(kernels)} boot/vmlinuz-* files, not one",
        )
    release = kernels[0].name.removeprefix("vmlinuz-")
    config = tree / "boot" / f"config-{release}"
    if not config.is_file():
        raise FetchError(
            "unpack kernel", (), None, "", problem=f"{kernel_package} holds no boot/config-{release}"
        )
    os.replace(kernels[0], out / KERNEL_FILE)
    os.replace(config, out / CONFIG_FILE)
    shutil.rmtree(tree)  # the modules: hundreds of MB a guest without them never needs

    busybox_version, tree = _download_and_unpack("busybox", BUSYBOX_PACKAGE, staging / "busybox", progress)
    # /bin before the /usr merge (bookworm), /usr/bin after it.
    candidates = [tree / "bin" / "busybox", tree / "usr" / "bin" / "busybox"]
    busybox = next((path for path in candidates if path.is_file()), None)
    if busybox is None:
        raise FetchError("unpack busybox", (), None, "", problem=f"{BUSYBOX_PACKAGE} holds no bin/busybox")
    os.replace(busybox, out / BUSYBOX_FILE)

    progress("compiling probe.c ...")
    build = staging / "probe-build"
    build.mkdir()
    os.replace(compile_probe(build), out / PROBE_FILE)

    progress("building the initramfs ...")
    image = initramfs_bytes(
        (out / BUSYBOX_FILE).read_bytes(), (out / PROBE_FILE).read_bytes(), _package_resource("init.sh")
    )
    (out / INITRAMFS_FILE).write_bytes(image)

    progress(f"installing into {root} ...")
    # From here the old manifest no longer describes the files: drop it
    # first, so a crash before the new one is written reads as "not fetched".
    (root / MANIFEST).unlink(missing_ok=True)
    for name in (KERNEL_FILE, CONFIG_FILE, BUSYBOX_FILE, PROBE_FILE, INITRAMFS_FILE):
        os.replace(out / name, root / name)
    assets = GuestAssets(
        root=root,
        kernel=root / KERNEL_FILE,
        kernel_config=root / CONFIG_FILE,
        kernel_release=release,
        kernel_package_version=kernel_version,
        busybox=root / BUSYBOX_FILE,
        probe=root / PROBE_FILE,
        initramfs=root / INITRAMFS_FILE,
    )
    write_manifest(assets, packages={kernel_package: kernel_version, BUSYBOX_PACKAGE: busybox_version})
    return assets
