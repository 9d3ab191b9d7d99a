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
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        sys.stdout = captured
        try:
            exec(code, {})
        finally:
            sys.stdout = real
        for line in reversed(captured.getvalue().splitlines()):
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                result["stdout"] = json.loads(line)
                break
        result["success"] = True
    except (SyntaxError, IndentationError):
        result["compiled"] = False
    except MemoryError:
        result["oom"] = True
    except TimeoutException:
        result["timeout"] = True
    except Exception:
        pass
    signal.setitimer(signal.ITIMER_REAL, 0)
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
    nonce, code, items, timeout = p["nonce"], p["code"], p["items"], p["timeout"]
    p.clear()

    def on_alarm(signum, frame):
        raise TimeoutException("timed out")

    signal.signal(signal.SIGALRM, on_alarm)
    results, error, namespace = [], None, {}
    signal.setitimer(signal.ITIMER_REAL, timeout)
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
    signal.setitimer(signal.ITIMER_REAL, 0)
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
    cpu = int(limits["timeout"]) + 2  # a backstop above the alarm, so a busy loop meets the alarm first
    for lim, value in ((resource.RLIMIT_AS, (mem, mem)), (resource.RLIMIT_RSS, (mem, mem)),
                       (resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_CORE, (0, 0)),
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


def _reap(pid, deadline):
    pidfd = os.pidfd_open(pid)
    killed = not select.select([pidfd], [], [], deadline)[0]
    if killed:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    os.close(pidfd)
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
    return os.waitstatus_to_exitcode(status), killed


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
        returncode, killed = _reap(pid, request["limits"]["kill_after"])
        wall = time.perf_counter() - start
        for directory in WRITABLE:
            _wipe(directory)
        if ISOLATED:
            _remove_ipc()
        sock.sendall((json.dumps({"returncode": returncode, "killed": killed, "wall_s": wall}) + "\n").encode())


serve()
