"""Timing, memory and reporting helpers for the CPU benchmark, system-agnostic.

A *system* is a name plus a factory: `factory(case) -> (fwd, fwd_bwd)`, where
`case` is a `Case` (cell, B, H, tau, D, dtype) and the two callables take
`(params, x, y)` (numpy; params named as examples/models/<cell>.rnn, x [T, B, D],
y [T, B, H]) and return `loss` and `(loss, grads)`.  A factory that cannot run a
case raises (PeerUnavailable, ImportError, NotImplementedError): the system is
skipped for that case with the message as a note.  The peers come from
`peers.peer_systems()`; unfold joins as one more system, e.g.

    def unfold_factory(case):
        rec = uf.load(f"examples/models/{case.cell}.rnn").bind(H=case.H, D=case.D)
        fn = uf.compile(rec, target="cpu", dtype=case.dtype)
        return (lambda p, x, y: fn(p, {"x": x}, {"y": y}),
                lambda p, x, y: fn.value_and_grad(p, {"x": x}, {"y": y}))

    results = run_grid([System("unfold", unfold_factory)] + peer_systems(), cases)
    print(format_table(results, baseline="torch"))

`configure_threads(n)` gives every system the same thread count (call it before
jax is imported); `environment()` says what was set and which BLAS kernel runs.
Times are medians over `repeats` calls after `warmup` calls, the systems of a
case timed in turns (one call each per round, so that a change of load on a
shared machine falls on all of them alike); the first call of each callable
(compile, allocator and library start-up) is timed on its own.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

SKIP = ("PeerUnavailable", "ImportError", "ModuleNotFoundError", "NotImplementedError")


@dataclass(frozen=True)
class Case:
    cell: str
    B: int
    H: int
    tau: int
    D: int | None = None          # default: D = H
    dtype: str = "float32"

    def __post_init__(self):
        if self.D is None:
            object.__setattr__(self, "D", self.H)

    @property
    def key(self) -> str:
        return f"{self.cell} {self.B},{self.H},{self.tau}"


@dataclass
class System:
    name: str
    factory: Callable              # (Case) -> (fwd, fwd_bwd)
    memory: str = "rss"            # how to measure peak memory: "tracemalloc" or "rss"


def as_case(c) -> Case:
    """A Case from a Case or a tuple (cell, B, H, tau[, D])."""
    return c if isinstance(c, Case) else Case(*c)


def as_system(s) -> System:
    return s if isinstance(s, System) else System(*s)


# ---------------------------------------------------------------- threads

_LIMITS = []   # keeps the threadpoolctl limiter alive


def configure_threads(n: int) -> dict:
    """One thread count for everyone: BLAS/OpenMP (threadpoolctl), torch, numba, XLA.

    XLA reads its flags when jax is first imported: call this before that.
    Returns what was set, for the output."""
    info = {"threads": n, "notes": []}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, str(n))
    if n == 1:
        flags = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        if flags not in os.environ.get("XLA_FLAGS", ""):   # a child process inherits them
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flags).strip()
        if "jax" in sys.modules:
            info["notes"].append("jax was imported before configure_threads: XLA_FLAGS may not apply")
    try:
        from threadpoolctl import threadpool_limits
        _LIMITS.append(threadpool_limits(limits=n))
    except ImportError:
        info["notes"].append("threadpoolctl missing: numpy's BLAS threads not limited")
    try:
        import torch
        torch.set_num_threads(n)
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:   # only settable once, before any inter-op work
            pass
    except ImportError:
        pass
    if sys.modules.get("numba") is not None:
        import numba
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return info


def blas_info() -> list[dict]:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries (kernel = architecture)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keep = ("user_api", "internal_api", "prefix", "version", "architecture", "num_threads",
            "threading_layer")
    return [{k: d[k] for k in keep if k in d} for d in threadpool_info()]


def environment() -> dict:
    """Thread count, BLAS kernel, library versions, relevant environment variables."""
    out = {"blas": blas_info(), "versions": {"numpy": np.__version__},
           "env": {k: v for k, v in os.environ.items()
                   if k.startswith(("OPENBLAS_", "OMP_", "MKL_", "XLA_", "NUMBA_"))}}
    for mod in ("torch", "jax", "numba"):
        if sys.modules.get(mod) is not None:
            out["versions"][mod] = sys.modules[mod].__version__
    t = sys.modules.get("torch")
    if t is not None:
        out["torch_threads"] = t.get_num_threads()
        out["torch_cpu_capability"] = t.backends.cpu.get_cpu_capability()
    return out


# ---------------------------------------------------------------- timing

def _ms(t0):
    return (time.perf_counter() - t0) * 1e3


def first_call(fn, *args) -> tuple[float, object]:
    """(milliseconds, result) of one call: the compile / first-call time."""
    t0 = time.perf_counter()
    out = fn(*args)
    return _ms(t0), out


def time_call(fn, *args, repeats: int = 7, warmup: int = 1, max_seconds: float | None = None) -> dict:
    """Median and min of `repeats` timed calls of fn(*args) after `warmup` untimed ones.

    max_seconds stops early (after at least 3 runs) when the runs take that long."""
    for _ in range(warmup):
        fn(*args)
    runs = []
    start = time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        runs.append(_ms(t0))
        if max_seconds is not None and len(runs) >= 3 and time.perf_counter() - start > max_seconds:
            break
    return {"median_ms": statistics.median(runs), "min_ms": min(runs), "runs": runs}


# ---------------------------------------------------------------- memory

def _proc_status(field_name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
    raise OSError(f"{field_name} not in /proc/self/status")


def _malloc_trim():
    """Hand freed heap memory back to the OS (glibc), so the RSS peak of the next call
    counts its allocations instead of reusing pages an earlier call left resident."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory(fn, *args, method: str = "tracemalloc") -> dict:
    """Peak memory of one call fn(*args), in bytes.

    tracemalloc: the peak of Python/numpy allocations during the call (exact for
    numpy; blind to torch's, XLA's and numba's own allocators).  rss: the peak
    resident set during the call minus the resident set before it (Linux: resets
    the high-water mark through /proc/self/clear_refs); approximate, since freed
    memory an allocator keeps is already resident (glibc's is trimmed first).  Returns {"bytes", "method"}
    or {"bytes": None, "method", "note"} when it cannot measure."""
    if method == "tracemalloc":
        tracemalloc.start()
        try:
            fn(*args)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return {"bytes": peak, "method": method}
    try:
        _malloc_trim()
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")                   # reset VmHWM to the current RSS
        base = _proc_status("VmRSS")
        fn(*args)
        return {"bytes": max(_proc_status("VmHWM") - base, 0), "method": "rss"}
    except OSError as e:
        return {"bytes": None, "method": "rss", "note": f"peak RSS unavailable: {e}"}


# ---------------------------------------------------------------- checking

def max_rel_error(loss, grads, ref_loss, ref_grads) -> float:
    """Largest error over the loss and every gradient, relative to each reference's max |.|."""
    errs = [abs(loss - ref_loss) / max(abs(ref_loss), 1e-30)]
    for k, g in ref_grads.items():
        if k in grads:
            scale = float(np.max(np.abs(g))) or 1.0
            errs.append(float(np.max(np.abs(np.asarray(grads[k], np.float64) - g))) / scale)
    return max(errs)


# ---------------------------------------------------------------- running

@dataclass
class Result:
    case: Case
    systems: dict = field(default_factory=dict)   # name -> measurements or {"skipped": note}


def _interleaved(calls: dict, problem, repeats: int, warmup: int, max_seconds) -> dict:
    """time_call's numbers for several callables timed in turns, one call each per round,
    so that a change of load on a shared machine falls on all of them alike."""
    for fn in calls.values():
        for _ in range(warmup):
            fn(*problem)
    runs = {k: [] for k in calls}
    spent = dict.fromkeys(calls, 0.0)
    for _ in range(repeats):
        for k, fn in calls.items():
            if max_seconds is not None and len(runs[k]) >= 3 and spent[k] > max_seconds * 1e3:
                continue
            t0 = time.perf_counter()
            fn(*problem)
            runs[k].append(_ms(t0))
            spent[k] += runs[k][-1]
    return {k: {"median_ms": statistics.median(v), "min_ms": min(v), "runs": v} for k, v in runs.items()}


def _prepared(systems, case, problem, reference, res):
    """Each system's (fwd, fwd_bwd) after its first calls and the check; skips noted in res."""
    ready = {}
    for s in map(as_system, systems):
        try:
            fwd, fwd_bwd = s.factory(case)
        except Exception as e:                     # noqa: BLE001 (optional systems)
            if type(e).__name__ not in SKIP:
                raise
            res.systems[s.name] = {"skipped": str(e)}
            continue
        m = res.systems[s.name] = {}
        m["first_fwd_ms"], _ = first_call(fwd, *problem)
        m["first_fwd_bwd_ms"], (loss, grads) = first_call(fwd_bwd, *problem)
        if reference is not None:
            m["max_rel_err"] = max_rel_error(loss, grads, *reference)
        ready[s.name] = (s, fwd, fwd_bwd)
    return ready


def run_case(systems, case, problem, repeats=7, warmup=1, reference=None, memory=False,
             max_seconds=None, log=None) -> Result:
    """Measure every system on one case.  problem = (params, x, y); reference =
    (loss, grads) to check each system's fwd_bwd against (max_rel_err).  The systems'
    calls are timed in turns (`_interleaved`): their ratios are what a run is for."""
    res = Result(case)
    ready = _prepared(systems, case, problem, reference, res)
    for key, at in (("fwd", 1), ("fwd_bwd", 2)):
        for name, m in _interleaved({n: r[at] for n, r in ready.items()}, problem, repeats, warmup,
                                    max_seconds).items():
            res.systems[name][key] = m
    for name, (s, fwd, fwd_bwd) in ready.items():
        m = res.systems[name]
        if memory:
            m["peak_memory"] = peak_memory(fwd_bwd, *problem, method=s.memory)
        if log:
            log(f"{case.key:>22} {name:>11}: fwd {m['fwd']['median_ms']:9.2f} ms, "
                f"fwd+bwd {m['fwd_bwd']['median_ms']:9.2f} ms, first {m['first_fwd_bwd_ms']:8.1f} ms"
                + (f", err {m['max_rel_err']:.1e}" if "max_rel_err" in m else ""))
    return res


def run_grid(systems, cases, repeats=7, warmup=1, check=True, memory=False, max_seconds=None,
             seed=0, log=None) -> list[Result]:
    """run_case over every case, on random problems from cells_np.make_problem;
    checked against the numpy BPTT in float64 when `check`."""
    from benchmarks import cells_np
    out = []
    for case in map(as_case, cases):
        problem = cells_np.make_problem(case.cell, case.tau, case.B, case.H, case.D, seed=seed,
                                        dtype=np.dtype(case.dtype))
        ref = None
        if check:
            p64 = [{k: v.astype(np.float64) for k, v in problem[0].items()},
                   problem[1].astype(np.float64), problem[2].astype(np.float64)]
            ref = cells_np.value_and_grad(case.cell, *p64)
        out.append(run_case(systems, case, problem, repeats, warmup, ref, memory, max_seconds, log))
    return out


# ---------------------------------------------------------------- reporting

def _fmt(v):
    if v is None:
        return "-"
    return f"{v:.3g}" if v < 10 else f"{v:.0f}" if v >= 100 else f"{v:.1f}"


def format_table(results, baseline: str | None = None, systems=None) -> str:
    """Markdown table: a row per case (cell, B, H, tau); per system the fwd and
    fwd+bwd median ms, and (with a baseline) fwd+bwd time / baseline's fwd+bwd time."""
    names = systems or list(dict.fromkeys(n for r in results for n in r.systems))
    head = ["cell, B, H, tau"]
    for n in names:
        head += [f"{n} fwd", f"{n} f+b"] + ([f"{n} /{baseline}"] if baseline and n != baseline else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        base = r.systems.get(baseline, {}).get("fwd_bwd", {}).get("median_ms") if baseline else None
        row = [f"{r.case.cell} {r.case.B}, {r.case.H}, {r.case.tau}"]
        for n in names:
            m = r.systems.get(n, {})
            fb = m.get("fwd_bwd", {}).get("median_ms")
            row += [_fmt(m.get("fwd", {}).get("median_ms")), _fmt(fb)]
            if baseline and n != baseline:
                row.append(f"{fb / base:.2f}" if fb and base else "-")
        lines.append("| " + " | ".join(row) + " |")
    notes = sorted({f"{n}: {m['skipped']}" for r in results for n, m in r.systems.items()
                    if "skipped" in m})
    return "\n".join(lines + [""] + [f"- skipped {s}" for s in notes])


def format_first_calls(results) -> str:
    """Markdown table of first-call (compile) times, fwd / fwd+bwd in ms, and the peak
    memory of fwd+bwd in MiB where measured."""
    names = list(dict.fromkeys(n for r in results for n in r.systems))
    lines = ["| cell, B, H, tau | " + " | ".join(f"{n} first fwd / f+b ms, peak MiB" for n in names)
             + " |", "|" + "---|" * (len(names) + 1)]
    for r in results:
        row = [r.case.key]
        for n in names:
            m = r.systems.get(n, {})
            cell = (f"{_fmt(m['first_fwd_ms'])} / {_fmt(m['first_fwd_bwd_ms'])}"
                    if "first_fwd_ms" in m else "-")
            mem = m.get("peak_memory", {})
            if mem.get("bytes") is not None:
                cell += f", {mem['bytes'] / 2**20:.1f} ({mem['method']})"
            row.append(cell)
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def describe_environment(env: dict) -> str:
    """One paragraph: threads and the BLAS kernels threadpoolctl reports."""
    lines = [f"threads: {env.get('threads')} for every system"]
    for b in env.get("blas", []):
        lines.append(f"  {b.get('user_api')}: {b.get('internal_api')} {b.get('version')} "
                     f"kernel={b.get('architecture', '-')} threads={b.get('num_threads')}")
    for k, v in sorted(env.get("env", {}).items()):
        lines.append(f"  {k}={v}")
    lines += [f"  note: {n}" for n in env.get("notes", [])]
    return "\n".join(lines)


def write_json(path, results, env=None) -> None:
    """results and environment as JSON (atomic: written to a temp file, then renamed)."""
    data = {"environment": env or {}, "results": [
        {"case": asdict(r.case), "systems": r.systems} for r in results]}
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=float)
    os.replace(tmp, path)
