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
1 an internal failure or a failed check.
"""
from __future__ import annotations

import argparse
import sys
import traceback

import numpy as np

from ..compiler.backend import BACKENDS
from ..compiler.passes import PASS_NAMES
from ..lang.errors import UnfoldError

VERSION = "0.2.0"


def _dims(text: str | None) -> dict[str, int]:
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        name, _, value = part.partition("=")
        if not value.strip().isdigit():
            raise UnfoldError(f"bad --dims entry {part!r}: expected NAME=INTEGER, e.g. --dims H=64,D=8")
        out[name.strip()] = int(value)
    return out


def _model(args):
    from ..lang.dsl import load
    rec = load(args.model)
    return rec.bind(**_dims(args.dims)) if args.dims else rec


def _options(args) -> dict:
    """Target options given on the command line (the CUDA schedule)."""
    return {"schedule": args.schedule} if getattr(args, "schedule", None) else {}


def cmd_show(args):
    print(_model(args).listing())


def cmd_graph(args):
    import networkx as nx

    from ..graph.bptt import grad_graph
    from ..graph.unfolding import Kind, export, summary, unfold
    from ..lang.ir import Role
    rec = _model(args)
    dag = unfold(rec, args.tau, level=args.level)
    print(summary(dag))
    if args.grad:
        if args.level != "op":
            raise UnfoldError("--grad needs the op-level graph (--level op)")
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
    if args.out:
        export(dag, args.out)
        print(f"wrote {args.out}")


def cmd_run(args):
    from ..graph.evaluate import evaluate
    from .gradcheck import random_run
    rec = _model(args)
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
    params, inputs, targets, init = random_run(rec, args.tau, args.batch, args.seed)
    print(f"gradient check of {rec.name}: tau={args.tau} batch={args.batch} float64, target={args.target}")
    size = dict(tau=args.tau, batch=args.batch)
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
    vs = [v for v in (args.vs or "").split(",") if v]
    print(bench_model(rec, tau=args.tau, batch=args.batch, vs=vs, repeats=args.repeats, threads=args.threads))


def cmd_draw(args):
    from .. import viz
    rec = _model(args)
    graph = viz.draw(rec, view=args.view, tau=args.tau, force=args.force)
    viz.save(graph, args.out)
    print(f"wrote {args.out}")


def cmd_demo(args):
    from .demo import main as demo
    return demo(args)


def _target(sub, choices, default):
    sub.add_argument("--target", choices=choices, default=default, help="where the code runs")
    sub.add_argument("--schedule", choices=["auto", "persistent", "stepwise"], default=None,
                     help="cuda: the time loop in one persistent kernel, or a launch per stage and step "
                          "(default: auto)")


def _command(sub, name, fn, help, tau=None, batch=False):
    """A subcommand taking a model (and, if asked, --tau, --batch, --seed)."""
    s = sub.add_parser(name, help=help, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if name != "demo":
        s.add_argument("model", help="a .rnn model file")
        s.add_argument("--dims", help="override dims: H=64,D=8")
    if tau is not None:
        s.add_argument("--tau", type=int, required=tau is True, default=None if tau is True else tau,
                       help="number of steps")
    if batch:
        s.add_argument("--batch", type=int, default=2, help="sequences per batch")
        s.add_argument("--seed", type=int, default=0, help="random seed of the params and data")
    s.set_defaults(fn=fn)
    return s


def _compile_command(sub):
    k = _command(sub, "compile", cmd_compile, "compile and print the generated code")
    _target(k, list(BACKENDS), "cpu")
    k.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    k.add_argument("--mode", choices=["rolled", "unrolled"], default="rolled")
    what = k.add_mutually_exclusive_group()
    what.add_argument("--emit", action="store_true", help="print the generated source (the default)")
    what.add_argument("--ir", action="store_true", help="print the step program")
    what.add_argument("--ir-after", choices=PASS_NAMES, help="print the step program after this pass")
    what.add_argument("--ptx", action="store_true", help="print PTX (cuda)")
    k.add_argument("--cc", default="9.0", help="compute capability for --ptx")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unfold", description="A graph compiler for recurrent networks.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--version", action="version", version=f"unfold {VERSION}")
    sub = p.add_subparsers(dest="command", required=True)
    _command(sub, "show", cmd_show, "print the checked recurrence")
    g = _command(sub, "graph", cmd_graph, "unfold for --tau steps and summarize the DAG", tau=True)
    g.add_argument("--level", choices=["op", "var"], default="op")
    g.add_argument("--grad", action="store_true", help="also build the BPTT gradient graph")
    g.add_argument("--out", help="write the DAG as .json (node-link) or .graphml")
    _command(sub, "run", cmd_run, "evaluate on random params and inputs", tau=True, batch=True)
    c = _command(sub, "check", cmd_check, "check gradients against finite differences", tau=8, batch=True)
    _target(c, ["reference", *BACKENDS], "reference")
    _compile_command(sub)
    b = _command(sub, "bench", cmd_bench, "time forward and forward+backward against peers", tau=200, batch=True)
    b.add_argument("--vs", help="peers: numpy,torch,torch-loop,jax")
    b.add_argument("--repeats", type=int, default=7)
    b.add_argument("--threads", type=int, default=1)
    d = _command(sub, "draw", cmd_draw, "draw the recurrence with graphviz", tau=3)
    d.add_argument("--view", default="circuit",
                   choices=["circuit", "unfolded", "side-by-side", "ops", "gradient", "cell"])
    d.add_argument("-o", "--out", required=True, help="output file: .svg .png .pdf or .dot")
    d.add_argument("--force", action="store_true", help="draw even a very long unfolding")
    dm = _command(sub, "demo", cmd_demo, "a tour on a built-in model")
    dm.add_argument("--out", default="demo-out", help="where the pictures go")
    return p


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except UnfoldError as e:
        print(e, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception:  # an unfold bug: say so, with the trace for the report
        print("unfold: internal error (please report it with this trace):", file=sys.stderr)
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
