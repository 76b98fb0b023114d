"""The `unfold` command line.

    unfold show MODEL [--dims H=64,D=8]          the checked recurrence
    unfold graph MODEL --tau N [--level op|var] [--grad] [--out FILE.json|.graphml]
    unfold run MODEL --tau N [--batch B] [--seed S]
    unfold check MODEL [--tau N] [--batch B] [--target reference|numpy|cpu|cuda]
    unfold compile MODEL [--target numpy|cpu|cuda] [--emit | --ir | --ir-after PASS | --ptx [--cc 9.0]]
    unfold bench MODEL [--tau T] [--batch B] [--vs numpy,torch,torch-loop,jax]
    unfold draw MODEL [--view VIEW] [--tau N] -o FILE
    unfold demo

Exit codes: 0 ok, 2 bad input (a model or argument error, with its message),
1 an internal failure or a failed check, 141 when the reader of the output
went away (`unfold show M | head -1`).  Every argument is checked before
any work starts: a bad suffix or a missing folder for an output file is an
error before the graph is built.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import traceback
from pathlib import Path

import numpy as np

from ..compiler.backend import BACKENDS
from ..compiler.passes import PASS_NAMES
from ..lang.errors import ModelError, UnfoldError
from ..lang.initializers import memory_limit
from ..lang.recurrence import Recurrence
from . import argtypes
from .argtypes import PEERS

VERSION = "0.2.0"
#: what `graph --out` writes (graph.unfolding.export)
GRAPH_SUFFIXES = (".json", ".graphml")
#: a rough cost of one node of an unfolded graph with its values, for refusing what cannot fit
NODE_BYTES = 2048


def _model(args):
    """The checked model of args.model: a recurrence, or a model another front
    end reads (an encoder–decoder, a CTC model: tools/composite.py)."""
    from ..lang.dsl import load
    from . import composite
    rec = composite.load(args.model, args.command) or load(args.model)
    dims = argtypes.dims(args.dims)
    unknown = sorted(set(dims) - set(rec.dims))
    if unknown:
        raise UnfoldError(f"--dims {unknown[0]}=...: model {rec.name} has no dim {unknown[0]} "
                          f"(its dims: {', '.join(rec.dims) or 'none'})")
    return rec.bind(**dims) if dims else rec


def _output(path: str, suffixes: tuple[str, ...], flag: str) -> Path:
    """An output path checked before any work: a known suffix, an existing folder."""
    out = Path(path)
    if out.suffix.lower() not in suffixes:
        what = f"a {out.suffix} file" if out.suffix else "a file without a suffix"
        raise UnfoldError(f"{flag} {path}: cannot write {what} (expected a name ending in {', '.join(suffixes)})")
    folder = out.parent
    if not folder.is_dir():
        raise UnfoldError(f"{flag} {path}: the folder {folder} does not exist")
    if out.is_dir():
        raise UnfoldError(f"{flag} {path}: is a folder (expected a file name)")
    return out


def _fits(rec, tau: int, batch: int = 1, graphs: int = 1):
    """Refuse a run whose unfolded graphs (`graphs` of them: forward, gradient)
    and values clearly cannot fit in this machine's memory."""
    if not isinstance(rec, Recurrence):
        from .composite import parts
        for part in parts(rec):
            _fits(part, tau, batch, graphs)
        return
    from ..lang.ir import walk
    limit = memory_limit()
    exprs = [e.expr for e in rec.equations] + ([rec.loss.expr] if rec.loss else [])
    nodes = sum(1 for e in exprs for _ in walk(e)) + len(rec.symbols)
    units = sum(math.prod(s.shape) for s in rec.symbols.values() if s.shape and s.batched)
    params = sum(math.prod(s.shape) for s in rec.params)
    need = graphs * tau * (nodes * NODE_BYTES + 8 * batch * units) + 8 * params
    if limit is not None and need > limit:
        run = f"--tau {tau}" + (f" --batch {batch}" if batch > 1 else "")
        raise UnfoldError(f"{run} needs about {need / 2 ** 30:.3g} GiB for model {rec.name} ({nodes} nodes "
                          f"and {units} numbers per step, {params} in params), more than this machine's "
                          f"{limit / 2 ** 30:.3g} GiB (expected a smaller --tau, --batch or --dims)")


def _options(args) -> dict:
    """Target options given on the command line (the CUDA schedule)."""
    return {"schedule": args.schedule} if getattr(args, "schedule", None) else {}


def cmd_show(args):
    from . import composite
    rec = _model(args)
    print(rec.listing())
    if not isinstance(rec, Recurrence):
        print(composite.describe_inputs(rec))


def cmd_graph(args):
    import networkx as nx

    from ..graph.bptt import grad_graph
    from ..graph.unfolding import Kind, export, summary, unfold
    from ..lang.ir import Role
    if args.grad and args.level != "op":
        raise UnfoldError("--grad needs the op-level graph (--level op)")
    out = _output(args.out, GRAPH_SUFFIXES, "--out") if args.out else None
    rec = _model(args)
    _fits(rec, args.tau, graphs=3 if args.grad else 1)
    dag = unfold(rec, args.tau, level=args.level)
    print(summary(dag))
    if args.grad:
        gg = grad_graph(dag)
        adj = sum(1 for _, a in gg.nodes(data=True) if a["kind"] is Kind.ADJOINT)
        vjp = sum(1 for _, a in gg.nodes(data=True) if a["kind"] is Kind.VJP)
        print(f"gradient graph: nodes {gg.number_of_nodes()} (forward {dag.number_of_nodes()}, "
              f"adjoint {adj}, vjp {vjp}), edges {gg.number_of_edges()}, "
              f"acyclic: {'yes' if nx.is_directed_acyclic_graph(gg) else 'NO'}")
        for s in rec.of_role(Role.PARAM):
            node = gg.nodes.get(f"grad:{s.name}")
            if node is not None:
                print(f"  grad:{s.name:<8} sums {len(node['inputs'])} contributions")
        dag = gg
    if out:
        export(dag, str(out))
        print(f"wrote {out}")


def cmd_run(args):
    from ..graph.evaluate import evaluate
    from .gradcheck import random_run
    rec = _model(args)
    _fits(rec, args.tau, args.batch)
    params, inputs, targets, _ = random_run(rec, args.tau, args.batch, args.seed)
    out = evaluate(rec, params, inputs, targets, tau=args.tau, batch=args.batch)
    for k, v in out.items():
        if k != "loss":
            print(f"{k:<8} [{', '.join(map(str, v.shape))}]  mean {v.mean():+.6f}  std {v.std():.6f}")
    if "loss" in out:
        print(f"loss = {out['loss']:.10g}")


def cmd_check(args):
    from .gradcheck import check_compiled, gradcheck, random_run, table
    rec = _model(args)
    _fits(rec, args.tau, args.batch, graphs=3)
    if not isinstance(rec, Recurrence):   # an encoder–decoder, a CTC model
        from . import composite
        ok = composite.check(rec, args.target, args.tau, args.batch, args.seed, _options(args))
        print("gradient check: " + ("passed" if ok else "FAILED"))
        return 0 if ok else 1
    params, inputs, targets, init = random_run(rec, args.tau, args.batch, args.seed)
    print(f"gradient check of {rec.name}: tau={args.tau} batch={args.batch} float64, target={args.target}")
    size = dict(tau=args.tau, batch=args.batch, seed=args.seed)   # the seed: dropout in training mode
    if args.target == "reference":
        rows, ok = gradcheck(rec, params, inputs, targets, init=init, **size), True
    else:
        from ..compiler.driver import compile as compile_
        fn = compile_(rec, target=args.target, dtype=np.float64, **_options(args))
        ok = check_compiled(fn, rec, params, inputs, targets, init, size)
        vg = lambda r, p, i, t, **kw: fn.value_and_grad(p, i, t, **kw)  # noqa: E731
        loss = lambda p, i, ini: fn.loss(p, i, targets, init=ini, **size)  # noqa: E731  (forward only)
        rows = gradcheck(rec, params, inputs, targets, init=init, value_and_grad=vg, loss_fn=loss, **size)
    print(table(rows))
    ok = ok and all(r.ok for r in rows)
    print("gradient check: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def cmd_compile(args):
    from ..compiler.driver import compile as compile_
    from ..compiler.listing import listing
    from ..compiler.passes import lower
    rec = _model(args)
    fn = compile_(rec, target=args.target, dtype=np.dtype(args.dtype), mode=args.mode, **_options(args))
    if args.ir_after:
        print(listing(lower(rec, until=args.ir_after)))
    elif args.ir:
        print(listing(fn.program()))
    elif args.ptx:
        print(fn.ptx(cc=tuple(int(p) for p in args.cc.split("."))))
    else:
        print(fn.source)


def cmd_bench(args):
    from .bench import bench_model
    rec = _model(args)
    _fits(rec, args.tau, args.batch)
    print(bench_model(rec, tau=args.tau, batch=args.batch, vs=args.vs or [], repeats=args.repeats,
                      threads=args.threads, cold=args.cold))


def cmd_draw(args):
    from .. import viz
    from ..viz.render import FORMATS
    out = _output(args.out, tuple("." + f for f in FORMATS), "-o")
    rec = _model(args)
    _fits(rec, args.tau)
    if not isinstance(rec, Recurrence):   # an encoder–decoder, a CTC model
        from . import composite
        graph = composite.draw(rec, view=args.view, tau=args.tau, force=args.force)
    else:
        graph = viz.draw(rec, view=args.view, tau=args.tau, force=args.force)
    viz.save(graph, out)
    print(f"wrote {out}")


def cmd_demo(args):
    from .demo import main as demo
    return demo(args)


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def _target(sub, choices, default):
    sub.add_argument("--target", choices=choices, default=default, help="where the code runs")
    sub.add_argument("--schedule", choices=["auto", "persistent", "stepwise"], default=None,
                     help="cuda: the time loop in one persistent kernel, or a launch per stage and step "
                          "(default: auto)")


def _command(sub, name, fn, help, tau=None, batch=False):
    """A subcommand taking a model (and, if asked, --tau, --batch, --seed)."""
    s = sub.add_parser(name, help=help, description=help, formatter_class=_Help)
    if name != "demo":
        s.add_argument("model", help="a .rnn model file")
        s.add_argument("--dims", type=argtypes.dims_entries, action="append", metavar="NAME=N[,NAME=N...]",
                       help="override dims, e.g. H=64,D=8 (may be repeated; default: the model's own)")
    if tau is not None:
        s.add_argument("--tau", type=argtypes.positive, required=tau is True, default=None if tau is True else tau,
                       help="number of steps" + (" (required)" if tau is True else ""))
    if batch:
        s.add_argument("--batch", type=argtypes.positive, default=2, help="sequences per batch")
        s.add_argument("--seed", type=argtypes.natural, default=0, help="random seed of the params and the data" +
                       (", and of dropout's masks (checked in training mode)" if name == "check" else ""))
    s.set_defaults(fn=fn)
    return s


def _compile_command(sub):
    k = _command(sub, "compile", cmd_compile, "compile and print the generated code")
    _target(k, list(BACKENDS), "cpu")
    k.add_argument("--dtype", choices=["float32", "float64"], default="float32", help="the kernels' float type")
    k.add_argument("--mode", choices=["rolled", "unrolled"], default="rolled",
                   help="a loop over time, or straight-line code per step")
    what = k.add_mutually_exclusive_group()
    what.add_argument("--emit", action="store_true", help="print the generated source (the default)")
    what.add_argument("--ir", action="store_true", help="print the step program")
    what.add_argument("--ir-after", choices=PASS_NAMES, help="print the step program after this pass")
    what.add_argument("--ptx", action="store_true", help="print PTX (cuda)")
    k.add_argument("--cc", type=argtypes.cc, default="9.0", help="compute capability for --ptx")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unfold", description="A graph compiler for recurrent networks.",
                                formatter_class=_Help)
    p.add_argument("--version", action="version", version=f"unfold {VERSION}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _command(sub, "show", cmd_show, "print the checked recurrence")
    g = _command(sub, "graph", cmd_graph, "unfold for --tau steps and summarize the DAG", tau=True)
    g.add_argument("--level", choices=["op", "var"], default="op", help="a node per op, or per variable")
    g.add_argument("--grad", action="store_true", help="also build the BPTT gradient graph")
    g.add_argument("--out", help="write the DAG as .json (node-link) or .graphml")
    _command(sub, "run", cmd_run, "evaluate on random params and inputs", tau=True, batch=True)
    c = _command(sub, "check", cmd_check, "check gradients against finite differences", tau=8, batch=True)
    _target(c, ["reference", *BACKENDS], "reference")
    _compile_command(sub)
    b = _command(sub, "bench", cmd_bench, "time forward and forward+backward against peers", tau=200, batch=True)
    b.add_argument("--vs", type=argtypes.peers, help=f"peers, comma-separated: {','.join(PEERS)} (default: unfold alone)")
    b.add_argument("--repeats", type=argtypes.positive, default=7, help="timed calls; the median is reported")
    b.add_argument("--threads", type=argtypes.positive, default=1, help="threads for BLAS, numba and the peers")
    b.add_argument("--cold", action="store_true", help="time a compile into an empty cache")
    d = _command(sub, "draw", cmd_draw, "draw the recurrence with graphviz", tau=3)
    d.add_argument("--view", default="circuit", help="what to draw",
                   choices=["circuit", "unfolded", "side-by-side", "ops", "gradient", "cell"])
    d.add_argument("-o", "--out", required=True, help="output file: .svg .png .pdf or .dot (required)")
    d.add_argument("--force", action="store_true", help="draw even a very long unfolding")
    from . import plot as plot_command  # the argument list only: matplotlib is imported when it runs
    pl = sub.add_parser("plot", help="plot training histories or Jacobian norms (needs matplotlib)",
                        description=plot_command.__doc__.split("\n")[0], formatter_class=_Help)
    plot_command.add_arguments(pl)
    pl.set_defaults(fn=plot_command.run)
    dm = _command(sub, "demo", cmd_demo, "a tour on a built-in model")
    dm.add_argument("--out", default="demo-out", help="where the pictures go")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        code = args.fn(args) or 0
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except UnfoldError as e:  # a ModelError says "file:line:col: error:" itself
        print(e if isinstance(e, ModelError) else f"unfold: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `unfold show M | head -1`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        return 141
    except MemoryError:
        print("unfold: out of memory (expected a smaller --tau, --batch or --dims)", file=sys.stderr)
        return 2
    except OSError as e:  # a file the user named: unwritable, a full disk, ...
        print(f"unfold: {e.strerror or e}: {e.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # an unfold bug: say so, with the trace for the report
        print("unfold: internal error (please report it with this trace):", file=sys.stderr)
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
