# Runs INSIDE the sandbox as `python -S -s -P -c <this file>`; payload (JSON) on stdin.
# Reproduces the reference child harness: rlimits + SIGALRM, exec(code, {}) with stdout captured,
# the last JSON-looking line of that output parsed, one JSON result written to the real stdout.
import contextlib
import io
import json
import os
import resource
import signal
import sys

payload = json.loads(sys.stdin.read())
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
timeout = payload["timeout"]
memory = payload["memory_mb"] * 1024 * 1024
for limit, value in (
    (resource.RLIMIT_AS, memory), (resource.RLIMIT_RSS, memory), 
    (resource.RLIMIT_FSIZE, payload["fsize_mb"] * 1024 * 1024), (resource.RLIMIT_NOFILE, payload["nofile"]),
    (resource.RLIMIT_NPROC, payload["nproc"]), (resource.RLIMIT_CORE, 0),
):
    resource.setrlimit(limit, (value, value))
# CPU backstop above the alarm, so a busy loop meets the alarm first (as the reference's
# label table shows: a TimeoutException test failure, not a kill).
resource.setrlimit(resource.RLIMIT_CPU, (int(timeout) + 2, int(timeout) + 3))


class TimeoutException(Exception):
    pass


def _on_alarm(signum, frame):
    raise TimeoutException(f"Execution timed out after {float(timeout)} seconds")


signal.signal(signal.SIGALRM, _on_alarm)
result = {"success": False, "compiled": True, "timeout": False, "oom": False, "stdout": {}}
captured = io.StringIO()
code = payload["code"]
del payload
signal.setitimer(signal.ITIMER_REAL, timeout)
try:
    with contextlib.redirect_stdout(captured):
        exec(code, {})
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
