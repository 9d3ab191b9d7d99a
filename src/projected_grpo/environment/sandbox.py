"""Run untrusted Python in a fresh, isolated process per run.

Isolation (bubblewrap, when it works here): each worker slot is one sandbox with new user, pid,
net, ipc, uts and cgroup namespaces; no network; a read-only view of /usr only (no home, no /etc,
no project); size-capped private tmpfs for the working directory, /tmp and /dev/shm; a minimal
environment; and, when the grader runs as root, its own unprivileged uid, so RLIMIT_NPROC caps
the slot alone. Inside, a fork server (child/zygote.py, pid 1 of the namespace, non-dumpable)
has the harness and the benchmark's setup imports loaded once, and forks a fresh child per run:
rlimits (address space, CPU, file size, open files, processes, no core), the reference's alarm and a
kill by the run's own time (see Limits) with a wall-clock cap, stdout
to an unlinked file of the grader's that is capped by RLIMIT_FSIZE and read up to a cap. After each
run it kills everything else in the namespace and wipes every writable place and SysV IPC, so
nothing passes between runs. Without network isolation the sandbox refuses to run unless
`allow_unisolated=True` (then: rlimits, a private temp dir and process-group kills only).
"""

from __future__ import annotations

import json
import marshal
import os
import queue
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

# When the grader runs as root every slot gets its own unprivileged uid (no /etc/passwd entry is
# needed): distinct per process and per Sandbox, so RLIMIT_NPROC and signals never cross slots.
UID_BASE = 1_000_000_000
_uid_lock = threading.Lock()
_next_uid = UID_BASE + (os.getpid() % 100_000) * 4096


def _claim_uids(n: int) -> list[int]:
    global _next_uid
    with _uid_lock:
        uids = list(range(_next_uid, _next_uid + n))
        _next_uid += n
    return uids

SANDBOX_WORKDIR = "/sandbox"


class IsolationError(RuntimeError):
    """The host cannot isolate untrusted code and the user did not opt in to running it anyway."""


@dataclass(frozen=True)
class Limits:
    """Time is counted as the reference's limits act on an idle machine, whatever the load: CPU time
    for computing, and the run's own time (wall minus waits for a CPU) for sleeping or blocking."""

    timeout_s: float = 3.0  # RLIMIT_CPU kill at this many CPU-s; the reference's SIGALRM at this much own time
    kill_after_s: float = 4.0  # the fork server kills at this much own time (reference: parent kill at timeout + 1)
    wall_cap_factor: float = 8.0  # plain wall-clock kill at this x kill_after_s (bounds runs starved for CPU)
    memory_mb: int = 1024  # RLIMIT_AS (reference: 1 GiB)
    fsize_mb: int = 8  # largest file, stdout included
    nofile: int = 64
    nproc: int = 16  # processes per slot uid (root) or added to the user's current count
    tmpfs_mb: int = 16  # each of the working directory, /tmp and /dev/shm
    stdout_cap_bytes: int = 4 << 20

    def __post_init__(self):
        if not (float(self.timeout_s).is_integer() and self.timeout_s >= 1):
            raise ValueError(f"timeout_s={self.timeout_s}: whole seconds >= 1 (RLIMIT_CPU, as the reference's, counts whole seconds)")
        if not (self.timeout_s < self.kill_after_s and self.wall_cap_factor >= 1):
            raise ValueError(f"need timeout_s < kill_after_s and wall_cap_factor >= 1, got {self}")

    @property
    def wall_cap_s(self) -> float:
        return self.kill_after_s * self.wall_cap_factor


# Own time needs the kernel's per-task run-queue wait; without it the alarm and kill use the wall clock.
TIMING = ("CPU time (RLIMIT_CPU) + own time (wall minus run-queue wait): idle-machine labels under load"
          if os.path.exists("/proc/self/schedstat") else
          "CPU time (RLIMIT_CPU) + WALL clock (no /proc/<pid>/schedstat): labels near the limit depend on load")


@dataclass(frozen=True)
class Isolation:
    level: str  # "bwrap" or "unisolated"
    network: str
    filesystem: str
    uid: str
    interpreter: str
    bwrap_version: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    timing: str = TIMING

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RawRun:
    stdout: bytes
    returncode: int
    killed: bool  # the fork server killed it (own time past kill_after_s, or the wall cap)
    wall_s: float
    cpu_s: float = 0.0  # the child's CPU time (RLIMIT_CPU kills at timeout_s)
    own_s: float = 0.0  # wall minus the child's run-queue waits: its wall time on an idle machine
    truncated: bool = False  # the child wrote more than Limits.stdout_cap_bytes to its real stdout (the rest is dropped)


def _world_reachable(path: Path) -> bool:
    """True when every directory above `path` is traversable and the file readable by others."""
    path = path.resolve()
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in path.parents) and bool(os.stat(path).st_mode & stat.S_IROTH)


def _sandbox_interpreter() -> str:
    """The grader's own base interpreter if the sandbox uid can run it, else the system one."""
    ours = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    if ours.is_relative_to("/usr") or os.geteuid() != 0:
        return str(ours)
    if _world_reachable(ours) and _world_reachable(Path(sys.base_prefix)):
        return str(ours)
    system = shutil.which("python3", path="/usr/bin:/usr/local/bin")
    return str(Path(system).resolve()) if system else str(ours)


def _count_processes(uid: int) -> int:
    n = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                n += entry.stat().st_uid == uid
            except FileNotFoundError:
                pass
    return n


class _Slot:
    """One fork server and the socket to it; restarted after any failure."""

    def __init__(self, bwrap: list[str], python: list[str], env: dict, drop: dict, cwd: str):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fd = str(theirs.fileno())
        argv = (bwrap + ["--setenv", "PGRPO_FD", fd] if bwrap else []) + python
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),), env={**env, "PGRPO_FD": fd}, cwd=cwd, start_new_session=True, **drop,
        )
        theirs.close()
        self.sock = ours
        self.sock.settimeout(30)
        assert self._readline() == b"ready", "the sandbox fork server did not start"

    def _readline(self) -> bytes:
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("fork server closed")
            buf += chunk
        return buf.strip()

    def run(self, request: bytes, out_fd: int, deadline: float) -> dict:
        self.sock.settimeout(deadline)
        socket.send_fds(self.sock, [len(request).to_bytes(8, "big")], [out_fd])
        self.sock.sendall(request)
        return json.loads(self._readline())

    def close(self) -> None:
        self.sock.close()
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()


class Sandbox:
    """Fresh isolated process per run; `run` is thread-safe and bounded by `workers` slots."""

    def __init__(self, workers: int = 2, limits: Limits = Limits(), allow_unisolated: bool = False):
        assert workers >= 1
        self.limits, self.workers = limits, workers
        self._root = os.geteuid() == 0
        self.slot_uids = _claim_uids(workers) if self._root else [os.getuid()] * workers
        self.interpreter = _sandbox_interpreter()
        self._zygote = resources.files("projected_grpo.environment.child").joinpath("zygote.py").read_text()
        self.isolation = self._detect()
        if self.isolation.level != "bwrap" and not allow_unisolated:
            raise IsolationError(
                "cannot isolate graded code on this host (" + "; ".join(self.isolation.notes) + "). "
                "Install bubblewrap (Debian: apt-get install bubblewrap) or, if you accept running untrusted "
                "model code with rlimits only and full network access, pass --allow-unisolated."
            )
        base = 2 if self._root else _count_processes(os.getuid()) + 2 * workers
        self._nproc = limits.nproc + base
        self._tmp = tempfile.TemporaryDirectory(prefix="pgrpo-sandbox-")
        # Slots are spawned from one long-lived thread: bwrap's --die-with-parent follows the thread.
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sandbox-spawner")
        self._slots: queue.Queue[int] = queue.Queue()
        self._servers: dict[int, _Slot | None] = {}
        for i in range(workers):
            self._servers[i] = None
            self._slots.put(i)
        self._lock = threading.Lock()

    # -- detection ------------------------------------------------------------------------------
    def _bwrap_argv(self) -> list[str]:
        tmpfs = str(self.limits.tmpfs_mb << 20)
        argv = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent",
                "--new-session", "--as-pid-1", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
        for link in ("bin", "lib", "lib64", "sbin"):
            target = Path("/") / link
            if target.is_symlink():
                argv += ["--symlink", os.readlink(target), f"/{link}"]
            elif target.is_dir():
                argv += ["--ro-bind", f"/{link}", f"/{link}"]
        interpreter = Path(self.interpreter)
        if not interpreter.is_relative_to("/usr"):
            prefix = interpreter.parent.parent  # <prefix>/bin/python -> <prefix>
            argv += ["--ro-bind", str(prefix), str(prefix)]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        for place in ("/tmp", "/dev/shm", SANDBOX_WORKDIR):
            argv += ["--size", tmpfs, "--tmpfs", place]
        argv += ["--chdir", SANDBOX_WORKDIR, "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
                 "--setenv", "HOME", SANDBOX_WORKDIR, "--setenv", "LANG", "C.UTF-8",
                 "--setenv", "PYTHONHASHSEED", "0", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
                 "--setenv", "PGRPO_ISOLATED", "1", "--setenv", "PGRPO_WORKDIR", SANDBOX_WORKDIR]
        return argv

    def _drop(self, slot: int) -> dict:
        if not self._root:
            return {}
        uid = self.slot_uids[slot]
        return {"user": uid, "group": uid, "extra_groups": []}

    def _detect(self) -> Isolation:
        notes = []
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            notes.append("bubblewrap (bwrap) is not installed")
        else:
            version = subprocess.run([bwrap, "--version"], capture_output=True, text=True).stdout.strip()
            probe = subprocess.run(self._bwrap_argv() + [self.interpreter, "-S", "-c", _PROBE],
                                   capture_output=True, timeout=30, **self._drop(0))
            if probe.returncode == 0 and probe.stdout.strip() == b"isolated":
                uid = (f"per-slot unprivileged uids {self.slot_uids[0]}..{self.slot_uids[-1]}"
                       if self._root else f"the caller's uid {os.getuid()} inside a user namespace")
                return Isolation(
                    level="bwrap", network="isolated (empty network namespace)",
                    filesystem="private size-capped tmpfs cwd, /tmp, /dev/shm; read-only /usr (+ interpreter prefix)",
                    uid=uid, interpreter=self.interpreter, bwrap_version=version,
                )
            notes.append(f"bwrap is present but failed its probe: {(probe.stdout + probe.stderr)[-300:]!r}")
        return Isolation(
            level="unisolated", network="NOT isolated", filesystem="private temp cwd; host filesystem visible",
            uid=f"the caller's uid {os.getuid()}", interpreter=self.interpreter, notes=tuple(notes),
        )

    # -- running --------------------------------------------------------------------------------
    def _start(self, slot: int) -> _Slot:
        python = [self.interpreter, "-S", "-s", "-P", "-c", self._zygote]
        if self.isolation.level == "bwrap":
            return _Slot(self._bwrap_argv(), python, {}, self._drop(slot), "/")
        workdir = Path(self._tmp.name) / f"slot{slot}"
        workdir.mkdir(mode=0o700, exist_ok=True)
        if self._root:  # the slot's own uid must own its directory
            os.chmod(self._tmp.name, 0o711)
            os.chown(workdir, self.slot_uids[slot], self.slot_uids[slot])
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "HOME": str(workdir),
               "PGRPO_ISOLATED": "0", "PGRPO_WORKDIR": str(workdir)}
        return _Slot([], python, env, self._drop(slot), str(workdir))

    def run(self, kind: str, payload: dict) -> RawRun:
        """Run one harness (`reference` or `hardened`) on a payload in a fresh child process."""
        limits = self.limits
        request = marshal.dumps({
            "payload": {**payload, "kind": kind},
            "limits": {"timeout": limits.timeout_s, "kill_after": limits.kill_after_s, "wall_cap": limits.wall_cap_s,
                       "memory_mb": limits.memory_mb,
                       "fsize_mb": limits.fsize_mb, "nofile": limits.nofile, "nproc": self._nproc},
        })
        slot = self._slots.get()
        start = time.perf_counter()
        try:
            if self._servers[slot] is None:
                self._servers[slot] = self._spawner.submit(self._start, slot).result()
            with tempfile.TemporaryFile() as out:
                try:
                    reply = self._servers[slot].run(request, out.fileno(), limits.wall_cap_s + 5.0)
                except (OSError, ValueError, ConnectionError):  # the server died or hung: replace it
                    self._servers[slot].close()
                    self._servers[slot] = None
                    return RawRun(b"", -9, True, time.perf_counter() - start)
                out.seek(0)
                stdout = out.read(limits.stdout_cap_bytes + 1)
            return RawRun(stdout[:limits.stdout_cap_bytes], reply["returncode"], reply["killed"], reply["wall_s"],
                          reply["cpu_s"], reply["own_s"], truncated=len(stdout) > limits.stdout_cap_bytes)
        finally:
            self._slots.put(slot)

    def server_pids(self) -> list[int]:
        """Host pids of the live fork-server sandboxes (the bwrap processes)."""
        return [s.proc.pid for s in self._servers.values() if s is not None]

    def close(self) -> None:
        for slot, server in self._servers.items():
            if server is not None:
                server.close()
                self._servers[slot] = None
        self._spawner.shutdown()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


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

