# The per-slot fork server. Runs INSIDE the slot's sandbox (as pid 1 of its pid namespace when
# isolated), never executes untrusted code itself, and forks one fresh child per run.
#
# Between runs it kills every other process in the namespace, reaps them, and wipes the writable
# places (/sandbox, /tmp, /dev/shm, SysV IPC), so no state passes from one run to the next.
# It is non-dumpable, so same-uid runs can neither ptrace it nor open its /proc fds or memory.
# Protocol on fd $PGRPO_FD (a unix socket to the trusted grader): request = 8-byte length + the output
# file's fd (SCM_RIGHTS), then a marshal body {kind, payload, limits}; reply = one JSON line.
import atexit
import ctypes
import io
import json
import marshal
import os
import resource
import select
import shutil
import signal
import socket
import sys
import time

# Modules the reference setup_code imports: loaded once here, so a run pays nothing for them.
import bisect, collections, copy, datetime, functools, heapq, itertools, math, operator, random, re  # noqa
import string, typing  # noqa

ISOLATED = os.environ.get("PGRPO_ISOLATED") == "1"
WRITABLE = [d for d in (os.environ["PGRPO_WORKDIR"], "/tmp", "/dev/shm") if ISOLATED or d == os.environ["PGRPO_WORKDIR"]]
_libc = ctypes.CDLL(None, use_errno=True)
_libc.prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE = 0


class TimeoutException(Exception):
    pass


# ---------------------------------------------------------------- harnesses (run in the child)
def reference_harness(p):
    """The reference child: exec(code, {}) with stdout captured, last JSON line parsed, one JSON out."""
    timeout = p["timeout"]

    def on_alarm(signum, frame):
        raise TimeoutException(f"Execution timed out after {float(timeout)} seconds")

    signal.signal(signal.SIGALRM, on_alarm)
    result = {"success": False, "compiled": True, "timeout": False, "oom": False, "stdout": {}}
    captured, real = io.StringIO(), sys.stdout
    code = p["code"]
    p.clear()
    try:
        sys.stdout = captured
        try:
            if "\x00" in code:  # the reference's Python (3.12) refuses it as a SyntaxError; 3.11's exec raises ValueError
                raise SyntaxError("source code string cannot contain null bytes")
            exec(code, {})
        finally:
            sys.stdout = real
        for line in reversed(captured.getvalue().strip().split("\n")):
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                try:
                    result["stdout"] = json.loads(line)
                    break
                except json.JSONDecodeError:  # as the reference: try the line above
                    continue
        result["success"] = True
    except (SyntaxError, IndentationError):
        result["compiled"] = False
    except MemoryError:
        result["oom"] = True
    except TimeoutException:
        result["timeout"] = True
    except Exception as e:
        result["stdout"] = {"raw": str(e)}  # the reference reports it as "UnknownError: <message>"
    finally:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the reference's alarm(0): no alarm after the run
    sys.stdout.write(json.dumps(result))
    sys.stdout.flush()


def _make_encoder(type=type, bool=bool, int=int, float=float, str=str, list=list, tuple=tuple, dict=dict,
                  set=set, frozenset=frozenset, frepr=float.__repr__, istr=int.__str__):
    none_type = type(None)
    tags = {list: "l", tuple: "t", set: "S", frozenset: "F"}

    def encode(value, depth=0):
        if depth > 200:
            raise ValueError("value nested too deeply")
        t = type(value)
        if t is bool:
            return ["b", value]
        if t is int:
            return ["i", istr(value)]
        if t is float:
            return ["f", frepr(value)]
        if t is str:
            return ["s", value]
        if t is none_type:
            return ["n"]
        if t in tags:
            return [tags[t], [encode(x, depth + 1) for x in value]]
        if t is dict:
            return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
        raise TypeError(f"returned a {t.__name__}, not a plain builtin value")

    return encode


def hardened_harness(p, encode=_make_encoder(), exec=exec, eval=eval, compile=compile, type=type,
                     write=os.write, dumps=json.dumps, dup=os.dup, dup2=os.dup2, BaseException=BaseException):
    """Our oracle's child: evaluate calls only; values type-tagged; one nonce frame on a private fd."""
    frame_fd = dup(1)
    null = os.open(os.devnull, os.O_WRONLY)
    dup2(null, 1)
    sys.stdout, sys.stderr = io.StringIO(), io.StringIO()
    nonce, code, items = p["nonce"], p["code"], p["items"]
    p.clear()

    def on_alarm(signum, frame):
        raise TimeoutException("timed out")

    signal.signal(signal.SIGALRM, on_alarm)
    results, error, namespace = [], None, {}
    try:
        exec(compile(code, "<program>", "exec"), namespace)
    except BaseException as e:  # SystemExit included: the program does not end the harness
        error = f"top level: {type(e).__name__}"
    for item in items:
        try:
            if "call" in item:
                results.append(encode(eval(item["call"], namespace)))
            else:
                exec(item["check"], namespace)
                results.append(["ok"])
        except BaseException as e:
            error = f"test {len(results)}: {type(e).__name__}"
            break
    signal.signal(signal.SIGALRM, signal.SIG_IGN)
    data = (nonce + dumps({"results": results, "error": error}) + "\n").encode("utf-8", "surrogatepass")
    while data:
        data = data[write(frame_fd, data):]
    os._exit(0)


def _interpreter_exit(code):
    """What a fresh interpreter does on its way out: join threads, run atexit, flush stdio."""
    try:
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        atexit._run_exitfuncs()
        sys.stdout.flush()
    except BaseException:
        code = code or 1
    os._exit(code)


def child_main(request, out_fd, workdir):
    os.dup2(out_fd, 1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 2)
    os.closerange(3, 65536)
    if not ISOLATED:
        os.setsid()
    os.chdir(workdir)
    limits = request["limits"]
    mem = limits["memory_mb"] << 20
    cpu = int(limits["timeout"])  # the reference's RLIMIT_CPU: SIGKILL, no output, at the budget
    for lim, value in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_RSS, (mem, mem)),
                       (resource.RLIMIT_CPU, (cpu, cpu)), (resource.RLIMIT_CORE, (0, 0)),
                       (resource.RLIMIT_FSIZE, (limits["fsize_mb"] << 20,) * 2),
                       (resource.RLIMIT_NOFILE, (limits["nofile"],) * 2),
                       (resource.RLIMIT_NPROC, (limits["nproc"],) * 2)):
        resource.setrlimit(lim, value)
    random.seed()  # fresh entropy, as a fresh interpreter would have
    payload = request["payload"]
    payload["timeout"] = limits["timeout"]
    del request
    try:
        (reference_harness if payload.pop("kind") == "reference" else hardened_harness)(payload)
    except SystemExit as e:  # escapes the reference harness, as it escapes a real interpreter
        _interpreter_exit(e.code if isinstance(e.code, int) else (0 if e.code is None else 1))
    except BaseException:
        _interpreter_exit(1)
    _interpreter_exit(0)


# ---------------------------------------------------------------- the server loop
def _wipe(directory):
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)

        def unlock(func, p, exc):
            os.chmod(os.path.dirname(p), 0o700)
            os.chmod(p, 0o700)
            func(p)

        try:
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, 0o700)
                shutil.rmtree(path, onerror=unlock)
            else:
                os.unlink(path)
        except OSError:
            pass


def _remove_ipc():
    for kind, rm in (("shm", lambda i: _libc.shmctl(i, 0, None)), ("sem", lambda i: _libc.semctl(i, 0, 0)),
                     ("msg", lambda i: _libc.msgctl(i, 0, None))):
        try:
            lines = open(f"/proc/sysvipc/{kind}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            rm(int(line.split()[1]))


# ---------------------------------------------------------------- timing
# The reference's budget is one wall-clock alarm plus RLIMIT_CPU at the same 3 s. On an idle machine a
# computing run meets the CPU limit first (its interpreter start-up, ~20 ms, counts against the CPU
# limit but precedes the alarm) and dies without output, while a run that slept or blocked for longer
# than that gets the alarm's TimeoutException. Under load the alarm reaches computing runs first. To
# give the idle-machine outcome whatever the load, time here is the run's OWN time: wall time minus
# the time its main thread waited in the run queue for a CPU (/proc/<pid>/schedstat), the wall time it
# would have taken on an idle machine. When the budget of own time is up (and RLIMIT_CPU, which acts
# a little late under load, has not ended it), a run that spent less than COMPUTING_MARGIN of it off
# the CPU was computing throughout: it gets the CPU limit's SIGKILL; any other gets the SIGALRM. A run
# that starts other processes (never a solution; fork bombs, daemons) waits for its own processes
# too, so from then on it gets the reference's plain wall clock.
ALARM_GRACE = 0.05  # past the budget, so RLIMIT_CPU ends most computing runs itself
COMPUTING_MARGIN = 0.1  # off-CPU time below which a run counts as computing (reference: ~0.02 s; ours
# is wider because the kernel's accounting of a task lags by a scheduling slice under load)


def _schedstat(fd):
    """(seconds on a CPU, seconds waited runnable) of the task; (0, 0), i.e. the wall clock, if unknown."""
    try:
        on_cpu, waited = os.pread(fd, 256, 0).split()[:2]
        return int(on_cpu) / 1e9, int(waited) / 1e9
    except (OSError, TypeError, ValueError):
        return 0.0, 0.0


def _has_other_processes(pid):
    """Whether the run has processes besides its main one: in the namespace, or in its session."""
    for name in os.listdir("/proc"):
        if not name.isdigit() or name in ("1", str(pid)):  # pid 1: the fork server when isolated
            continue
        if ISOLATED:
            return True
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                if int(f.read().rsplit(b")", 1)[1].split()[3]) == pid:  # its session (the child's setsid)
                    return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def _signal(pidfd, sig):
    try:
        signal.pidfd_send_signal(pidfd, sig)
    except ProcessLookupError:  # it has just exited
        pass


def _reap(pid, limits):
    """Wait for the run: at the budget of own time the CPU limit's SIGKILL or the SIGALRM, at kill_after
    of own time or at the wall cap our kill; returns (exit code, killed by us, CPU seconds, own seconds)."""
    start = time.monotonic()
    pidfd = os.pidfd_open(pid)
    try:
        stat_fd = os.open(f"/proc/{pid}/schedstat", os.O_RDONLY)
    except OSError:
        stat_fd = None
    alarm_at, kill_at, cap = limits["timeout"] + ALARM_GRACE, limits["kill_after"], limits["wall_cap"]
    alarmed = killed = wall_clock = False
    while True:
        wall = time.monotonic() - start
        wall_clock = wall_clock or (wall >= alarm_at and _has_other_processes(pid))  # nothing is due before
        on_cpu, waited = _schedstat(stat_fd)
        own = wall if wall_clock else wall - waited
        if own >= kill_at or wall >= cap:
            killed = True
            _signal(pidfd, signal.SIGKILL)
            break
        if own >= alarm_at and not alarmed:
            alarmed = True
            if own - on_cpu < COMPUTING_MARGIN and not wall_clock:
                _signal(pidfd, signal.SIGKILL)  # what RLIMIT_CPU does a moment later
                break
            _signal(pidfd, signal.SIGALRM)
        # own time never runs ahead of the wall clock: nothing is due before `due - own` has passed
        due = kill_at if alarmed else alarm_at
        if select.select([pidfd], [], [], max(min(due - own, cap - wall), 0.01))[0]:
            break
    wall = time.monotonic() - start
    own = wall if wall_clock else wall - _schedstat(stat_fd)[1]  # read before the reap ends the task's stats
    _, status, usage = os.wait4(pid, 0)
    os.close(pidfd)
    if stat_fd is not None:
        os.close(stat_fd)
    if ISOLATED:  # pid 1 of the namespace: end every leftover (daemons, threads' forks, ...)
        while True:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                break
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return os.waitstatus_to_exitcode(status), killed, usage.ru_utime + usage.ru_stime, own


def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            sys.exit(0)
        buf += chunk
    return buf


def serve():
    sock = socket.socket(fileno=int(os.environ["PGRPO_FD"]))
    sock.sendall(b"ready\n")
    counter = 0
    while True:
        header, fds, _, _ = socket.recv_fds(sock, 8, 1)
        if not header:
            return
        header += _recv_exact(sock, 8 - len(header))
        request = marshal.loads(_recv_exact(sock, int.from_bytes(header, "big")))
        (out_fd,) = fds
        counter += 1
        workdir = os.path.join(WRITABLE[0], f"run{counter}-{os.urandom(8).hex()}")
        os.mkdir(workdir, 0o700)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            try:
                child_main(request, out_fd, workdir)
            finally:
                os._exit(70)
        os.close(out_fd)
        returncode, killed, cpu, own = _reap(pid, request["limits"])
        wall = time.perf_counter() - start
        for directory in WRITABLE:
            _wipe(directory)
        if ISOLATED:
            _remove_ipc()
        sock.sendall((json.dumps({"returncode": returncode, "killed": killed, "wall_s": wall, "cpu_s": cpu, "own_s": own}) + "\n").encode())


serve()
