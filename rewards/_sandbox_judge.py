"""The sandbox's judge: runs the tests and decides the verdict, outside the candidate's reach (stdlib only).

Runs in `_sandbox_runner.py`'s own process (root or the trainer's uid, non-dumpable, outside the
candidate's pid namespace), the only place the tests exist. It executes the trusted `context` (the
task's prompt: imports, helpers such as HumanEval's `poly`) and then each test with the names the tests
take from the program (HumanEval's entry point, MBPP's `f` in `assert f(1) == 2`) bound to `Proxy`
objects: a call sends its arguments as plain data to the candidate process and gets back plain data
(`_sandbox_wire`), a raised exception, or nothing usable. For stdin/stdout cases it sends each input
and compares the stdout it gets back. Only the judge counts passes.
"""
import ast
import builtins
import importlib

import _sandbox_wire as wire

# Modules a test may use under the program's name for them (MBPP: `math.isclose(area(2), 12.56)`).
STDLIB_MODULES = frozenset("math cmath re string collections itertools functools heapq bisect operator "
                           "statistics fractions decimal random copy typing array datetime numbers "
                           "json hashlib".split())


class Abort(BaseException):
    """The job ends here (a deadline, or the candidate broke the protocol); not catchable by `except Exception`."""


class CallFailed(BaseException):
    """A call whose result could not cross as plain data: the test that made it fails."""


class CandidateError(Exception):
    """The program raised an exception that is not a built-in one."""


class Channel:
    """The judge's end of the two pipes, with the job's deadline and what went wrong so far."""

    def __init__(self, rfd, wfd, deadline):
        self.rfd, self.wfd, self.deadline = rfd, wfd, deadline
        self.abort = None  # ("timeout" | "violation", detail) once the job must stop
        self.call_failed = False  # set by a failed call; the current test fails whatever it catches

    def receive(self):
        if self.abort:
            raise Abort()
        try:
            return wire.recv(self.rfd, self.deadline)
        except wire.Deadline:
            self.abort = ("timeout", "wall-clock deadline")
        except (wire.WireError, OSError) as e:
            self.abort = ("violation", str(e)[:200])
        raise Abort()

    def request(self, message):
        if self.abort:
            raise Abort()
        try:
            wire.send(self.wfd, message)
        except OSError as e:  # the candidate is gone
            self.abort = ("violation", f"channel closed: {e}"[:200])
            raise Abort() from None
        return self.receive()

    def violation(self, detail):
        self.abort = ("violation", detail)
        raise Abort()


def _exception(raised):
    name, message = (raised + ["", ""])[:2] if type(raised) is list else ("", "")
    cls = getattr(builtins, str(name), None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        return cls(str(message))
    return CandidateError(f"{name}: {message}")


class Proxy:
    """Stands in the judge for a function of the program; calls cross the process boundary as plain data."""

    def __init__(self, channel, name):
        self.channel, self.name = channel, name

    def __repr__(self):
        return f"<sandboxed {self.name}>"

    def __call__(self, *args, **kwargs):
        try:
            payload = wire.encode([list(args), kwargs])
        except TypeError as e:
            self.channel.call_failed = True
            raise CallFailed(f"argument of {self.name}: {e}") from None
        reply = self.channel.request({"op": "call", "name": self.name, "args": payload})
        if set(reply) == {"value"}:
            try:
                return wire.decode(reply["value"])
            except wire.WireError as e:
                self.channel.violation(f"{self.name} returned {e}")
        if set(reply) == {"raised"}:
            raise _exception(reply["raised"])
        if set(reply) == {"unencodable"}:
            self.channel.call_failed = True
            raise CallFailed(f"{self.name} returned a {str(reply['unencodable'])[:100]}, not plain data")
        self.channel.violation("malformed reply to a call")


def free_names(source):
    """Names `source` reads but never binds (the ones it expects from the program or the context)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set()
    read, bound = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
    return read - bound


def _bind(channel, scope, names):
    """Bind each of `names` in `scope` to what the program says it is: a proxy, a stdlib module, or data."""
    if not names:
        return
    kinds = channel.request({"op": "resolve", "names": sorted(names)}).get("kinds")
    if type(kinds) is not dict or set(kinds) != set(names):
        channel.violation("malformed reply to resolve")
    for name, kind in kinds.items():
        kind = kind if type(kind) is list and kind and type(kind[0]) is str else ["missing"]
        if kind[0] == "callable":
            scope[name] = Proxy(channel, name)
        elif kind[0] == "module" and len(kind) == 2 and type(kind[1]) is str and kind[1] in STDLIB_MODULES:
            scope[name] = importlib.import_module(kind[1])
        elif kind[0] == "data" and len(kind) == 2:
            try:
                scope[name] = wire.decode(kind[1])
            except wire.WireError:
                channel.violation(f"malformed value for {name!r}")
        else:
            scope.pop(name, None)  # missing: the test's NameError fails it


def _context_scope(context):
    scope = {"__name__": "__main__"}
    try:
        exec(compile(context + "\n", "context.py", "exec"), scope)
    except BaseException:  # noqa: BLE001 - e.g. a prompt that ends mid-function: the tests go without it
        scope = {"__name__": "__main__"}
    return scope


def judge_asserts(channel, job, load_error):
    """(passed, total, first error) of the assert tests, run here against proxies of the program."""
    tests = job["tests"]
    if load_error:
        return 0, len(tests), load_error[:300]
    scope = _context_scope(job["context"])
    wanted = set(job["entry_points"])
    for test in tests:
        wanted |= free_names(test)
    _bind(channel, scope, {n for n in wanted if n in job["entry_points"] or (n not in scope and not hasattr(builtins, n))})
    passed, first_error = 0, ""
    for test in tests:
        channel.call_failed = False
        try:
            exec(compile(test, "test.py", "exec"), scope)
            ok = True
        except Abort:
            raise
        except BaseException as e:  # noqa: BLE001 - a failed test
            ok, first_error = False, first_error or f"{type(e).__name__}: {e}"[:300]
        if channel.abort:  # even if the test code swallowed the Abort
            raise Abort()
        passed += ok and not channel.call_failed
    return passed, len(tests), first_error


def same_output(got, want):
    lines = lambda s: [line.rstrip() for line in s.strip().splitlines()]  # noqa: E731
    return lines(got) == lines(want)


def judge_stdio(channel, job, load_error):
    """(passed, total, first error) of the stdin/stdout cases: the program's stdout compared here."""
    cases = job["cases"]
    if load_error:
        return 0, len(cases), load_error[:300]
    passed, first_error = 0, ""
    for i, case in enumerate(cases):
        reply = channel.request({"op": "stdio", "input": case["input"]})
        if set(reply) != {"exit", "stdout", "truncated"} or type(reply["exit"]) is not int \
                or type(reply["stdout"]) is not str or type(reply["truncated"]) is not bool:
            channel.violation("malformed reply to a case")
        same = reply["exit"] == 0 and not reply["truncated"] and same_output(reply["stdout"], case["output"])
        passed += same
        if not same:
            first_error = first_error or (f"case {i}: exit status {reply['exit']}" if reply["exit"] else f"case {i}: wrong output")
    return passed, len(cases), first_error


TOOL_OUTPUT_MAX = 1 << 16  # characters of a tool call's output in the verdict (the trainer cuts it further)


def judge_tool(channel, job, load_error):
    """A tool call: the program's output (untrusted text, shown to the model, never a verdict) as the detail;
    passed 1 when it exited 0. A program that does not compile reports its error as the output."""
    if load_error:
        return 0, 1, load_error[:300]
    reply = channel.request({"op": "tool"})
    if set(reply) != {"exit", "stdout", "truncated"} or type(reply["exit"]) is not int \
            or type(reply["stdout"]) is not str or type(reply["truncated"]) is not bool:
        channel.violation("malformed reply to a tool call")
    return int(reply["exit"] == 0), 1, reply["stdout"][:TOOL_OUTPUT_MAX]


def judge(channel, job):
    """Wait for the candidate's "ready" and "loaded", then run the tests: (passed, total, first error).
    A setup error sent before "ready" (before the program ran) is returned as ("setup_error", detail)."""
    first = channel.receive()
    if set(first) == {"setup_error"}:
        return "setup_error", str(first["setup_error"])[:300], ""
    if first != {"ready": True}:
        channel.violation("no ready message")
    loaded = channel.receive()
    if set(loaded) != {"loaded"} or type(loaded["loaded"]) is not str:
        channel.violation("malformed loaded message")
    run = {"stdio": judge_stdio, "tool": judge_tool}.get(job["mode"], judge_asserts)
    return run(channel, job, loaded["loaded"])
