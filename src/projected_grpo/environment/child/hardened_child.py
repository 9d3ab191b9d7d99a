# Runs INSIDE the sandbox for the hardened oracle; payload (JSON) on stdin.
# It never sees expected answers: it only evaluates each call and returns the value, type-tagged,
# if it is built from plain builtins. The grader compares outside. SystemExit is swallowed, and the
# one result frame goes to a private copy of stdout, prefixed by the grader's nonce, then os._exit.
import io
import json
import os
import resource
import signal
import sys

_payload = json.loads(sys.stdin.read())
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
_timeout = _payload["timeout"]
_memory = _payload["memory_mb"] * 1024 * 1024
for _limit, _value in (
    (resource.RLIMIT_AS, _memory), 
    (resource.RLIMIT_FSIZE, _payload["fsize_mb"] * 1024 * 1024), (resource.RLIMIT_NOFILE, _payload["nofile"]),
    (resource.RLIMIT_NPROC, _payload["nproc"]), (resource.RLIMIT_CORE, 0),
):
    resource.setrlimit(_limit, (_value, _value))
# CPU backstop above the alarm, so a busy loop meets the alarm first (as the reference's
# label table shows: a TimeoutException test failure, not a kill).
resource.setrlimit(resource.RLIMIT_CPU, (int(_timeout) + 2, int(_timeout) + 3))
_frame_fd = os.dup(1)
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
os.dup2(_null, 2)
sys.stdout = io.StringIO()
sys.stderr = io.StringIO()


def _make_encoder(type=type, int=int, float=float, str=str, bool=bool, list=list, tuple=tuple, dict=dict,
                  set=set, frozenset=frozenset, repr=float.__repr__, istr=int.__str__, len=len):
    none_type = type(None)

    def encode(value, depth=0):
        if depth > 200:
            raise ValueError("value nested too deeply")
        t = type(value)
        if t is bool:
            return ["b", value]
        if t is int:
            return ["i", istr(value)]
        if t is float:
            return ["f", repr(value)]
        if t is str:
            return ["s", value]
        if t is none_type:
            return ["n"]
        if t is list or t is tuple or t is set or t is frozenset:
            tag = {list: "l", tuple: "t", set: "S", frozenset: "F"}[t]
            return [tag, [encode(x, depth + 1) for x in value]]
        if t is dict:
            return ["d", [[encode(k, depth + 1), encode(v, depth + 1)] for k, v in value.items()]]
        raise TypeError(f"returned a {t.__name__}, not a plain builtin value")

    return encode


class TimeoutException(Exception):
    pass


def _on_alarm(signum, frame):
    raise TimeoutException("timed out")


def _run(payload, encode=_make_encoder(), exec=exec, eval=eval, compile=compile, type=type,
         write=os.write, exit=os._exit, dumps=json.dumps, BaseException=BaseException):
    nonce, code, items = payload["nonce"], payload["code"], payload["items"]
    payload.clear()
    results, error, namespace = [], None, {}
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, _timeout)
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
    frame = nonce + dumps({"results": results, "error": error}) + "\n"
    data = frame.encode("utf-8", "surrogatepass")
    while data:
        data = data[write(_frame_fd, data):]
    exit(0)


_run(_payload)
