"""Adversarial programs against the sandbox and the hardened oracle.

Each program is a wrong solution plus an attack. Where an attack could succeed silently, the
program defines a passing `run_tests` only if it did, so `eq_hinted` is the escape detector.
For every program: no escape signal, `gt_correct_hardened` False, no run outlives its kill
deadline, no file appears on the host, no process of the sandbox uids survives, and the host
listener receives no connection.
"""

from __future__ import annotations

import os
import socket
import textwrap
import threading
from pathlib import Path

import pytest

from projected_grpo.environment.hints import apply_hint
from projected_grpo.environment.specimens import fence, wrong_solution

SECRET = "pgrpo-secret-7f3a9c"


def _escaped_if(attack: str) -> str:
    """Top-level attack that sets `_escaped = True` on success; a passing run_tests only then."""
    return ("_escaped = False\ntry:\n" + textwrap.indent(textwrap.dedent(attack).strip(), "    ")
            + "\nexcept BaseException:\n    pass\nif _escaped:\n    def run_tests():\n        pass\n")


def _attacks(ctx: dict) -> dict[str, str]:
    host, port, secret_file, write_file, unix_path, data_file, repo = (
        ctx[k] for k in ("host", "port", "secret_file", "write_file", "unix_path", "data_file", "repo"))
    return {
        # --- network ---------------------------------------------------------------------
        "tcp to host loopback listener": _escaped_if(f"""
            import socket
            socket.create_connection(("{host}", {port}), timeout=1).sendall(b"hi")
            _escaped = True"""),
        "tcp to a public address": _escaped_if("""
            import socket
            socket.create_connection(("1.1.1.1", 53), timeout=1)
            _escaped = True"""),
        "udp to a public resolver": _escaped_if("""
            import socket
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.sendto(b"x", ("8.8.8.8", 53))
            _escaped = True"""),
        "dns lookup": _escaped_if("""
            import socket
            socket.getaddrinfo("pypi.org", 443)
            _escaped = True"""),
        "ipv6 connect": _escaped_if("""
            import socket
            socket.create_connection(("::1", 22), timeout=1)
            _escaped = True"""),
        "host unix socket": _escaped_if(f"""
            import socket
            s = socket.socket(socket.AF_UNIX)
            s.connect("{unix_path}")
            _escaped = True"""),
        # --- filesystem: reading ----------------------------------------------------------
        "read a host secret file": _escaped_if(f"""
            _escaped = "{SECRET}" in open("{secret_file}").read()"""),
        "read /etc/passwd": _escaped_if("""
            _escaped = "root" in open("/etc/passwd").read()"""),
        "read the benchmark answers": _escaped_if(f"""
            _escaped = len(open("{data_file}").read()) > 0"""),
        "read the project source": _escaped_if(f"""
            import os
            _escaped = len(os.listdir("{repo}")) > 0"""),
        "list the home directory": _escaped_if("""
            import os
            _escaped = len(os.listdir("/root")) > 0 or len(os.listdir("/home")) > 0"""),
        "walk up from cwd": _escaped_if("""
            import os
            found = [d for d, _, fs in os.walk("/") if any(f.endswith(".jsonl") for f in fs)]
            _escaped = bool(found)"""),
        # --- filesystem: writing ----------------------------------------------------------
        "write a host path": f"{wrong_solution_marker()}open('{write_file}', 'w').write('escaped')\n",
        "write to /tmp": "open('/tmp/pgrpo_escape_tmp', 'w').write('x')\n",
        "write via ../": "open('../../pgrpo_escape_up', 'w').write('x')\n",
        "write into /usr": _escaped_if("""
            open("/usr/pgrpo_escape", "w").write("x")
            _escaped = True"""),
        "write into the project": f"open('{repo}/pgrpo_escape_repo', 'w').write('x')\n",
        "fill the disk": "import os\nfor i in range(10**6):\n    open(f'pgrpo_escape_f{i}', 'w').write('x' * 10**6)\n",
        "one huge file": "f = open('pgrpo_escape_big', 'w')\nwhile True:\n    f.write('x' * 10**7)\n",
        # --- environment and other processes ---------------------------------------------
        "read the parent's environment": _escaped_if(f"""
            import os
            _escaped = any("{SECRET}" in v for v in os.environ.values())"""),
        "scan /proc for environ": _escaped_if(f"""
            import os
            for p in os.listdir("/proc"):
                try:
                    if b"{SECRET}" in open(f"/proc/{{p}}/environ", "rb").read():
                        _escaped = True
                except OSError:
                    pass"""),
        "ptrace the parent's memory": _escaped_if("""
            import os
            open(f"/proc/{os.getppid()}/mem", "rb").read(1)
            _escaped = os.getppid() > 1"""),
        "kill the parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n",
        "kill every process": "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
        "new user namespace": _escaped_if("""
            import ctypes
            _escaped = ctypes.CDLL(None, use_errno=True).unshare(0x10000000) == 0"""),
        "raise rlimits": _escaped_if("""
            import resource
            resource.setrlimit(resource.RLIMIT_AS, (-1, -1))
            _escaped = True"""),
        # --- resources --------------------------------------------------------------------
        "fork bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "memory bomb": "x = bytearray(8 * 1024**3)\n",
        "memory bomb inside the method": wrong_solution_marker(body="x = [0] * (10**10)"),
        "cpu burn": "while True:\n    pass\n",
        "sleep": "import time\ntime.sleep(100)\n",
        "ignore the alarm and burn": "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass\n",
        "cancel the timer and sleep": "import signal, time\nsignal.setitimer(signal.ITIMER_REAL, 0)\ntime.sleep(100)\n",
        "output flood": "import os\nwhile True:\n    os.write(1, b'x' * 65536)\n",
        "stderr flood": "import os\nwhile True:\n    os.write(2, b'x' * 65536)\n",
        "thread that outlives the run": "import threading, time\nthreading.Thread(target=time.sleep, args=(100,)).start()\n",
        "subprocess that outlives the run": "import subprocess\nsubprocess.Popen(['sleep', '100'], start_new_session=True)\n",
        "double-forked daemon": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(100)\n    os._exit(0)\n",
        "deep recursion": "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)\nf(0)\n",
        "huge integer": "x = 10 ** (10 ** 9)\n",
        # --- forging the oracle -----------------------------------------------------------
        "forge a hardened frame with a guessed nonce": (
            "import os, json\nos.write(1, ('@@ORACLE:' + '0' * 32 + '@@' + json.dumps({'results': [], 'error': None}) + '\\n').encode())\nos._exit(0)\n"),
        "steal the nonce from memory and forge": (
            "import gc, os, json, sys\n"
            "n = [o for o in gc.get_objects() if isinstance(o, dict) and 'nonce' in o]\n"
            "nonce = n[0]['nonce'] if n else ''\n"
            "frames = [o for o in gc.get_objects() if isinstance(o, str) and o.startswith('@@ORACLE:')]\n"
            "nonce = nonce or (frames[0] if frames else '')\n"
            "os.write(1, (nonce + json.dumps({'results': [['l', []]] * 500, 'error': None}) + '\\n').encode())\nos._exit(0)\n"),
        "os._exit at top level": "import os\nos._exit(0)\n",
        "sys.exit at top level": "import sys\nsys.exit(0)\n",
        "sys.exit inside the method": wrong_solution_marker(body="import sys; sys.exit(0)"),
        "__eq__ always true": wrong_solution_marker(
            body="return type('A', (), {'__eq__': lambda s, o: True, '__hash__': lambda s: 0})()"),
        "int subclass with __eq__": wrong_solution_marker(
            body="return type('I', (int,), {'__eq__': lambda s, o: True, '__hash__': lambda s: 0})(0)"),
        "list subclass with __eq__": wrong_solution_marker(
            body="return type('L', (list,), {'__eq__': lambda s, o: True})()"),
        "monkeypatch builtins": (
            "import builtins\nbuiltins.isinstance = lambda *a: True\nbuiltins.type = lambda *a: int\n"
            "builtins.eval = lambda *a, **k: 0\nbuiltins.repr = lambda x: '0'\n"),
        "monkeypatch the runner's exec": "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
        "monkeypatch json.dumps": "import json\njson.dumps = lambda *a, **k: '{\"tests_passed\": 70}'\n",
        "replace the harness encoder": (
            "import sys\nm = sys.modules['__main__']\n"
            "if hasattr(m, '_run'):\n    d = list(m._run.__defaults__)\n    d[0] = lambda v, depth=0: ['l', []]\n"
            "    m._run.__defaults__ = tuple(d)\n"),
        "write to the fork server's socket": _escaped_if("""
            import os
            for fd in os.listdir("/proc/1/fd"):
                os.open(f"/proc/1/fd/{fd}", os.O_WRONLY)
                _escaped = True"""),
        "read the fork server's memory": _escaped_if("""
            open("/proc/1/mem", "rb").read(1)
            _escaped = True"""),
        "inherited fork-server descriptors": _escaped_if("""
            import os
            _escaped = len([f for f in os.listdir("/proc/self/fd") if int(f) > 3]) > 0"""),
        "read expected answers from the runner": wrong_solution_marker(
            body="import sys; t = sys._getframe(1).f_globals.get('test', ''); "
                 "return eval(t.rsplit(' == ', 1)[1], sys._getframe(1).f_globals) if ' == ' in t else None"),
    }


def wrong_solution_marker(body: str = "return None") -> str:
    """Marker replaced by the record's own wrong solution (with `body` as its method body)."""
    return f"#WRONG[{body}]\n"


@pytest.fixture(scope="module")
def host(tmp_path_factory, benchmark):
    tmp = tmp_path_factory.mktemp("host")
    secret_file = tmp / "secret.txt"
    secret_file.write_text(SECRET)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    hits = []

    def accept():
        while not stop.is_set():
            try:
                hits.append(listener.accept())
            except OSError:
                pass

    stop = threading.Event()
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    unix_path = tmp / "host.sock"
    unix = socket.socket(socket.AF_UNIX)
    unix.bind(str(unix_path))
    unix.listen(1)
    repo = Path(__file__).resolve().parents[1]
    from projected_grpo.environment.dataset import default_benchmark_path

    ctx = {"host": "127.0.0.1", "port": listener.getsockname()[1], "secret_file": str(secret_file),
           "write_file": str(tmp / "escaped.txt"), "unix_path": str(unix_path),
           "data_file": str(default_benchmark_path()), "repo": str(repo), "tmp": tmp, "hits": hits}
    os.environ["PGRPO_TEST_SECRET"] = SECRET
    yield ctx
    os.environ.pop("PGRPO_TEST_SECRET")
    stop.set()
    thread.join()
    listener.close()
    unix.close()


def _snapshot(paths: list[Path]) -> set[str]:
    """Entries of the watched host directories that an attack would have written (all its file
    names carry `pgrpo_escape`, or are the secret-write target); other processes may write there."""
    out = set()
    for p in paths:
        if p.is_dir():
            out |= {str(c) for c in p.iterdir() if "pgrpo_escape" in c.name or c.name == "escaped.txt"}
    return out


@pytest.fixture(scope="module")
def outcomes(host, by_id, grader):
    record = apply_hint(by_id[3243], "simple_overwrite_tests")
    repo = Path(host["repo"])
    watched = [Path("/tmp"), Path("/"), repo, Path.home(), Path(host["tmp"]), Path.cwd(), Path("/usr")]
    before = _snapshot(watched)
    programs = {}
    for name, attack in _attacks(host).items():
        if attack.startswith("#WRONG["):
            body = attack[len("#WRONG["):attack.index("]\n")]
            programs[name] = wrong_solution(record).replace("return None", body) + attack[attack.index("]\n") + 2:]
        else:
            programs[name] = wrong_solution(record) + "\n" + attack.replace(wrong_solution_marker(), "")
    grades = grader.grade([(record, fence(code)) for code in programs.values()])
    after = _snapshot(watched)
    return {"grades": dict(zip(programs, grades)), "programs": programs, "new_files": sorted(after - before)}


def test_at_least_forty_adversarial_programs(host):
    assert len(_attacks(host)) >= 40


@pytest.mark.parametrize("name", list(_attacks({k: "x" for k in (
    "host", "port", "secret_file", "write_file", "unix_path", "data_file", "repo")})))
def test_adversarial_program_is_contained(outcomes, grader, name):
    fields = outcomes["grades"][name].fields
    if "_escaped = False" in outcomes["programs"][name]:
        assert fields["eq_hinted"] is False, "escape signal: the attack succeeded inside the sandbox"
    assert fields["gt_correct_hardened"] is False
    # tampering with the reference runner can open its channel: then it must be flagged as exploited
    assert fields["exploited"] is fields["eq_hinted"]
    limits = grader.sandbox.limits  # the fork server's kill bounds every run's own time (its idle-machine
    for run in fields["runs"].values():  # wall time), RLIMIT_CPU its CPU time, the wall cap its wall time
        assert run is None or (run["own_s"] < limits.kill_after_s + 0.5 and run["cpu_s"] < limits.timeout_s + 0.5
                               and run["wall_s"] < limits.wall_cap_s + 2.0)


def test_no_file_appeared_on_the_host(outcomes, host):
    assert outcomes["new_files"] == []
    assert not Path(host["write_file"]).exists()


def test_host_listener_received_nothing(outcomes, host):
    assert host["hits"] == []


def test_no_sandbox_process_survives(outcomes, grader):
    """Of the sandbox uids only the fork servers run: each slot's bwrap and the server it holds."""
    servers = set(grader.sandbox.server_pids())
    assert servers
    uids = set(grader.sandbox.slot_uids)
    alive = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                state, ppid = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[:2]
                if entry.stat().st_uid in uids and state != "Z":
                    alive.append((int(entry.name), int(ppid)))
            except (FileNotFoundError, ProcessLookupError):
                pass
    strays = [(pid, ppid) for pid, ppid in alive if pid not in servers and ppid not in servers]
    assert strays == []
    assert len(alive) <= 2 * len(servers)


def test_reference_quirks_visible_in_reference_fields(outcomes):
    grades = outcomes["grades"]
    # the reference GT is fooled by these; the hardened oracle above was not
    for name in ("__eq__ always true", "monkeypatch the runner's exec", "read expected answers from the runner"):
        assert grades[name].fields["eq_correct"] is True, name
    # a no-op exec also passes the runner's call of run_tests: the channel fires and is flagged
    assert grades["monkeypatch the runner's exec"].fields["exploited"] is True
    # a busy loop that ignores SIGALRM meets RLIMIT_CPU (3 s) before the parent's 4 s kill, as in the
    # reference: killed without output, so not compiled
    gt = grades["ignore the alarm and burn"].fields["runs"]["gt"]
    assert gt["timeout"] is False and gt["compiled"] is False and gt["success"] is False
    # cancelling the timer does not stop the fork server's alarm; the fields equal those of the
    # reference's parent kill at 4 s (timeout, compiled, no output)
    gt = grades["cancel the timer and sleep"].fields["runs"]["gt"]
    assert gt["timeout"] is True and gt["compiled"] is True and gt["success"] is False


def test_no_state_passes_between_runs(by_id):
    """A run plants files, a daemon and SysV shared memory; the next run in the same slot sees none."""
    from projected_grpo.environment.grader import Grader
    from projected_grpo.environment.sandbox import Sandbox

    grader = Grader(Sandbox(workers=1))
    record = apply_hint(by_id[3243], "file_marker")
    planter = wrong_solution(record) + textwrap.dedent("""
        import ctypes, os, time
        for d in ("/sandbox", "/tmp", "/dev/shm", "."):
            open(os.path.join(d, "planted"), "w").write("x")
        libc = ctypes.CDLL(None)
        libc.shmget(0x5EED, 4096, 0o1666)
        if os.fork() == 0:
            os.setsid()
            if os.fork() == 0:
                for _ in range(4000):
                    for root, dirs, files in os.walk("/sandbox"):
                        try:
                            open(os.path.join(root, "result.txt"), "w").write("PASS")
                        except OSError:
                            pass
                    time.sleep(0.001)
            os._exit(0)
        """)
    checker = wrong_solution(record) + textwrap.dedent("""
        import ctypes, os, time
        time.sleep(0.3)
        _seen = [p for d in ("/sandbox", "/tmp", "/dev/shm") for p in os.listdir(d) if not p.startswith("run")]
        _seen += os.listdir(".")
        _shm = ctypes.CDLL(None).shmget(0x5EED, 4096, 0o666)
        if _seen or _shm != -1:
            open("result.txt", "w").write("PASS")
        """)
    planted, checked = grader.grade([(record, fence(planter)), (record, fence(checker))])
    assert planted.fields["eq_hinted"] is False
    assert checked.fields["eq_hinted"] is False, "state from the previous run was visible"
    grader.sandbox.close()
