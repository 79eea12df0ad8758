"""Fault catalogue (issue 12 item 11): bad inputs and faults thrown at the CLI, one table of verdicts.

    python tests/fault_catalogue.py             # every case, then the table and the counts
    python tests/fault_catalogue.py -k ckpt     # only cases whose name contains 'ckpt'
    python tests/fault_catalogue.py --fast      # leave out the slow (subprocess) cases
    python tests/fault_catalogue.py --slow      # only the slow ones
    python tests/fault_catalogue.py --details   # also the command and output tail of each BAD case

``tests/test_fault_catalogue.py`` runs the same cases under pytest, one test per case.

A case is a name, a command line (``python projects/VLD/main.py`` arguments), the exit codes it
may end with, and optionally a setup (damage a private copy of the data, write a bad file, ...),
a check of what the run left behind, and a runner other than the default. Most cases run
in-process through ``vld_plugin.launch.main`` (about half a second each); the ones that need a real
process (signals, DataLoader workers, a file-size limit) run ``projects/VLD/main.py`` in a
subprocess and are marked slow. All cases share one tiny synthetic HITSZ-VCM copy generated once;
a case that damages data copies it first. Every case runs in its own temporary folder (also its
working directory), with ``data.save_dir`` in it.

A verdict is GOOD when
  * the run ended (no time-out) with one of the expected exit codes (a process killed by
    signal N counts as 128 + N, as a shell reports it),
  * no output holds 'Traceback' (an exception escaping ``main`` in-process counts as one),
  * a failing run's last non-empty stderr line starts with 'error:',
  * no temporary file ('.tmp-*', '*.tmp') is left in the save dir,
  * and the case's own check passes;
otherwise it is BAD with the first reason found.
"""
import argparse
import contextlib
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from typing import Callable, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # `python tests/fault_catalogue.py` from anywhere
    sys.path.insert(0, REPO)

DEMO = os.path.join(REPO, "configs", "vld_demo.yaml")
MAIN = os.path.join(REPO, "projects", "VLD", "main.py")

# The demo config made smaller still: one epoch of two steps, no workers, no generation.
# model.pretrained none: cases run in their own folders, where the demo's repository-relative weights path does
# not resolve, and they are about faults, not weights
SMALL = ["model.pretrained", "none", "data.synthetic", "False", "data.workers", "0", "train.max_epoch", "1",
         "train.iters_per_epoch", "2", "train.batch_size", "16", "sampler.num_instances", "2", "test.batch_size", "16",
         "train.print_freq", "1"]
# A run long enough to be interrupted: 30 epochs of 4 steps, evaluated only at the end.
LONG = ["train.max_epoch", "30", "train.iters_per_epoch", "4", "test.eval_freq", "100"]
IN_PROCESS_TIMEOUT = 120
PROCESS_TIMEOUT = 180

# Code for `python -c`: run the CLI after a fault injection (the prelude).
INJECTED_MAIN = "import sys\n{prelude}\nfrom vld_plugin.launch import main\nsys.exit(main(sys.argv[1:]))\n"
# kill -9 in the middle of a checkpoint write: half of the bytes reach the file, then SIGKILL.
DIE_DURING_SAVE = r"""
import io, os, signal, torch
_save = torch.save
def _dying_save(obj, f, *args, **kwargs):
    buf = io.BytesIO()
    _save(obj, buf, *args, **kwargs)
    data = buf.getvalue()[: len(buf.getvalue()) // 2]
    if isinstance(f, (str, bytes, os.PathLike)):
        with open(f, "wb") as out:
            out.write(data)
    else:
        f.write(data)
        f.flush()
    os.kill(os.getpid(), signal.SIGKILL)
torch.save = _dying_save
"""
# a slow evaluation: a marker, then a pause in the feature extraction, so a signal lands in it
SLOW_EVALUATION = r"""
import time
from vld_plugin.engine import PairedModalityEngine
_extract = PairedModalityEngine.extract
def _slow_extract(self, *args, **kwargs):
    print("FAULT-INJECTION: extracting features", flush=True)
    time.sleep(3)
    return _extract(self, *args, **kwargs)
PairedModalityEngine.extract = _slow_extract
"""


# ============================================================================ results and cases
@dataclasses.dataclass
class Result:
    """What one run did."""

    code: Optional[int]
    out: str
    err: str
    seconds: float
    timed_out: bool = False
    notes: list = dataclasses.field(default_factory=list)  # a runner's own findings (reasons for BAD)

    @property
    def text(self):
        return self.out + "\n" + self.err

    def last_line(self, stream=None):
        """The last non-empty line (as a terminal shows it, after carriage returns) of ``stream``; by
        default of stderr for a failed run and of stdout for a successful one (the other if empty)."""
        if stream is not None:
            texts = [stream]
        else:
            texts = [self.out, self.err] if self.code == 0 else [self.err, self.out]
        for text in texts:
            lines = [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]
            if lines:
                return lines[-1]
        return ""


@dataclasses.dataclass
class Case:
    """One bad input or fault.

    argv: arguments of ``main.py``; the placeholders {demo} {root} {run} {tmp} {ck} become
        the demo config, the data root (the shared copy, or the case's own after a setup copied it),
        the save dir, the case's folder and the checkpoint a setup prepared; {name} becomes a string
        a setup left in ``ctx.notes[name]``.
    expect: the acceptable exit codes.
    setup(ctx): prepares files before the run (may set ctx.root, ctx.ck, ctx.notes).
    check(ctx, result): returns None when the case-specific expectations hold, else the reason.
    runner(ctx, argv): returns a Result; default: ``main(argv)`` in-process.
    slow: a subprocess case (``pytest.mark.slow``).
    timeout: seconds before the run counts as hung.
    """

    name: str
    argv: list
    expect: tuple
    setup: Optional[Callable] = None
    check: Optional[Callable] = None
    runner: Optional[Callable] = None
    slow: bool = False
    timeout: Optional[float] = None  # seconds; default by kind

    def __post_init__(self):
        if self.timeout is None:
            self.timeout = PROCESS_TIMEOUT if self.slow else IN_PROCESS_TIMEOUT


@dataclasses.dataclass
class Outcome:
    case: Case
    argv: list
    result: Result
    reason: Optional[str]  # None: GOOD

    @property
    def good(self):
        return self.reason is None

    def describe(self):
        tail = "\n".join(self.result.text.strip().splitlines()[-15:])
        return (f"{self.case.name}: {self.reason}\n  command: python projects/VLD/main.py {' '.join(self.argv)}\n"
                f"  exit code {self.result.code}, expected {'/'.join(map(str, self.case.expect))}\n"
                f"  output tail:\n{tail}")


def yaml_cli(name="c.yaml"):
    """The usual command line with a config file of the case folder instead of the demo's."""
    return ["--config-file", "{tmp}/" + name, "data.root", "{root}", "data.save_dir", "{run}", *SMALL]


def cli(*opts, flags=()):
    """The usual command line: demo config, flags, the shared data, the case's save dir, SMALL, then opts."""
    return ["--config-file", "{demo}", *flags, "data.root", "{root}", "data.save_dir", "{run}", *SMALL, *opts]


# ============================================================================ session and context
class Session:
    """Shared by all cases: the folder, the tiny synthetic data (made once) and trained checkpoints (lazily)."""

    def __init__(self, folder):
        from vld_plugin.data.synthetic import generate_vcm

        self.folder = folder
        self.root = os.path.join(folder, "data")
        generate_vcm(os.path.join(self.root, "HITSZ-VCM"), num_ids=16, seed=3, height=64, width=32, num_cams=3,
                     max_len=14)
        self._runs = {}
        self._count = 0

    def trained(self, name="demo", *opts):
        """The save dir of a finished one-epoch run (checkpoint.pth, config.yaml, results.json)."""
        if name not in self._runs:
            run = os.path.join(self.folder, "trained-" + name)
            argv = ["--config-file", DEMO, "data.root", self.root, "data.save_dir", run, *SMALL, *opts]
            result = run_in_process(argv, IN_PROCESS_TIMEOUT)
            if result.code != 0 or not os.path.isfile(os.path.join(run, "checkpoint.pth")):
                raise RuntimeError(f"the reference run {name} failed (exit {result.code}): {result.last_line()}")
            self._runs[name] = run
        return self._runs[name]

    def run(self, case):
        """Run ``case`` in a fresh folder and judge it."""
        self._count += 1
        ctx = Context(self, os.path.join(self.folder, f"{self._count:03d}-{case.name}"))
        ctx.timeout = case.timeout
        argv = []
        try:
            if case.setup is not None:
                case.setup(ctx)
            argv = ctx.expand(case.argv)
            with working_dir(ctx.tmp):
                result = (case.runner or in_process)(ctx, argv)
        except Exception as e:  # a broken setup or runner: the case cannot be judged
            result = Result(None, "", traceback.format_exc(), 0.0, notes=[f"setup/runner failed: {e!r}"])
            return Outcome(case, argv, result, f"catalogue problem: {e!r}")
        return Outcome(case, argv, result, judge(case, ctx, result))


class Context:
    """One case's folder, save dir, data root and the checkpoint its setup made."""

    def __init__(self, session, tmp):
        self.session = session
        self.tmp = tmp
        self.run = os.path.join(tmp, "run")
        self.root = session.root
        self.ck = ""
        self.notes = {}
        self.timeout = IN_PROCESS_TIMEOUT  # the case's, set by Session.run
        os.makedirs(tmp)

    def expand(self, argv):
        fields = dict(demo=DEMO, root=self.root, run=self.run, tmp=self.tmp, ck=self.ck)
        fields.update((k, v) for k, v in self.notes.items() if isinstance(v, str))
        out = []
        for arg in argv:
            for key, value in fields.items():
                arg = arg.replace("{" + key + "}", value)
            out.append(arg)
        return out

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)


@contextlib.contextmanager
def working_dir(path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


# ============================================================================ runners
class _CaseTimeout(BaseException):
    pass


def run_in_process(argv, timeout):
    """``main(argv)`` with stdout/stderr captured; an escaping exception is written as a traceback."""
    from vld_plugin.launch import main

    out, err = io.StringIO(), io.StringIO()
    timed_out = False
    use_alarm = threading.current_thread() is threading.main_thread()
    if use_alarm:
        def on_alarm(signum, frame):
            raise _CaseTimeout()

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout)
    start = time.time()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
                code = 0 if code is None else code
            except SystemExit as e:  # argparse, or a sys.exit inside
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
                if not isinstance(e.code, (int, type(None))):
                    print(e.code, file=sys.stderr)
            except KeyboardInterrupt:
                raise
            except _CaseTimeout:
                code, timed_out = None, True
            except BaseException:  # what the interpreter would do: print the traceback, exit 1
                traceback.print_exc()
                code = 1
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    return Result(code, out.getvalue(), err.getvalue(), time.time() - start, timed_out)


def in_process(ctx, argv):
    """The default runner: ``main(argv)`` in this process."""
    return run_in_process(argv, ctx.timeout)


def run_process(argv, cwd, timeout=PROCESS_TIMEOUT, signals=(), code=None, preexec=None):
    """Run ``main.py argv`` (or ``python -c code argv``) in its own session; ``signals`` is a list of
    (text to wait for in the output, signal, delay in s, whole process group?) sent in order.
    A process killed by signal N gets exit code 128 + N, as a shell reports it."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))
    cmd = [sys.executable, MAIN, *argv] if code is None else [sys.executable, "-c", code, *argv]
    start = time.time()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, preexec_fn=preexec)
    chunks = {"out": [], "err": []}  # bytes as they come

    def pump(stream, sink):
        for block in iter(lambda: stream.read1(65536), b""):
            sink.append(block)

    def text(*names):
        return b"".join(b for n in names for b in chunks[n]).decode("utf-8", "replace")

    readers = [threading.Thread(target=pump, args=(proc.stdout, chunks["out"]), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, chunks["err"]), daemon=True)]
    for r in readers:
        r.start()
    pending, notes, timed_out = list(signals), [], False
    deadline = start + timeout
    while proc.poll() is None:
        if time.time() > deadline:
            timed_out = True
            break
        if pending and pending[0][0] in text("out", "err"):
            _, signum, delay, group = pending.pop(0)
            time.sleep(delay)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signum) if group else os.kill(proc.pid, signum)
        time.sleep(0.02)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the run and any worker it left
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    for r in readers:
        r.join(5)
    if pending:
        notes.append(f"signal {signal.Signals(pending[0][1]).name} never sent: '{pending[0][0]}' never appeared")
    # as a shell reports it: a process killed by signal N exits with 128 + N
    code = None if timed_out else (128 - proc.returncode if proc.returncode < 0 else proc.returncode)
    return Result(code, text("out"), text("err"), time.time() - start, timed_out, notes)


def in_subprocess(signals=(), prelude=None, preexec=None):
    """A runner: the case in a real process, with signals sent when their text appears."""
    def runner(ctx, argv):
        code = INJECTED_MAIN.format(prelude=prelude) if prelude else None
        return run_process(argv, ctx.tmp, timeout=ctx.timeout, signals=signals, code=code, preexec=preexec)
    return runner


# ============================================================================ the verdict
def temporaries(folder):
    """Leftover temporary files under ``folder``."""
    found = []
    for dirpath, _, files in os.walk(folder):
        found += [os.path.join(dirpath, f) for f in files if f.startswith(".tmp-") or f.endswith(".tmp")]
    return found


def judge(case, ctx, result):
    """None for GOOD, else the first reason the run is BAD."""
    if result.timed_out:
        return f"hung: no exit within {case.timeout:.0f}s"
    if result.notes:
        return "; ".join(result.notes)
    if "Traceback" in result.text:
        where = re.findall(r"^\w*(?:Error|Exception|Interrupt)\w*:.*$", result.text, re.M)
        return "traceback" + (f" ({where[-1][:120]})" if where else "")
    if result.code not in case.expect:
        return f"exit code {result.code}, expected {'/'.join(map(str, case.expect))}"
    if result.code != 0:
        last = result.last_line(result.err)
        if not last.startswith("error:"):
            return f"last stderr line does not start with 'error:': '{last[:100]}'"
    left = temporaries(ctx.run) if os.path.isdir(ctx.run) else []
    if left:
        return f"temporary file left: {os.path.basename(left[0])}"
    if case.check is not None:
        return case.check(ctx, result)
    return None


# ============================================================================ checks
def says(*words):
    """The last line (of stderr for a failed run, of stdout for a successful one) holds every word
    (case-insensitive)."""
    def check(ctx, result):
        last = result.last_line().lower()
        missing = [w for w in words if w.lower() not in last]
        return f"last line lacks {missing}" if missing else None
    return check


def prints(*words):
    """The output holds every word somewhere (case-insensitive)."""
    def check(ctx, result):
        text = result.text.lower()
        missing = [w for w in words if w.lower() not in text]
        return f"output lacks {missing}" if missing else None
    return check


def prints_line(*words):
    """One output line holds every word (case-insensitive)."""
    def check(ctx, result):
        for line in re.split(r"[\r\n]", result.text.lower()):
            if all(w.lower() in line for w in words):
                return None
        return f"no output line holds all of {list(words)}"
    return check


def says_any(*words):
    def check(ctx, result):
        last = result.last_line().lower()
        return None if any(w.lower() in last for w in words) else f"last line holds none of {list(words)}"
    return check


def prints_any(*words):
    def check(ctx, result):
        text = result.text.lower()
        return None if any(w.lower() in text for w in words) else f"output holds none of {list(words)}"
    return check


def find(ctx, name):
    """``name`` (a relative path) in the save dir or, the shallowest, in a folder under it (an
    --eval-only run may write into a subfolder); None if nowhere."""
    for dirpath, dirnames, _ in sorted(os.walk(ctx.run), key=lambda w: w[0].count(os.sep)):
        if os.path.exists(os.path.join(dirpath, name)):
            return os.path.join(dirpath, name)
    return None


def exists(*names):
    """Files (relative to the save dir or a folder under it) exist."""
    def check(ctx, result):
        missing = [n for n in names if find(ctx, n) is None]
        return f"missing in the save dir: {missing}" if missing else None
    return check


def checkpoint_epoch(epoch, name="checkpoint.pth"):
    """The save dir's checkpoint loads (weights_only) and is the one of ``epoch``."""
    def check(ctx, result):
        return _checkpoint_problem(os.path.join(ctx.run, name), epoch)
    return check


def _checkpoint_problem(path, epoch=None):
    import torch

    if not os.path.isfile(path):
        return f"no checkpoint {os.path.basename(path)} in the save dir"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        return f"checkpoint {os.path.basename(path)} does not load: {str(e).splitlines()[0][:80]}"
    if epoch is not None and state.get("epoch") != epoch:
        return f"checkpoint holds epoch {state.get('epoch')}, expected {epoch}"
    return None


def results_json(ctx, result):
    """results.json in the save dir (or a folder under it) parses and holds both protocols."""
    path = find(ctx, "results.json")
    if path is None:
        return "no results.json in the save dir"
    try:
        results = json.load(open(path))
        assert set(results["hitsz_vcm"]) >= {"infrared-to-visible", "visible-to-infrared"}
    except Exception as e:
        return f"results.json unusable: {e!r}"
    return None


def generation_not_marked_complete(ctx, result):
    """An interrupted synthetic generation must not leave its completion marker (query_IDX.txt)."""
    if os.path.exists(ctx.path("fresh", "HITSZ-VCM", "info", "query_IDX.txt")):
        return "the interrupted generation left a copy marked complete"
    return None


def no_checkpoint(ctx, result):
    return "a checkpoint was written" if os.path.exists(os.path.join(ctx.run, "checkpoint.pth")) else None


def evaluated_only(ctx, result):
    """An evaluation happened and no training: a results table, no epoch line, no checkpoint."""
    if "results" not in result.out:
        return "no results table printed"
    if re.search(r"^epoch \d+/\d+ ", result.out, re.M):
        return "it trained"
    return no_checkpoint(ctx, result)


def same_numbers_as(run_dir_of):
    """The printed infrared-to-visible rank-1 equals the one in the training run's results.json."""
    def check(ctx, result):
        trained = json.load(open(os.path.join(run_dir_of(ctx), "results.json")))
        expected = 100 * trained["hitsz_vcm"]["infrared-to-visible"]["rank1"]
        found = re.findall(r"hitsz_vcm\s+infrared-to-visible\s+([\d.]+)", result.out)
        if not found:
            return "no results table printed"
        if abs(float(found[-1]) - expected) > 0.011:
            return f"rank-1 {found[-1]} differs from the checkpoint's {expected:.2f}: other weights evaluated?"
        return None
    return check


def unchanged(ctx, result):
    """Files remembered by ``remember`` still hold the same bytes."""
    changed = [n for n, digest in ctx.notes["hashes"].items() if _digest(os.path.join(ctx.run, n)) != digest]
    return f"overwritten in the save dir: {changed}" if changed else None


def _digest(path):
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def resume_line_names_checkpoint(ctx, result):
    """The last line names an existing, loadable checkpoint and a --resume command."""
    last = result.last_line()
    if "--resume" not in last:
        return f"last line has no --resume command: '{last[:100]}'"
    paths = [p.strip("'\",;.()") for p in last.split() if ".pth" in p]
    if not paths:
        return "last line names no checkpoint"
    path = paths[0] if os.path.isabs(paths[0]) else os.path.join(ctx.tmp, paths[0])
    return _checkpoint_problem(path)


def all_of(*checks):
    def check(ctx, result):
        for c in checks:
            reason = c(ctx, result)
            if reason:
                return reason
        return None
    return check


# ============================================================================ setups
def setups(*steps):
    def setup(ctx):
        for step in steps:
            step(ctx)
    return setup


def write(name, content, binary=False):
    """Write a file in the case folder (e.g. a bad config, a fake checkpoint)."""
    def setup(ctx):
        path = ctx.path(name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb" if binary else "w") as f:
            f.write(content)
    return setup


def make_dir(name):
    return lambda ctx: os.makedirs(ctx.path(name), exist_ok=True)


def trained_run(name="demo", *opts):
    """Copy a finished one-epoch run into the save dir; {ck} is its checkpoint."""
    def setup(ctx):
        shutil.copytree(ctx.session.trained(name, *opts), ctx.run)
        ctx.ck = os.path.join(ctx.run, "checkpoint.pth")
    return setup


def checkpoint_copy(name="demo", *opts):
    """Copy a finished run's checkpoint into the case folder as {ck} (ck.pth)."""
    def setup(ctx):
        ctx.ck = ctx.path("ck.pth")
        shutil.copy(os.path.join(ctx.session.trained(name, *opts), "checkpoint.pth"), ctx.ck)
    return setup


def edit_checkpoint(edit):
    """Load {ck}, apply ``edit(state)`` (returns what to save), save it back with torch.save."""
    def setup(ctx):
        import torch

        state = torch.load(ctx.ck, map_location="cpu", weights_only=True)
        torch.save(edit(state), ctx.ck)
    return setup


def damage_file(how):
    """Damage {ck} in place: 'truncate' (half), 'flip' (one byte in the middle), 'empty'."""
    def setup(ctx):
        data = bytearray(open(ctx.ck, "rb").read())
        if how == "truncate":
            data = data[: len(data) // 2]
        elif how == "flip":
            data[len(data) // 2] ^= 0xFF
        elif how == "empty":
            data = b""
        open(ctx.ck, "wb").write(bytes(data))
    return setup


def remember(*names):
    """Remember the bytes of save-dir files, for ``unchanged``."""
    def setup(ctx):
        ctx.notes["hashes"] = {n: _digest(os.path.join(ctx.run, n)) for n in names}
    return setup


def write_config(name, text):
    """A YAML file in the case folder ({demo} stands for the demo config)."""
    def setup(ctx):
        with open(ctx.path(name), "w") as f:
            f.write(text.replace("{demo}", DEMO).replace("{tmp}", ctx.tmp))
    return setup


# ---------------------------------------------------------------------------- a damaged data copy
NAME_RE = re.compile(r"^(\d{4})M(\d)D(\d+)T(\d+)F(.+)$")


class DataCopy:
    """A private copy of the shared synthetic HITSZ-VCM (``ctx.root`` then points at it)."""

    def __init__(self, ctx):
        self.root = ctx.path("data")
        shutil.copytree(ctx.session.root, self.root)
        ctx.root = self.root
        self.dir = os.path.join(self.root, "HITSZ-VCM")
        self.info = os.path.join(self.dir, "info")

    def index(self, name):
        return os.path.join(self.info, name)

    def lines(self, name):
        return open(self.index(name)).read().splitlines()

    def write_lines(self, name, lines, encoding="utf-8", newline="\n"):
        with open(self.index(name), "w", encoding=encoding, newline="") as f:
            f.write(newline.join(lines) + newline)

    def frame_path(self, part, name):
        pid, mod, cam, _, fname = NAME_RE.match(name).groups()
        return os.path.join(self.dir, part.capitalize(), pid, "ir" if mod == "1" else "rgb", "D" + cam, fname)

    def tracklets(self, part):
        """The frame paths of every row of track_<part>_info.txt."""
        names = self.lines(f"{part}_name.txt")
        rows = [list(map(int, line.split())) for line in self.lines(f"track_{part}_info.txt")]
        return [[self.frame_path(part, names[i - 1]) for i in range(start, end + 1)] for _, start, end, _, _ in rows]

    def later_frames(self, part):
        """Every frame but the first of each tracklet (the first ones are checked when the dataset is read)."""
        return [f for frames in self.tracklets(part) for f in frames[1:]]


def data(edit):
    """Setup: copy the data, then ``edit(copy)``."""
    return lambda ctx: edit(DataCopy(ctx))


def rewrite(name, change):
    """Setup: replace the lines of an index file with ``change(lines)``."""
    return data(lambda d: d.write_lines(name, change(d.lines(name))))


def edit_row(name, number, change):
    """Setup: replace row ``number`` (0-based) of an index of space-separated fields with
    ``change(fields, all rows' fields)``."""
    def change_lines(lines):
        rows = [line.split() for line in lines]
        lines[number] = " ".join(change(rows[number], rows))
        return lines
    return rewrite(name, change_lines)


def replace_line(name, number, text):
    def change(lines):
        lines[number] = text
        return lines
    return rewrite(name, change)


def damage_frames(which, how):
    """Setup: damage frames ('train'/'test' later frames, or 'first' = the first frame of the first
    train tracklet): 'delete', 'truncate', 'random', 'empty', 'dir', 'png', 'gray', 'big'."""
    def edit(d):
        frames = [d.tracklets("train")[0][0]] if which == "first" else d.later_frames(which)
        for path in frames:
            damage_image(path, how)
    return data(edit)


def damage_image(path, how):
    import numpy as np
    from PIL import Image

    if how == "delete":
        os.remove(path)
    elif how == "dir":
        os.remove(path)
        os.makedirs(path)
    elif how in ("png", "gray", "big"):
        with Image.open(path) as img:
            img.load()
            if how == "png":
                img.save(path, format="PNG")
            elif how == "gray":
                img.convert("L").save(path, format="JPEG")
            else:
                img.resize((img.width * 5, img.height * 5)).save(path, format="JPEG")
    else:
        raw = open(path, "rb").read()
        content = {"truncate": raw[: len(raw) // 2], "empty": b"",
                   "random": np.random.default_rng(len(raw)).integers(0, 256, len(raw), dtype=np.uint8).tobytes()}[how]
        open(path, "wb").write(content)


def test_rows(change):
    """Setup: rewrite track_test_info.txt and query_IDX.txt with ``change(rows) -> (rows, query rows 1-based)``."""
    def edit(d):
        rows = [line.split() for line in d.lines("track_test_info.txt")]
        rows, query = change(rows)
        d.write_lines("track_test_info.txt", [" ".join(r) for r in rows])
        d.write_lines("query_IDX.txt", [" ".join(map(str, query))])
    return data(edit)


def queries_without_match(rows):
    """Infrared rows of half the test ids, visible rows of the other half: no query has a match."""
    pids = sorted({r[3] for r in rows})
    first = set(pids[: len(pids) // 2])
    kept = [r for r in rows if (r[0] == "1") == (r[3] in first)]
    return kept, [i + 1 for i, r in enumerate(kept) if r[0] == "1"]


def same_camera_only(rows):
    """Each test id keeps its tracklets of one camera seen in both modalities: every match of a
    query is then in the query's camera, which the protocol removes."""
    kept = []
    for pid in sorted({r[3] for r in rows}):
        mine = [r for r in rows if r[3] == pid]
        common = sorted({r[4] for r in mine if r[0] == "1"} & {r[4] for r in mine if r[0] == "2"})
        kept += [r for r in mine if common and r[4] == common[0]]
    return kept, [i + 1 for i, r in enumerate(kept) if r[0] == "1"]


def rows_of(name, keep):
    """Setup: keep only the rows of an index of 5-integer lines for which ``keep(fields)`` holds."""
    return rewrite(name, lambda lines: [line for line in lines if keep(line.split())])


# ---------------------------------------------------------------------------- filesystem setups
def read_only_dir(name):
    """A folder the run cannot write into: chmod 500 (as root, who ignores modes, a /proc folder)."""
    def setup(ctx):
        if os.geteuid() == 0:
            ctx.notes["ro"] = "/proc/self"
        else:
            path = ctx.path(name)
            os.makedirs(path)
            os.chmod(path, 0o500)
            ctx.notes["ro"] = path
    return setup


def unwritable_parent(ctx):
    if os.geteuid() == 0:
        ctx.notes["ro"] = "/sys/vld-fault-catalogue"  # mkdir: EPERM, even for root
    else:
        path = ctx.path("locked")
        os.makedirs(path)
        os.chmod(path, 0o500)
        ctx.notes["ro"] = os.path.join(path, "run")


def file_size_limit(limit):
    """preexec: a file-size limit (writes beyond it fail with EFBIG instead of killing the process)."""
    def preexec():
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return preexec


# ---------------------------------------------------------------------------- multi-step runners
def killed_during_save_then_rerun(ctx, argv):
    """kill -9 while the epoch-2 checkpoint is written, then the same resume again in-process."""
    first = run_process(argv, ctx.tmp, timeout=ctx.timeout, code=INJECTED_MAIN.format(prelude=DIE_DURING_SAVE))
    notes = []
    if first.code != 128 + signal.SIGKILL:
        notes.append(f"the injected kill -9 did not happen (exit {first.code}: {first.last_line()[:80]})")
    elif not temporaries(ctx.run):
        notes.append("the killed write left no temporary file to clean up (injection missed the write)")
    problem = _checkpoint_problem(os.path.join(ctx.run, "checkpoint.pth"), 1)
    if problem:
        notes.append(f"after kill -9 during the write: {problem}")
    second = in_process(ctx, argv)
    second.notes = notes + second.notes
    second.seconds += first.seconds
    return second


# ============================================================================ the cases
def _cases():
    C = Case
    bad = (2,)        # usage or configuration error
    fault = (1,)      # data or runtime fault
    either = (1, 2)   # a one-line error of either kind is right
    ok = (0,)
    sigint = [("epoch 1/30  ", signal.SIGINT, 0.3, True)]
    sigterm = [("epoch 1/30  ", signal.SIGTERM, 0.3, False)]
    cases = [
        # ------------------------------------------------------------ 1. config keys and values
        C("cfg-unknown-key-typo", cli("train.lrr", "0.01"), bad, check=says("train.lr", "did you mean")),
        C("cfg-unknown-group-typo", cli("trian.lr", "0.01"), bad, check=says("did you mean")),
        C("cfg-unknown-key-in-yaml", yaml_cli(), bad,
          setup=write_config("c.yaml", "_BASE_: {demo}\ntrain:\n  max_epochs: 3\n"),
          check=says("train.max_epoch", "did you mean")),
        C("cfg-key-without-value", cli("train.lr"), bad, check=says("train.lr")),
        C("cfg-bad-yaml", yaml_cli(), bad, setup=write_config("c.yaml", "model: [vld\n  name: x\n"),
          check=says("c.yaml")),
        C("cfg-yaml-tab-indent", yaml_cli(), bad, setup=write_config("c.yaml", "train:\n\tlr: 0.1\n"),
          check=says("c.yaml")),
        C("cfg-yaml-not-a-mapping", yaml_cli(), bad, setup=write_config("c.yaml", "- train\n- lr\n"),
          check=says("c.yaml")),
        C("cfg-yaml-group-not-a-mapping", yaml_cli(), bad, setup=write_config("c.yaml", "train: 3\n"),
          check=says("train")),
        C("cfg-yaml-non-utf8", yaml_cli(), bad, setup=write("c.yaml", b"train:\n  optim: adam\xff\xfe\n", binary=True),
          check=says("c.yaml")),
        C("cfg-missing-file", yaml_cli("nowhere.yaml"), bad, check=says("nowhere.yaml")),
        C("cfg-file-is-directory", yaml_cli("conf.d"), bad, setup=make_dir("conf.d"), check=says("conf.d")),
        C("cfg-base-loop", yaml_cli("a.yaml"), bad,
          setup=setups(write_config("a.yaml", "_BASE_: b.yaml\n"), write_config("b.yaml", "_BASE_: a.yaml\n")),
          check=says("_BASE_")),
        C("cfg-base-self", yaml_cli("a.yaml"), bad, setup=write_config("a.yaml", "_BASE_: a.yaml\n"),
          check=says("_BASE_")),
        C("cfg-base-missing", yaml_cli("a.yaml"), bad, setup=write_config("a.yaml", "_BASE_: gone.yaml\n"),
          check=says("gone.yaml")),
        C("cfg-base-works", yaml_cli("a.yaml"), ok,
          setup=write_config("a.yaml", "_BASE_: {demo}\ntrain:\n  lr: 0.002\n"), check=results_json),
        C("cfg-value-wrong-type", cli("train.lr", "abc"), bad, check=says("train.lr")),
        C("cfg-batch-size-zero", cli("train.batch_size", "0"), bad, check=says("batch")),
        C("cfg-batch-size-negative", cli("train.batch_size", "-4"), bad, check=says("batch")),
        C("cfg-batch-size-not-multiple", cli("train.batch_size", "15"), bad, check=says("15")),
        C("cfg-test-batch-size-zero", cli("test.batch_size", "0"), bad, check=says("test.batch_size")),
        C("cfg-seq-len-zero", cli("video.seq_len", "0"), bad, check=says("seq_len")),
        C("cfg-seq-len-negative", cli("video.seq_len", "-2"), bad, check=says("seq_len")),
        C("cfg-height-zero", cli("data.height", "0"), bad, check=says("height")),
        C("cfg-height-negative", cli("data.height", "-64"), bad, check=says("height")),
        C("cfg-width-zero", cli("data.width", "0"), bad, check=says("width")),
        C("cfg-height-not-patch-multiple", cli("data.height", "60"), (0, 2)),
        C("cfg-workers-negative", cli("data.workers", "-1"), bad, check=says("workers")),
        C("cfg-lr-zero", cli("train.lr", "0"), bad, check=says("train.lr")),
        C("cfg-lr-negative", cli("train.lr", "-0.001"), bad, check=says("train.lr")),
        C("cfg-max-epoch-zero", cli("train.max_epoch", "0"), bad, check=says("max_epoch")),
        C("cfg-max-epoch-negative", cli("train.max_epoch", "-3"), bad, check=says("max_epoch")),
        C("cfg-iters-per-epoch-zero", cli("train.iters_per_epoch", "0"), bad, check=says("iters_per_epoch")),
        C("cfg-iters-per-epoch-negative", cli("train.iters_per_epoch", "-1"), bad, check=says("iters_per_epoch")),
        C("cfg-warmup-negative", cli("train.warmup_epochs", "-1"), bad, check=says("warmup")),
        C("cfg-weight-decay-negative", cli("train.weight_decay", "-0.1"), bad, check=says("weight_decay")),
        C("cfg-grad-clip-negative", cli("train.grad_clip", "-1.0"), bad, check=says("grad_clip")),
        C("cfg-unknown-optim", cli("train.optim", "adamx"), bad, check=says("adamx")),
        C("cfg-unknown-scheduler", cli("train.lr_scheduler", "cosin"), bad, check=says("cosin")),
        C("cfg-unknown-amp", cli("train.amp", "fp8"), bad, check=says("fp8")),
        C("cfg-unknown-sampler", cli("sampler.train_sampler", "RandomSamplr"), bad, check=says("RandomSamplr")),
        C("cfg-unknown-sample-method", cli("video.sample_method", "evenlyy"), bad, check=says("evenlyy")),
        C("cfg-unknown-test-sample-method", cli("video.test_sample_method", "middle"), bad, check=says("middle")),
        C("cfg-removed-pooling-key", cli("video.pooling_method", "max"), bad,
          check=says("unknown config key 'video.pooling_method'")),
        C("cfg-unknown-dist-metric", cli("test.dist_metric", "manhattan"), bad, check=says("manhattan")),
        C("cfg-unknown-fusion", cli("vld.temporal_fusion", "lstm"), bad, check=says("lstm")),
        C("cfg-removed-loss-name-key", cli("loss.name", "triplet"), bad, check=says("unknown config key 'loss.name'")),
        C("cfg-unknown-transform", cli("data.transforms", "[random_rotate]"), bad, check=says("random_rotate")),
        C("cfg-removed-data-type-key", cli("data.type", "image"), bad, check=says("unknown config key 'data.type'")),
        C("cfg-list-key-plain-word-sources", cli("data.sources", "hitsz_vcm"), ok, check=results_json),
        C("cfg-list-key-plain-word-targets", cli("data.targets", "hitsz_vcm"), ok, check=results_json),
        C("cfg-list-key-plain-word-transforms", cli("data.transforms", "random_flip"), ok, check=results_json),
        C("cfg-list-syntax-error", cli("data.sources", "[hitsz_vcm"), bad, check=says("data.sources")),
        C("cfg-list-empty-sources", cli("data.sources", "[]"), bad, check=says("sources")),
        C("cfg-unknown-source-dataset", cli("data.sources", "[hitsz_vcn]"), bad, check=says("hitsz_vcn")),
        C("cfg-unknown-target-dataset", cli("data.targets", "[market1501x]"), bad, check=says("market1501x")),
        C("cfg-norm-mean-wrong-length", cli("data.norm_mean", "[0.5]"), bad, check=says("norm_mean")),
        C("cfg-norm-std-zero", cli("data.norm_std", "[0.0, 0.0, 0.0]"), either, check=says("norm_std")),
        C("cfg-ranks-zero", cli("test.ranks", "[0]"), bad, check=says("ranks")),
        C("cfg-unknown-model-name", cli("model.name", "resnet5"), bad, check=says("resnet5", "resnet50")),
        C("cfg-torchreid-model-pretrained-offline", cli("model.name", "osnet_x0_25", "model.pretrained", "openai"),
          either, check=says("pretrained")),
        C("cfg-vld-pretrained-missing-path", cli("model.pretrained", "{tmp}/clip.pt"), either, check=says("clip.pt")),
        C("cfg-vld-pretrained-not-weights", cli("model.pretrained", "{tmp}/clip.pt"), either,
          setup=write("clip.pt", "these are not weights\n")),
        C("cfg-vld-heads-not-dividing-width", cli("vld.heads", "5"), bad, check=says("heads")),
        C("cfg-vld-patch-size-negative", cli("vld.patch_size", "-8"), bad, check=says("patch_size")),
        C("cfg-vld-hub-start-beyond-layers", cli("vld.hub_start_block", "10"), bad, check=says("hub_start_block")),
        C("cfg-too-many-ids-per-batch", cli("train.batch_size", "64"), bad, check=says("identities")),
        C("cfg-num-instances-zero", cli("sampler.num_instances", "0"), bad, check=says("num_instances")),
        C("cfg-val-ids-too-large", cli("data.val_ids", "99"), bad, check=says("data.val_ids")),
        C("cfg-val-ids-negative", cli("data.val_ids", "-1"), bad, check=says("data.val_ids")),
        C("cfg-val-ids-works", cli("data.val_ids", "2", "train.batch_size", "8"), ok,
          check=all_of(results_json, exists("best.pth"))),
        C("cfg-min-seq-len-too-large", cli("hitsz_vcm.min_seq_len", "1000"), either, check=says("min_seq_len")),
        C("cfg-seed-negative", cli("train.seed", "-1"), bad, check=says("seed")),
        C("cfg-start-epoch-beyond-max", cli("train.start_epoch", "5"), bad, check=says("start_epoch")),
        C("cfg-empty-save-dir", cli("data.save_dir", ""), bad, check=says("save_dir")),
        C("cfg-no-arguments", [], bad),
        # ------------------------------------------------------------ 2. command-line flags
        C("cli-help", ["--help"], ok, check=prints("usage")),
        C("cli-unknown-flag", ["--evaluate", *cli()], bad, check=says("--evaluate")),
        C("cli-unknown-flag-after-overrides", cli("--evaluate"), bad, check=says("--evaluate")),
        C("cli-config-file-without-value", ["--config-file"], bad),
        C("cli-eval-only-after-overrides", cli("model.load_weights", "{ck}", "--eval-only"), ok,
          setup=checkpoint_copy(), check=evaluated_only),
        C("cli-visrank-after-overrides", cli("model.load_weights", "{ck}", "--eval-only", "--visrank"), ok,
          setup=checkpoint_copy(), check=all_of(evaluated_only, exists("visrank/hitsz_vcm"))),
        C("cli-resume-after-overrides", cli("train.max_epoch", "2", "--resume", "{ck}"), ok,
          setup=trained_run(), check=all_of(prints("resumed from"), checkpoint_epoch(2))),
        C("cli-eval-only-without-weights", cli(flags=["--eval-only"]), bad,
          check=all_of(says("--eval-only"), no_checkpoint)),
        C("cli-eval-only-load-weights", cli("model.load_weights", "{ck}", flags=["--eval-only"]), ok,
          setup=checkpoint_copy(),
          check=all_of(evaluated_only, results_json, same_numbers_as(lambda ctx: ctx.session.trained()))),
        C("cli-eval-only-resume-keeps-run-files", cli(flags=["--eval-only", "--resume", "{ck}"]), ok,
          setup=setups(trained_run(), remember("config.yaml", "results.json")),
          check=all_of(unchanged, same_numbers_as(lambda ctx: ctx.session.trained()))),
        C("cli-eval-only-resume-other-save-dir", cli(flags=["--eval-only", "--resume", "{ck}"]), ok,
          setup=checkpoint_copy(), check=same_numbers_as(lambda ctx: ctx.session.trained())),
        C("cli-visrank-eval-only", cli("model.load_weights", "{ck}", flags=["--eval-only", "--visrank"]), ok,
          setup=checkpoint_copy(), check=exists("visrank/hitsz_vcm/infrared-to-visible_ranked.png")),
        C("cli-visrank-training", cli(flags=["--visrank"]), ok,
          check=exists("visrank/hitsz_vcm/visible-to-infrared_ranked.png")),
        C("cli-resume-missing-file", cli(flags=["--resume", "{tmp}/gone.pth"]), either, check=says("gone.pth")),
        C("cli-resume-directory", cli(flags=["--resume", "{tmp}/ckdir"]), either, setup=make_dir("ckdir"),
          check=says("ckdir")),
        C("cli-resume-text-file", cli(flags=["--resume", "{tmp}/notes.pth"]), fault,
          setup=write("notes.pth", "not a checkpoint\n"), check=says("notes.pth")),
        C("cli-resume-plain-state-dict", cli(flags=["--resume", "{ck}"]), either,
          setup=setups(checkpoint_copy(), edit_checkpoint(lambda s: s["model"])), check=says("load_weights")),
        C("cli-resume-best-pth", cli("train.max_epoch", "2", flags=["--resume", "{ck}"]), either,
          setup=setups(checkpoint_copy(), edit_checkpoint(lambda s: {"state_dict": s["model"], "epoch": 1})),
          check=says("load_weights")),
        C("cli-load-weights-plain-state-dict", cli("model.load_weights", "{ck}", flags=["--eval-only"]), ok,
          setup=setups(checkpoint_copy(), edit_checkpoint(lambda s: s["model"])), check=results_json),
        C("cli-load-weights-fine-tune", cli("model.load_weights", "{ck}"), ok, setup=checkpoint_copy(),
          check=all_of(prints("loaded weights"), checkpoint_epoch(1))),
        C("cli-resume-changed-lr", cli("train.max_epoch", "2", "train.lr", "0.002", flags=["--resume", "{ck}"]), ok,
          setup=trained_run(), check=all_of(prints_line("train.lr", "0.002"), checkpoint_epoch(2))),
        C("cli-resume-changed-max-epoch", cli("train.max_epoch", "3", flags=["--resume", "{ck}"]), ok,
          setup=trained_run(), check=all_of(prints_line("train.max_epoch", "3"), checkpoint_epoch(3))),
        C("cli-resume-changed-optim", cli("train.max_epoch", "2", "train.optim", "sgd", flags=["--resume", "{ck}"]),
          bad, setup=trained_run(), check=all_of(says("train.optim"), checkpoint_epoch(1))),
        C("cli-resume-changed-batch-size", cli("train.max_epoch", "2", "train.batch_size", "8",
                                               flags=["--resume", "{ck}"]),
          bad, setup=trained_run(), check=all_of(says("train.batch_size"), checkpoint_epoch(1))),
        C("cli-resume-finished-run", cli(flags=["--resume", "{ck}"]), (0, 2), setup=trained_run(),
          check=all_of(prints_any("finished", "already", "nothing to"), checkpoint_epoch(1))),
        # ------------------------------------------------------------ 3. data
        C("data-root-missing", cli("data.root", "{tmp}/nowhere"), bad, check=says("nowhere", "vld_demo.yaml")),
        C("data-root-is-a-file", cli("data.root", "{tmp}/file"), bad, setup=write("file", "x\n")),
        C("data-root-is-the-dataset-folder", cli("data.root", "{root}/HITSZ-VCM"), ok, check=results_json),
        C("data-index-missing", cli(), bad, setup=data(lambda d: os.remove(d.index("train_name.txt"))),
          check=says("train_name.txt")),
        C("data-query-index-missing", cli(), bad, setup=data(lambda d: os.remove(d.index("query_IDX.txt"))),
          check=says("query_IDX.txt")),
        C("data-index-is-a-directory", cli(), either,
          setup=data(lambda d: (os.remove(d.index("track_test_info.txt")), os.mkdir(d.index("track_test_info.txt")))),
          check=says("track_test_info.txt")),
        C("data-index-empty-names", cli(), fault, setup=rewrite("train_name.txt", lambda lines: []),
          check=says("train_name.txt")),
        C("data-index-empty-tracks", cli(), fault, setup=rewrite("track_train_info.txt", lambda lines: []),
          check=says("track_train_info.txt")),
        C("data-index-empty-query", cli(), fault, setup=rewrite("query_IDX.txt", lambda lines: []),
          check=says("query_IDX.txt")),
        C("data-index-malformed-name", cli(), fault, setup=replace_line("train_name.txt", 5, "frame-5.jpg"),
          check=says("train_name.txt", "line 6")),
        C("data-index-track-four-fields", cli(), fault, setup=replace_line("track_train_info.txt", 2, "2 1 12 1"),
          check=says("track_train_info.txt", "line 3")),
        C("data-index-track-not-integers", cli(), fault, setup=replace_line("track_train_info.txt", 0, "2 a b 1 1"),
          check=says("track_train_info.txt", "line 1")),
        C("data-index-track-bad-modality", cli(), fault,
          setup=rewrite("track_train_info.txt", lambda lines: ["3" + lines[0][1:]] + lines[1:]),
          check=says("track_train_info.txt", "line 1")),
        C("data-index-track-range-outside", cli(), fault,
          setup=rewrite("track_train_info.txt", lambda lines: lines + ["2 99990 99999 1 1"]),
          check=says("track_train_info.txt")),
        C("data-index-track-end-before-start", cli(), fault,
          setup=rewrite("track_train_info.txt", lambda lines: lines + ["2 20 10 1 1"]),
          check=says("track_train_info.txt")),
        C("data-index-track-other-identity", cli(), fault,
          setup=edit_row("track_train_info.txt", 0, lambda f, rows: f[:3] + [str(int(f[3]) + 1), f[4]]),
          check=says("track_train_info.txt", "line 1")),
        C("data-index-track-other-camera", cli(), fault,
          setup=edit_row("track_train_info.txt", 0, lambda f, rows: f[:4] + [str(int(f[4]) % 3 + 1)]),
          check=says("track_train_info.txt", "line 1")),
        C("data-index-track-spans-two-identities", cli(), fault,
          setup=edit_row("track_train_info.txt", 0, lambda f, rows: f[:2] + [rows[-1][2]] + f[3:]),
          check=says("track_train_info.txt", "line 1")),
        C("data-index-query-not-a-number", cli(), fault, setup=rewrite("query_IDX.txt", lambda lines: ["1 two 3"]),
          check=says("query_IDX.txt", "two")),
        C("data-index-query-row-outside", cli(), fault, setup=rewrite("query_IDX.txt", lambda lines: ["99999"]),
          check=says("query_IDX.txt", "99999")),
        C("data-index-query-visible-rows", cli(), fault,
          setup=test_rows(lambda rows: (rows, [i + 1 for i, r in enumerate(rows) if r[0] == "2"])),
          check=says("query_IDX.txt")),
        C("data-index-non-utf8", cli(), fault,
          setup=data(lambda d: open(d.index("train_name.txt"), "ab").write(b"0001M2D1T1F\xff\xfe.jpg\n")),
          check=says("train_name.txt")),
        C("data-index-utf8-bom", cli(), (0, 1),
          setup=data(lambda d: d.write_lines("train_name.txt", d.lines("train_name.txt"), encoding="utf-8-sig"))),
        C("data-index-crlf-line-ends", cli(), ok,
          setup=data(lambda d: [d.write_lines(n, d.lines(n), newline="\r\n") for n in
                                ("train_name.txt", "track_train_info.txt", "query_IDX.txt")]), check=results_json),
        C("data-index-blank-lines", cli(), (0, 1),
          setup=rewrite("track_train_info.txt", lambda lines: lines + ["", ""])),
        C("data-index-double-spaces", cli(), (0, 1),
          setup=rewrite("track_train_info.txt", lambda lines: [lines[0].replace(" ", "  ")] + lines[1:])),
        C("data-index-only-visible-train", cli(), either, setup=rows_of("track_train_info.txt", lambda r: r[0] == "2")),
        C("data-frame-missing", cli(), fault, setup=damage_frames("train", "delete"), check=says(".jpg")),
        C("data-first-frame-missing", cli(), fault, setup=damage_frames("first", "delete"), check=says(".jpg")),
        C("data-frame-truncated", cli(), fault, setup=damage_frames("train", "truncate"), check=says(".jpg")),
        C("data-frame-random-bytes", cli(), fault, setup=damage_frames("train", "random"), check=says(".jpg")),
        C("data-frame-empty", cli(), fault, setup=damage_frames("train", "empty"), check=says(".jpg")),
        C("data-frame-is-a-directory", cli(), fault, setup=damage_frames("train", "dir"), check=says(".jpg")),
        C("data-frame-png-named-jpg", cli(), fault, setup=damage_frames("train", "png"), check=says(".jpg", "png")),
        C("data-frame-grayscale", cli(), ok, setup=damage_frames("train", "gray"), check=results_json),
        C("data-frame-other-size", cli(), ok, setup=damage_frames("train", "big"), check=results_json),
        C("data-test-frame-missing", cli(), fault, setup=damage_frames("test", "delete"),
          check=all_of(says(".jpg"), checkpoint_epoch(1))),
        C("data-test-frame-corrupt", cli(), fault, setup=damage_frames("test", "random"),
          check=all_of(says(".jpg"), checkpoint_epoch(1))),
        C("data-test-frame-corrupt-eval-only", cli("model.load_weights", "{ck}", flags=["--eval-only"]), fault,
          setup=setups(damage_frames("test", "truncate"), checkpoint_copy()), check=says(".jpg")),
        C("data-test-frame-missing-worker", cli("data.workers", "1"), fault, setup=damage_frames("test", "delete"),
          runner=in_subprocess(), slow=True, check=all_of(says(".jpg"), checkpoint_epoch(1))),
        C("data-frame-corrupt-workers", cli("data.workers", "2"), fault, setup=damage_frames("train", "random"),
          runner=in_subprocess(), slow=True, check=says(".jpg")),
        # ------------------------------------------------------------ 4. checkpoints
        C("ckpt-truncated-resume", cli("train.max_epoch", "2", flags=["--resume", "{ck}"]), fault,
          setup=setups(checkpoint_copy(), damage_file("truncate")), check=says("ck.pth")),
        C("ckpt-truncated-load-weights", cli("model.load_weights", "{ck}", flags=["--eval-only"]), fault,
          setup=setups(checkpoint_copy(), damage_file("truncate")), check=says("ck.pth")),
        C("ckpt-flipped-byte-resume", cli("train.max_epoch", "2", flags=["--resume", "{ck}"]), fault,
          setup=setups(checkpoint_copy(), damage_file("flip")), check=says("ck.pth")),
        C("ckpt-flipped-byte-load-weights", cli("model.load_weights", "{ck}", flags=["--eval-only"]), fault,
          setup=setups(checkpoint_copy(), damage_file("flip")), check=says("ck.pth")),
        C("ckpt-empty-file", cli("train.max_epoch", "2", flags=["--resume", "{ck}"]), fault,
          setup=setups(checkpoint_copy(), damage_file("empty")), check=says("ck.pth")),
        C("ckpt-other-model-size-resume", cli("train.max_epoch", "2", flags=["--resume", "{ck}"]), fault,
          setup=checkpoint_copy("narrow", "vld.width", "32", "vld.heads", "2"), check=says("ck.pth")),
        C("ckpt-other-model-size-load-weights", cli("model.load_weights", "{ck}", flags=["--eval-only"]), fault,
          setup=checkpoint_copy("narrow", "vld.width", "32", "vld.heads", "2"), check=says("ck.pth")),
        C("ckpt-other-model-resume-eval-only", cli(flags=["--eval-only", "--resume", "{ck}"]), fault,
          setup=checkpoint_copy("narrow", "vld.width", "32", "vld.heads", "2"), check=says("ck.pth")),
        C("ckpt-text-file-load-weights", cli("model.load_weights", "{tmp}/w.pth", flags=["--eval-only"]), fault,
          setup=write("w.pth", "weights\n"), check=says("w.pth")),
        C("ckpt-directory-load-weights", cli("model.load_weights", "{tmp}/w.pth", flags=["--eval-only"]), either,
          setup=make_dir("w.pth"), check=says("w.pth")),
        C("ckpt-dangling-symlink", cli("model.load_weights", "{tmp}/w.pth", flags=["--eval-only"]), either,
          setup=lambda ctx: os.symlink(ctx.path("gone.pth"), ctx.path("w.pth")), check=says("w.pth")),
        C("ckpt-zip-not-torch", cli("model.load_weights", "{tmp}/w.pth", flags=["--eval-only"]), fault,
          setup=lambda ctx: _write_zip(ctx.path("w.pth")), check=says("w.pth")),
        C("ckpt-holds-a-list", cli("train.max_epoch", "2", flags=["--resume", "{ck}"]), fault,
          setup=setups(checkpoint_copy(), edit_checkpoint(lambda s: [1, 2, 3])), check=says("ck.pth")),
        C("ckpt-holds-arbitrary-objects", cli("model.load_weights", "{tmp}/w.pth", flags=["--eval-only"]), fault,
          setup=_save_object("w.pth"), check=says("w.pth")),
        C("ckpt-missing-optimizer-state", cli("train.max_epoch", "2", flags=["--resume", "{ck}"]), fault,
          setup=setups(checkpoint_copy(), edit_checkpoint(lambda s: {k: v for k, v in s.items() if k != "optimizer"})),
          check=says("ck.pth")),
        C("ckpt-nan-weights-eval", cli("model.load_weights", "{ck}", flags=["--eval-only"]), fault,
          setup=setups(checkpoint_copy(), edit_checkpoint(_nan_weights)), check=says_any("finite", "nan")),
        C("ckpt-nan-weights-resume", cli("train.max_epoch", "2", flags=["--resume", "{ck}"]), fault,
          setup=setups(trained_run(), edit_checkpoint(_nan_weights)), check=says("finite")),
        # ------------------------------------------------------------ 5. filesystem
        C("fs-save-dir-is-a-file", cli("data.save_dir", "{tmp}/file"), either, setup=write("file", "x\n"),
          check=says("file")),
        C("fs-save-dir-under-a-file", cli("data.save_dir", "{tmp}/file/run"), either, setup=write("file", "x\n"),
          check=says("file")),
        C("fs-save-dir-read-only", cli("data.save_dir", "{ro}"), either, setup=read_only_dir("ro")),
        C("fs-save-dir-parent-read-only", cli("data.save_dir", "{ro}"), either, setup=unwritable_parent),
        C("fs-save-dir-deep-new-path", cli("data.save_dir", "{run}/a/b/c/d"), ok,
          check=lambda ctx, r: _checkpoint_problem(os.path.join(ctx.run, "a/b/c/d/checkpoint.pth"), 1)),
        C("fs-save-dir-spaces-unicode", cli("data.save_dir", "{run}/my runs/é ü"), ok,
          check=lambda ctx, r: _checkpoint_problem(os.path.join(ctx.run, "my runs/é ü/checkpoint.pth"), 1)),
        C("fs-stale-temporary-in-save-dir", cli(), ok,
          setup=write("run/.tmp-x1y2z3.pth", b"half a checkpoint", binary=True), check=checkpoint_epoch(1)),
        C("fs-config-yaml-is-a-directory", cli(), either, setup=make_dir("run/config.yaml"), check=says("config.yaml")),
        C("fs-checkpoint-path-is-a-directory", cli(), either, setup=make_dir("run/checkpoint.pth"),
          check=says("checkpoint.pth")),
        C("fs-results-json-is-a-directory", cli(), either, setup=make_dir("run/results.json"),
          check=says("results.json")),
        C("fs-disk-full-at-checkpoint", cli(), fault, runner=in_subprocess(preexec=file_size_limit(2 ** 20)),
          slow=True, check=says("checkpoint")),
        # ------------------------------------------------------------ 6. signals (real processes)
        C("sig-int-during-training", cli(*LONG), (130,), slow=True, runner=in_subprocess(sigint),
          check=resume_line_names_checkpoint),
        C("sig-term-during-training", cli(*LONG), (143,), slow=True, runner=in_subprocess(sigterm),
          check=resume_line_names_checkpoint),
        C("sig-int-twice", cli(*LONG), (130,), slow=True,
          runner=in_subprocess(sigint + [("", signal.SIGINT, 0.2, True)]), check=resume_line_names_checkpoint),
        C("sig-int-before-training", cli(*LONG), (130,), slow=True,
          runner=in_subprocess([("config written", signal.SIGINT, 0.0, True)]), check=no_checkpoint),
        C("sig-term-before-training", cli(*LONG), (143,), slow=True,
          runner=in_subprocess([("config written", signal.SIGTERM, 0.0, False)]), check=no_checkpoint),
        C("sig-int-during-evaluation", cli("model.load_weights", "{ck}", flags=["--eval-only"]), (130,), slow=True,
          setup=checkpoint_copy(),
          runner=in_subprocess([("FAULT-INJECTION", signal.SIGINT, 0.5, True)], prelude=SLOW_EVALUATION)),
        C("sig-int-with-workers", cli(*LONG, "data.workers", "2"), (130,), slow=True,
          runner=in_subprocess(sigint), check=resume_line_names_checkpoint),
        C("sig-term-with-workers", cli(*LONG, "data.workers", "1"), (143,), slow=True,
          runner=in_subprocess(sigterm), check=resume_line_names_checkpoint),
        C("sig-int-during-synthetic-generation", cli("data.synthetic", "True", "data.root", "{tmp}/fresh"), (130,),
          slow=True, runner=in_subprocess([("generating a synthetic", signal.SIGINT, 1.0, True)]),
          check=generation_not_marked_complete),
        C("sig-kill-during-checkpoint-write", cli("train.max_epoch", "2", flags=["--resume", "{ck}"]), ok,
          slow=True, timeout=2 * PROCESS_TIMEOUT, setup=trained_run(), runner=killed_during_save_then_rerun,
          check=checkpoint_epoch(2)),
        # ------------------------------------------------------------ 7. evaluation
        C("eval-no-query-with-a-match", cli(), fault, setup=test_rows(queries_without_match),
          check=all_of(says("query"), checkpoint_epoch(1))),
        C("eval-matches-only-in-same-camera", cli(), fault, setup=test_rows(same_camera_only), check=says("query")),
        C("eval-nan-loss-from-scratch", cli("train.lr", "1e30", "train.warmup_factor", "1.0"), fault,
          check=says("non-finite")),
        C("eval-nan-loss-after-resume", cli("train.max_epoch", "2", "train.lr", "1e30", "train.warmup_factor", "1.0",
                                            flags=["--resume", "{ck}"]),
          fault, setup=trained_run(), check=all_of(says("non-finite"), checkpoint_epoch(1))),
        C("eval-euclidean", cli("test.dist_metric", "euclidean"), ok, check=results_json),
        C("eval-rerank", cli("test.rerank", "True"), ok, check=results_json),
        C("eval-ranks-beyond-gallery", cli("test.ranks", "[1, 500]"), (0, 2)),
        C("eval-visrank-topk-zero", cli("test.visrank_topk", "0", flags=["--visrank"]), bad,
          check=says("visrank_topk")),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return cases


def _write_zip(path):
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"not a pickle")


def _save_object(name):
    """A checkpoint holding an object a weights-only load refuses (a datetime)."""
    def setup(ctx):
        import datetime

        import torch

        torch.save({"model": {}, "saved": datetime.datetime(2024, 1, 1)}, ctx.path(name))
    return setup


def _nan_weights(state):
    for tensor in state["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(float("nan"))
    return state


CASES = _cases()


# ============================================================================ the table
def table(outcomes):
    """case | exit code | last line | verdict, then the counts."""
    rows = [("case", "exit", "last line", "verdict")]
    for o in outcomes:
        code = "timeout" if o.result.timed_out else str(o.result.code)
        last = o.result.last_line()
        last = last if len(last) <= 100 else last[:97] + "..."
        rows.append((o.case.name, code, last, "GOOD" if o.good else f"BAD: {o.reason}"))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(r[j].ljust(widths[j]) for j in range(3)) + "  " + r[3])
        if i == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 7)
    good = sum(o.good for o in outcomes)
    lines.append(f"\n{len(outcomes)} cases: {good} good, {len(outcomes) - good} bad")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the fault catalogue and print the table of verdicts.")
    parser.add_argument("-k", default="", help="only cases whose name contains this")
    parser.add_argument("--fast", action="store_true", help="leave out the slow (subprocess) cases")
    parser.add_argument("--slow", action="store_true", help="only the slow (subprocess) cases")
    parser.add_argument("--details", action="store_true",
                        help="after the table, the command and output tail of each BAD case")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.k in c.name and not (args.fast and c.slow) and not (args.slow and not c.slow)]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="vld-faults-") as folder:
        session = Session(folder)
        for case in cases:
            outcome = session.run(case)
            outcomes.append(outcome)
            print(f"{'GOOD' if outcome.good else 'BAD '} {case.name} ({outcome.result.seconds:.1f}s)",
                  file=sys.stderr, flush=True)
    print(table(outcomes))
    if args.details:
        for o in outcomes:
            if not o.good:
                print("\n" + o.describe())
    return 0 if all(o.good for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
