"""Run untrusted Python in a fresh, isolated process per run.

Isolation (bubblewrap, when it works here): new user/pid/net/ipc/uts/cgroup namespaces, no network,
a private tmpfs working directory, a read-only view of /usr only (no home, no /etc, no project),
a minimal environment, die-with-parent, and, when the grader runs as root, a distinct unprivileged
uid per worker slot so RLIMIT_NPROC caps each run on its own. In every level: rlimits (address
space, CPU, file size, open files, processes, no core), a wall-clock kill of the whole process
group, stdout written to an unlinked file capped by RLIMIT_FSIZE and read up to a cap.
Without network isolation the sandbox refuses to run unless `allow_unisolated=True`.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

SLOT_UID_BASE = 61000  # per-worker-slot uids used when running as root


class IsolationError(RuntimeError):
    """The host cannot isolate untrusted code and the user did not opt in to running it anyway."""


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0  # SIGALRM and RLIMIT_CPU inside the child (reference: 3 s)
    kill_after_s: float = 4.0  # parent kills the process group (reference: timeout + 1)
    memory_mb: int = 1024  # RLIMIT_AS (reference: 1 GiB)
    fsize_mb: int = 8  # largest file, stdout included
    nofile: int = 64
    nproc: int = 16  # per slot uid (root) or added to the user's current count
    tmpfs_mb: int = 16  # private working directory and /tmp
    stdout_cap_bytes: int = 4 << 20


@dataclass(frozen=True)
class Isolation:
    level: str  # "bwrap" or "unisolated"
    network: str
    filesystem: str
    uid: str
    interpreter: str
    bwrap_version: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RawRun:
    stdout: bytes
    returncode: int
    killed: bool  # the parent's wall-clock kill fired
    wall_s: float


def _child_source(name: str) -> str:
    return resources.files("projected_grpo.environment.child").joinpath(f"{name}.py").read_text()


def _world_reachable(path: Path) -> bool:
    """True when every directory above `path` is traversable and the file readable by others."""
    path = path.resolve()
    for parent in path.parents:
        if not os.stat(parent).st_mode & stat.S_IXOTH:
            return False
    return bool(os.stat(path).st_mode & stat.S_IROTH)


def _sandbox_interpreter() -> str:
    """The grader's own base interpreter if an unprivileged uid can run it, else the system one."""
    ours = Path(sys._base_executable if hasattr(sys, "_base_executable") else sys.executable).resolve()
    if ours.is_relative_to("/usr") or (os.geteuid() != 0 and ours.exists()):
        return str(ours)
    if os.geteuid() == 0 and _world_reachable(ours) and _world_reachable(Path(sys.base_prefix)):
        return str(ours)
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if Path(candidate).exists():
            return str(Path(candidate).resolve())
    return str(ours)


class Sandbox:
    """Fresh isolated process per run; `run` is thread-safe and bounded by `workers` slots."""

    def __init__(self, workers: int = 2, limits: Limits = Limits(), allow_unisolated: bool = False):
        assert workers >= 1
        self.limits, self.workers = limits, workers
        self._root = os.geteuid() == 0
        self._slots: queue.Queue[int] = queue.Queue()
        for i in range(workers):
            self._slots.put(i)
        self.interpreter = _sandbox_interpreter()
        self._sources = {name: _child_source(name) for name in ("reference_child", "hardened_child")}
        self.isolation = self._detect()
        if self.isolation.level != "bwrap" and not allow_unisolated:
            raise IsolationError(
                "cannot isolate graded code on this host (" + "; ".join(self.isolation.notes) + "). "
                "Install bubblewrap (Debian: apt-get install bubblewrap) or, if you accept running untrusted "
                "model code with rlimits only and full network access, pass --allow-unisolated."
            )
        self._base_nproc = 0 if self._root else _count_processes(os.getuid())

    # -- detection ------------------------------------------------------------------------------
    def _bwrap_argv(self, slot: int) -> list[str]:
        tmpfs = str(self.limits.tmpfs_mb << 20)
        argv = [
            "bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
            "--new-session", "--hostname", "sandbox",
            "--ro-bind", "/usr", "/usr",
        ]
        for link in ("bin", "lib", "lib64", "sbin"):
            target = Path("/") / link
            if target.is_symlink():
                argv += ["--symlink", os.readlink(target), f"/{link}"]
            elif target.is_dir():
                argv += ["--ro-bind", f"/{link}", f"/{link}"]
        interp_root = Path(self.interpreter).resolve()
        if not interp_root.is_relative_to("/usr"):
            prefix = interp_root.parent.parent  # <prefix>/bin/python -> <prefix>
            argv += ["--ro-bind", str(prefix), str(prefix)]
        argv += [
            "--proc", "/proc", "--dev", "/dev",
            "--size", tmpfs, "--tmpfs", "/tmp", "--size", tmpfs, "--tmpfs", "/sandbox", "--chdir", "/sandbox",
            "--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/sandbox",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONHASHSEED", "0",
            "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        ]
        return argv

    def _detect(self) -> Isolation:
        notes = []
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            notes.append("bubblewrap (bwrap) is not installed")
        else:
            version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip()
            probe = self._spawn(self._bwrap_argv(0) + [self.interpreter, "-S", "-c", _PROBE], b"", 0, use_bwrap=True)
            if probe.returncode == 0 and probe.stdout.strip() == b"isolated":
                uid = (f"per-slot unprivileged uids {SLOT_UID_BASE}..{SLOT_UID_BASE + self.workers - 1}"
                       if self._root else f"the caller's uid {os.getuid()} inside a user namespace")
                return Isolation(
                    level="bwrap", network="isolated (empty network namespace)",
                    filesystem="private tmpfs cwd and /tmp; read-only /usr (+ interpreter prefix); nothing else",
                    uid=uid, interpreter=self.interpreter, bwrap_version=version,
                )
            notes.append(f"bwrap is present but failed its probe: {probe.stdout[-300:]!r} rc={probe.returncode}")
        return Isolation(
            level="unisolated", network="NOT isolated", filesystem="private temp cwd; host filesystem visible",
            uid=f"the caller's uid {os.getuid()}", interpreter=self.interpreter, notes=tuple(notes),
        )

    # -- running --------------------------------------------------------------------------------
    def run(self, child: str, payload: dict) -> RawRun:
        """Run the named child harness (`reference_child` or `hardened_child`) on a JSON payload."""
        import json

        limits = self.limits
        payload = {
            **payload, "timeout": limits.timeout_s, "memory_mb": limits.memory_mb, "fsize_mb": limits.fsize_mb,
            "nofile": limits.nofile, "nproc": limits.nproc + self._base_nproc,
        }
        slot = self._slots.get()
        try:
            if self.isolation.level == "bwrap":
                argv = self._bwrap_argv(slot) + [self.interpreter, "-S", "-s", "-P", "-c", self._sources[child]]
                return self._spawn(argv, json.dumps(payload).encode(), slot, use_bwrap=True)
            argv = [self.interpreter, "-S", "-s", "-P", "-c", self._sources[child]]
            return self._spawn(argv, json.dumps(payload).encode(), slot, use_bwrap=False)
        finally:
            self._slots.put(slot)

    def _spawn(self, argv: list[str], stdin: bytes, slot: int, use_bwrap: bool) -> RawRun:
        limits = self.limits
        drop = {}
        if self._root:
            uid = SLOT_UID_BASE + slot
            drop = {"user": uid, "group": uid, "extra_groups": []}
        with tempfile.TemporaryFile() as fin, tempfile.TemporaryFile() as fout, tempfile.TemporaryDirectory() as cwd:
            fin.write(stdin)
            fin.seek(0)
            if self._root:
                os.chown(cwd, SLOT_UID_BASE + slot, SLOT_UID_BASE + slot)
            env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "HOME": cwd}
            start = time.perf_counter()
            proc = subprocess.Popen(
                argv, stdin=fin, stdout=fout, stderr=subprocess.DEVNULL, cwd=cwd, env=env,
                start_new_session=True, close_fds=True, **drop,
            )
            killed = False
            try:
                proc.wait(timeout=limits.kill_after_s)
            except subprocess.TimeoutExpired:
                killed = True
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            wall = time.perf_counter() - start
            if not use_bwrap:  # no pid namespace: reap anything left in the session
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            fout.seek(0)
            out = fout.read(limits.stdout_cap_bytes)
        return RawRun(stdout=out, returncode=proc.returncode, killed=killed, wall_s=wall)


_PROBE = r"""
import os, socket
ok = True
try:
    socket.create_connection(("1.1.1.1", 53), timeout=0.5); ok = False
except OSError:
    pass
ok = ok and not os.path.exists("/home") and not os.path.exists("/etc/passwd") and os.getcwd() == "/sandbox"
print("isolated" if ok else "leaky")
"""


def _count_processes(uid: int) -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                n += entry.stat().st_uid == uid
            except FileNotFoundError:
                pass
    return n
