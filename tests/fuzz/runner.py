"""Runs fuzz cases against ``engine.cli.main`` and judges the property of issue 18.

One case = files written over a fresh copy of a prepared base workspace, then its commands in
order. Each command runs in a child forked from this process (the engine is imported, and its
parsers built, once, before the first fork), with

* stdout and stderr redirected to files (so subprocesses such as git are captured too), stdout
  strict UTF-8 and stderr UTF-8 with backslashreplace, as a UTF-8 terminal gives;
* ``RLIMIT_AS`` = this process's address space + the memory budget (1 GiB by default), and
  ``RLIMIT_FSIZE`` (256 MiB): a file or output that large is a failure too;
* a time limit (20 s by default) after which the child is killed.

The property, per command: the exit code is 0, 1, 2 or 3 (4 is ``engine plan``'s documented
"something would change"); no ``engine: internal error`` line and no Python traceback in the
output; no timeout; no MemoryError, out-of-memory or death by a signal; when the case says so,
the control campaign delivered a message during the command (``Command.control``; see
generators.py for what that means per input kind); no file written where the case forbids it
(``git diff --output``, a ``!!python`` tag) and no forbidden text in the outbox (a template
symlinked out of the workspace).

A failing case is saved as a reproducer: ``case.json`` (the case; ``bench/fuzz.py --replay``
runs it again), ``ws/`` (the workspace as the first command found it, store included),
``repro.sh`` (the commands, on a throw-away copy) and ``result.json`` (what each command
printed). A failure can be confirmed by running the case again in fresh interpreters
(``python -m engine`` subprocesses with the same limits): :meth:`Runner.confirm`.
"""

from __future__ import annotations

import gc
import io
import json
import os
import re
import resource
import select
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .generators import (
    BASE_SETUP,
    CONTROL_CAMPAIGN,
    CONTROL_CSV_ROW,
    CONTROL_GROUP,
    CONTROL_YAML,
    EXAMPLES,
    WS,
    Case,
    Command,
)

SIGNING = {"ENGINE_SECRET": "fuzz-signing-key"}  # the examples' web.base_url: their ticks sign links
DEFAULT_TIMEOUT = float(os.environ.get("ENGINE_FUZZ_TIMEOUT", "20"))
DEFAULT_MEMORY_MB = int(os.environ.get("ENGINE_FUZZ_MEMORY_MB", "1024"))
OUTPUT_LIMIT = 256 * 1024 * 1024
KEEP_OUTPUT = 20_000  # characters of each output kept in results
SECRET = "FUZZ-SECRET-42"  # in secret.txt beside the workspace: never to be sent

INTERNAL = re.compile(r"^engine: internal error", re.MULTILINE)
TRACEBACK = re.compile(r"^Traceback \(most recent call last\):", re.MULTILINE)
MEMORY = re.compile(r"MemoryError|out of memory|Cannot allocate memory", re.IGNORECASE)
EXCEPTION_LINE = re.compile(r"^(\w+(?:\.\w+)*(?:Error|Exception|Exit|Interrupt|Warning)):? ?(.*)$", re.MULTILINE)

FAILURE_TYPES = ("exit-code", "internal-error", "traceback", "timeout", "memory", "crash", "control-not-delivered",
                 "side-effect", "expectation")


@dataclass
class CommandResult:
    argv: list[str]
    exit_code: int | None  # None: killed (timeout, signal)
    signal: int | None
    timed_out: bool
    stdout: str
    stderr: str
    elapsed: float
    peak_rss_mb: float  # above this process's own resident size at the fork
    cpu: float = 0.0  # user + system seconds of the command
    control_before: int | None = None
    control_after: int | None = None

    def to_json(self) -> dict:
        return {"argv": self.argv, "exit_code": self.exit_code, "signal": self.signal, "timed_out": self.timed_out,
                "elapsed": round(self.elapsed, 3), "peak_rss_mb": round(self.peak_rss_mb, 1),
                "control_before": self.control_before, "control_after": self.control_after,
                "stdout": self.stdout[-KEEP_OUTPUT:], "stderr": self.stderr[-KEEP_OUTPUT:]}


@dataclass
class Failure:
    type: str
    command: int  # index of the command in the case
    detail: str
    signature: str

    def to_json(self) -> dict:
        return {"type": self.type, "command": self.command, "detail": self.detail, "signature": self.signature}


@dataclass
class CaseResult:
    case: Case
    results: list[CommandResult] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    elapsed: float = 0.0
    saved: str | None = None
    confirmed: bool | None = None
    confirmed_as: list[str] = field(default_factory=list)  # the failure types of the fresh run

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def cpu(self) -> float:
        return sum(r.cpu for r in self.results)

    @property
    def peak_rss_mb(self) -> float:
        return max((r.peak_rss_mb for r in self.results), default=0.0)

    @property
    def control_delivered(self) -> bool | None:
        checked = [r.control_after > r.control_before for r, c in zip(self.results, self.case.commands)
                   if c.control and r.control_before is not None and r.control_after is not None]
        return all(checked) if checked else None


# --- the base workspace --------------------------------------------------------------------------


def prepare_base(target: Path, runner: Runner | None = None) -> Path:
    """examples/ (without broken/) plus the control campaign, its group and its partner, ticked
    once at T0 (after a manual start that leaves an open activity for ``respond``). ``target``
    is the case directory; the workspace is ``target/ws``."""
    target.mkdir(parents=True, exist_ok=True)
    ws = target / WS
    if ws.exists():
        shutil.rmtree(ws)
    shutil.copytree(EXAMPLES, ws, ignore=shutil.ignore_patterns(".engine", "__pycache__", "broken"))
    (ws / "campaigns" / f"{CONTROL_CAMPAIGN}.yaml").write_text(CONTROL_YAML, encoding="utf-8")
    (ws / "groups" / "control.csv").write_text(CONTROL_GROUP, encoding="utf-8")
    partners = (ws / "partners.csv").read_text(encoding="utf-8")
    (ws / "partners.csv").write_text(partners.rstrip("\n") + "\n" + CONTROL_CSV_ROW + "\n", encoding="utf-8")
    old = time.time() - 60  # every base file older than anything a case writes
    for path in ws.rglob("*"):
        os.utime(path, (old, old))
    git = ["git", "-c", "user.name=fuzz", "-c", "user.email=fuzz@example.com", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "base"]):  # for `engine diff REV:path`
        subprocess.run(git + args, cwd=ws, check=False, capture_output=True)
    runner = runner or Runner(target.parent / "prepare-cases", prepare=False)
    for argv in BASE_SETUP:
        result = runner.run_command(target, Command(argv))
        if result.exit_code != 0 or INTERNAL.search(result.stderr) or TRACEBACK.search(result.stderr):
            raise RuntimeError(f"the base workspace does not run: engine {' '.join(argv)} → exit {result.exit_code}\n"
                               f"{result.stdout}\n{result.stderr}")
    if control_count(ws) < 1:
        raise RuntimeError("the base workspace: the control campaign sent nothing at T0")
    return target


def control_count(ws: Path) -> int:
    """Messages of the control campaign in the file outbox."""
    path = ws / ".engine" / "outbox" / "email.jsonl"
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    count = 0
    for line in data.splitlines():
        if b'"control"' not in line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("campaign") == CONTROL_CAMPAIGN:
            count += 1
    return count


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def preload() -> None:
    """Import every module of the engine before the first fork (a command imports its modules
    lazily; in the children that would be paid on every case), and build the lazy parsers."""
    import importlib
    import pkgutil

    for package in ("dsl", "campaigns", "engine"):
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            if info.name.endswith(("testing", "__main__")):
                continue
            try:
                importlib.import_module(info.name)
            except Exception:  # an optional dependency (psycopg): the command that needs it will say so
                pass


# --- running ------------------------------------------------------------------------------------


def materialize(case: Case, base: Path, target: Path) -> Path:
    """A fresh case directory: the base copied (store and outbox included), the case's files
    written over it (newer than the base's, so the engine sees them change)."""
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
        if target.exists():
            subprocess.run(["chmod", "-R", "u+rwx", str(target)], check=False)
            shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(base, target, symlinks=True)
    (target / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    ws = target / WS
    now = time.time()
    for rel, content in case.files.items():
        path = ws / rel
        if content is None:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        if isinstance(content, dict):
            os.symlink(content["symlink"], path)
            continue
        path.write_bytes(content)
        os.utime(path, (now, now))
    return target


def _substitute(argv: list[str], case_dir: Path) -> list[str]:
    return [a.replace("{case}", str(case_dir)) for a in argv]


class Runner:
    """Runs cases in ``workdir`` (one directory reused for every case) on copies of ``base``
    (a prepared case directory; None: prepare one in ``workdir/base``)."""

    def __init__(self, workdir: Path, base: Path | None = None, *, timeout: float = DEFAULT_TIMEOUT,
                 memory_mb: int = DEFAULT_MEMORY_MB, save_dir: Path | None = None, prepare: bool = True):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.timeout, self.memory_mb, self.save_dir = timeout, memory_mb, save_dir
        self.base = base
        if base is None and prepare:
            preload()
            self.base = prepare_base(self.workdir / "base", self)
            self.warm_up()
        gc.collect()
        gc.freeze()  # fewer copy-on-write faults in the children

    def warm_up(self) -> None:
        """Run a few commands in this process on a throw-away copy of the base, so that what the
        engine builds lazily (the expression parser, the template sandbox, pydantic's
        validators...) is built once here and inherited by every child. The caches it fills are
        keyed by content or by path, and the copy's path is never a case's."""
        import contextlib

        from engine.cli import main

        target = self.workdir / "warm-up"
        materialize(Case("warm-up", {}, []), self.base, target)
        saved = os.getcwd()
        sink = io.StringIO()
        try:
            os.chdir(target)
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                for argv in (["check"], ["tick", "--at", "2026-07-01T01:00:00Z"], ["status", "--json"],
                             ["test", "partner-onboarding", "--partner", "p001", "--at", "2026-07-01T01:00:00Z"],
                             ["explain", "partner-onboarding", "--partner", "p001", "--at", "2026-07-01T01:00:00Z"]):
                    try:
                        main(["-w", WS, *argv])
                    except BaseException:  # only a warm-up: the cases will show what is wrong
                        pass
        finally:
            os.chdir(saved)

    # one command, in a forked child
    def run_command(self, case_dir: Path, command: Command) -> CommandResult:
        argv = _substitute(command.argv, case_dir)
        out_path, err_path = case_dir / ".fuzz-stdout", case_dir / ".fuzz-stderr"
        limit = _vm_size() + self.memory_mb * 1024 * 1024
        rss0 = _rss()
        sys.stdout.flush()
        sys.stderr.flush()
        start = time.monotonic()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _child(argv, case_dir, out_path, err_path, limit, command.env)
        timed_out, status, usage = _wait(pid, start + self.timeout)
        elapsed = time.monotonic() - start
        exit_code = os.waitstatus_to_exitcode(status)
        sig = -exit_code if exit_code < 0 else None
        peak = max(0.0, (usage.ru_maxrss * 1024 - rss0) / 2**20) if usage else 0.0
        cpu = usage.ru_utime + usage.ru_stime if usage else 0.0
        return CommandResult(argv, None if sig is not None else exit_code, sig, timed_out, _read(out_path),
                             _read(err_path), elapsed, peak, cpu)

    def run(self, case: Case, *, save: bool = True) -> CaseResult:
        start = time.monotonic()
        case_dir = materialize(case, self.base, self.workdir / "case")
        result = CaseResult(case)
        for i, command in enumerate(case.commands):
            before = control_count(case_dir / WS) if command.control else None
            res = self.run_command(case_dir, command)
            if command.control:
                res.control_before, res.control_after = before, control_count(case_dir / WS)
            result.results.append(res)
            result.failures.extend(judge(i, command, res))
            if res.timed_out:
                break  # a killed command may leave the store mid-transaction: later commands prove nothing
        result.failures.extend(judge_case(case, case_dir))
        result.elapsed = time.monotonic() - start
        if result.failures and save and self.save_dir is not None:
            result.saved = str(save_reproducer(result, self.base, self.save_dir))
        return result

    # the same case in fresh interpreters
    def confirm(self, result: CaseResult) -> bool:
        """Run the case again with ``python -m engine`` subprocesses (no fork, nothing shared
        with this process) and the same limits (the time limit plus 2 s of start-up; the address
        space 1 GiB above the budget); True when the property fails there too. Memory and time
        limits are not exact across the two (a fresh interpreter has a smaller address space of
        its own), so a bomb may come back as a timeout: ``confirmed_as`` says how."""
        case = result.case
        case_dir = materialize(case, self.base, self.workdir / "confirm")
        again: list[Failure] = []
        code_root = str(Path(__import__("engine").__file__).resolve().parents[1])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ENGINE_", "PYTHON"))}
        env.update({"PYTHONPATH": code_root, "LC_ALL": "C.UTF-8", "PYTHONDONTWRITEBYTECODE": "1", **SIGNING})
        limit = self.memory_mb * 1024 * 1024 + 1024 * 1024 * 1024  # a fresh interpreter's own share, generously
        for i, command in enumerate(case.commands):
            before = control_count(case_dir / WS) if command.control else None
            argv = _substitute(command.argv, case_dir)
            start = time.monotonic()
            command_env = dict(env, **command.env)

            def limits() -> None:
                resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
                resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))

            timed_out = False
            with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
                proc = subprocess.Popen([sys.executable, "-m", "engine", *argv], cwd=case_dir, env=command_env, stdout=out,
                                        stderr=err, stdin=subprocess.DEVNULL, preexec_fn=limits)
                try:
                    proc.wait(self.timeout + 2)  # the interpreter's start-up on top
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                    timed_out = True
                out.seek(0)
                err.seek(0)
                stdout = out.read().decode("utf-8", "replace")
                stderr = err.read().decode("utf-8", "replace")
            code = proc.returncode
            sig = -code if code < 0 else None
            res = CommandResult(argv, None if sig is not None else code, sig, timed_out, stdout, stderr,
                                time.monotonic() - start, 0.0)
            if command.control:
                res.control_before, res.control_after = before, control_count(case_dir / WS)
            again.extend(judge(i, command, res))
            if timed_out:
                break
        again.extend(judge_case(case, case_dir))
        result.confirmed_as = sorted({f.type for f in again})
        result.confirmed = bool(again)  # the property fails in a fresh process too (possibly in another way)
        return result.confirmed


def _wait(pid: int, deadline: float) -> tuple[bool, int, Any]:
    """Wait for the child until the deadline, then kill it: (timed out, status, rusage)."""
    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        fd = None
    try:
        delay = 0.001
        while True:
            done, status, usage = os.wait4(pid, os.WNOHANG)
            if done:
                return False, status, usage
            left = deadline - time.monotonic()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                _, status, usage = os.wait4(pid, 0)
                return True, status, usage
            if fd is not None:
                select.select([fd], [], [], left)
            else:
                time.sleep(min(delay, left))
                delay = min(delay * 1.5, 0.02)
    finally:
        if fd is not None:
            os.close(fd)


def _read(path: Path) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read(4 * 1024 * 1024)
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def _child(argv: list[str], case_dir: Path, out_path: Path, err_path: Path, limit: int, env: dict[str, str]) -> None:
    code = 1
    try:
        os.chdir(case_dir)
        out = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        err = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(out, 1)
        os.dup2(err, 2)
        for fd in (out, err, null):
            os.close(fd)
        sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), encoding="utf-8", errors="strict")
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), encoding="utf-8", errors="backslashreplace")
        for name in list(os.environ):
            if name.startswith("ENGINE_"):
                del os.environ[name]
        os.environ.update(SIGNING)
        os.environ.update(env)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
        from engine.cli import main

        try:
            rc = main(argv)
        except SystemExit as exc:  # as the interpreter would treat it
            rc = exc.code
            if rc is not None and not isinstance(rc, int):
                print(rc, file=sys.stderr)
                rc = 1
        code = 0 if rc is None else (rc if isinstance(rc, int) else 1)
    except BaseException:  # escaped main: the interpreter prints a traceback and exits 1
        try:
            traceback.print_exc()
        except BaseException:
            pass
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except BaseException:
                pass
        os._exit(code & 0xFF)


# --- judging ------------------------------------------------------------------------------------


def _normalise(text: str) -> str:
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\d+", "N", text)
    text = re.sub(r"/\S+", "PATH", text)
    return text.strip()[:140]


def _exception(text: str) -> str:
    """The exception a traceback or an internal error line names, normalised."""
    m = re.search(r"engine: internal error: ([^\n]*)", text)
    if m:
        return _normalise(m.group(1).split(" (set ENGINE_DEBUG")[0])
    lines = [line for line in EXCEPTION_LINE.findall(text)]
    if lines:
        name, message = lines[-1]
        return _normalise(f"{name}: {message}")
    return "?"


def _last_frame(text: str) -> str:
    frames = re.findall(r'File "([^"]+)", line \d+, in (\S+)', text)
    for path, function in reversed(frames):
        if "/argparse.py" in path or "/site-packages/" not in path:
            return f"{Path(path).name}:{function}"
    return ""


def command_name(argv: list[str]) -> str:
    words, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in ("-w", "--workspace"):
            skip = True
            continue
        if a.startswith("-"):
            break
        words.append(a)
        if words[0] not in ("events", "popup") or len(words) == 2:
            break
    return " ".join(words) or "?"


def judge(index: int, command: Command, res: CommandResult) -> list[Failure]:
    name = command_name(command.argv)
    failures: list[Failure] = []
    output = res.stdout + "\n" + res.stderr

    def add(kind: str, detail: str, key: str) -> None:
        failures.append(Failure(kind, index, detail, f"{kind} | {name} | {key}"))

    if res.timed_out:
        add("timeout", f"killed after {res.elapsed:.1f} s", "")
        return failures
    memory = MEMORY.search(output)
    if memory or res.signal in (signal.SIGXFSZ,):
        what = "output/file larger than the limit" if res.signal == signal.SIGXFSZ else "memory limit reached"
        where = output[output.rfind("\n", 0, memory.start()) + 1:].split("\n", 1)[0][:300] if memory else ""
        add("memory", f"{what}: {where}", _normalise(where)[:80])
        return failures
    if res.signal is not None:
        add("crash", f"killed by signal {signal.Signals(res.signal).name}", signal.Signals(res.signal).name)
        return failures
    if TRACEBACK.search(output):
        add("traceback", _tail(output), f"{_exception(output)} @ {_last_frame(output)}")
    elif INTERNAL.search(output):
        line = INTERNAL.search(output)
        add("internal-error", output[line.start():].splitlines()[0], _exception(output))
    allowed = command.allowed_exit + ((4,) if name == "plan" else ())  # plan: 4 = something would change (README)
    if res.exit_code not in allowed:
        add("exit-code", f"exit code {res.exit_code}", str(res.exit_code))
    if command.expect_exit is not None and res.exit_code not in command.expect_exit:
        add("expectation", f"exit code {res.exit_code}, expected one of {list(command.expect_exit)}: "
                           f"{_tail(res.stderr or res.stdout, 300)}", f"exit {res.exit_code}")
    if command.control and res.control_before is not None and not (res.control_after or 0) > res.control_before:
        first = (res.stderr.strip().splitlines() or res.stdout.strip().splitlines() or [""])[0]
        add("control-not-delivered", f"the control campaign sent nothing (exit {res.exit_code}): {first[:300]}",
            _normalise(first)[:60] if first.startswith("engine:") else f"exit {res.exit_code}")
    return failures


def judge_case(case: Case, case_dir: Path) -> list[Failure]:
    failures = []
    for pattern in case.forbid_files:
        for found in case_dir.glob(pattern):
            failures.append(Failure("side-effect", -1, f"the case wrote {found.relative_to(case_dir)}",
                                    f"side-effect | {pattern}"))
    if case.forbid_in_outbox:
        outbox = case_dir / WS / ".engine" / "outbox"
        texts = []
        for path in outbox.glob("*.jsonl") if outbox.exists() else []:
            texts.append(path.read_bytes().decode("utf-8", "replace"))
        for path in (case_dir / WS / ".engine" / "letters").rglob("*.csv") if (case_dir / WS / ".engine" / "letters").exists() else []:
            texts.append(path.read_bytes().decode("utf-8", "replace"))
        for word in case.forbid_in_outbox:
            if any(word in t for t in texts):
                failures.append(Failure("side-effect", -1, f"{word!r} was sent", "side-effect | forbidden text sent"))
    return failures


def _tail(text: str, n: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= n else "…" + text[-n:]


# --- reproducers --------------------------------------------------------------------------------


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")[:60] or "x"


def save_reproducer(result: CaseResult, base: Path, save_dir: Path) -> Path:
    first = result.failures[0]
    name = _safe(f"{result.case.kind}-{first.type}-{result.case.seed or int(time.time() * 1000)}")
    target = Path(save_dir) / name
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    materialize(result.case, base, target)
    for leftover in (".fuzz-stdout", ".fuzz-stderr"):
        (target / leftover).unlink(missing_ok=True)
    (target / "case.json").write_text(json.dumps(result.case.to_json(), indent=2) + "\n", encoding="utf-8")
    (target / "result.json").write_text(json.dumps({
        "failures": [f.to_json() for f in result.failures],
        "commands": [r.to_json() for r in result.results]}, indent=2, ensure_ascii=True) + "\n", encoding="utf-8")
    lines = ["#!/bin/sh", "# Runs the case on a throw-away copy of this directory (the store is the base's, ticked at T0).",
             "# Set ENGINE_DEBUG=1 for tracebacks.", 'here=$(cd "$(dirname "$0")" && pwd)', "tmp=$(mktemp -d)",
             'cp -a "$here/." "$tmp/"', 'cd "$tmp" || exit 2', 'echo "in $tmp"']
    for command in result.case.commands:
        argv = [a.replace("{case}", "$tmp") for a in command.argv]
        quoted = " ".join(_shell_quote(a) for a in argv)
        prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in command.env.items())
        lines.append(f"{prefix}engine {quoted}; echo \"→ exit $?\"")
        if command.control:
            lines.append("grep -c '\"campaign\":\"control\"' ws/.engine/outbox/email.jsonl  # control messages so far")
    (target / "repro.sh").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (target / "repro.sh").chmod(0o755)
    return target


def _shell_quote(arg: str) -> str:
    if "$tmp" in arg:
        return '"' + arg.replace('"', '\\"') + '"'
    if any(ord(c) < 32 or 0xDC80 <= ord(c) <= 0xDCFF for c in arg):
        data = os.fsencode(arg)
        return "\"$(printf '" + "".join(f"\\{b:03o}" for b in data) + "')\""
    return shlex.quote(arg)


def load_case(path: Path) -> Case:
    path = Path(path)
    if path.is_dir():
        path = path / "case.json"
    return Case.from_json(json.loads(path.read_text(encoding="utf-8")))
