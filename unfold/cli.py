"""The `unfold` command line.

    unfold show MODEL [--dims H=64,D=8]          the checked recurrence
    unfold graph MODEL --tau N [--level op|var] [--grad] [--out FILE.json|.graphml]
    unfold run MODEL --tau N --batch B [--seed S]
    unfold check MODEL --tau N [--batch B] [--target reference|cpu|cuda]
    unfold compile MODEL [--target cpu|cuda] (--emit | --ir | --ptx [--cc 9.0])
    unfold bench MODEL --tau T --batch B [--vs numpy,torch,jax]
    unfold draw MODEL --view VIEW [--tau N] -o FILE
    unfold demo

Exit codes: 0 ok, 2 bad input (a model or argument error, with its message),
1 an internal failure or a failed check.
"""
from __future__ import annotations

import argparse
import sys
import traceback

import numpy as np

from .errors import UnfoldError


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
    from . import dsl
    rec = dsl.load(args.model)
    return rec.bind(**_dims(args.dims)) if args.dims else rec


def cmd_show(args):
    print(_model(args).listing())


def cmd_graph(args):
    from .bptt import grad_graph
    from .unfolding import export, summary, unfold
    rec = _model(args)
    dag = unfold(rec, args.tau, level=args.level)
    print(summary(dag))
    if args.grad:
        if args.level != "op":
            raise UnfoldError("--grad needs the op-level graph (--level op)")
        gg = grad_graph(dag)
        from .unfolding import Kind
        adj = sum(1 for _, a in gg.nodes(data=True) if a["kind"] is Kind.ADJOINT)
        vjp = sum(1 for _, a in gg.nodes(data=True) if a["kind"] is Kind.VJP)
        print(f"gradient graph: nodes {gg.number_of_nodes()} (forward {dag.number_of_nodes()}, "
              f"adjoint {adj}, vjp {vjp}), edges {gg.number_of_edges()}, "
              f"acyclic: {'yes' if __import__('networkx').is_directed_acyclic_graph(gg) else 'NO'}")
        for s in rec.of_role(__import__("unfold").Role.PARAM):
            node = gg.nodes.get(f"grad:{s.name}")
            if node is not None:
                print(f"  grad:{s.name:<8} sums {len(node['inputs'])} contributions")
        dag = gg
    if args.out:
        export(dag, args.out)
        print(f"wrote {args.out}")


def cmd_run(args):
    from .api import evaluate
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
    from .gradcheck import gradcheck, random_run, table
    rec = _model(args)
    params, inputs, targets, init = random_run(rec, args.tau, args.batch, args.seed)
    print(f"gradient check of {rec.name}: tau={args.tau} batch={args.batch} float64, target={args.target}")
    if args.target == "reference":
        rows, ok = gradcheck(rec, params, inputs, targets, init=init, tau=args.tau, batch=args.batch), True
    else:
        from .compiler import compile as compile_
        fn = compile_(rec, target=args.target, dtype=np.float64, schedule=args.schedule)
        size = dict(tau=args.tau, batch=args.batch)
        ok = _check_compiled(fn, rec, params, inputs, targets, init, size)
        vg = lambda r, p, i, t, **kw: fn.value_and_grad(p, i, t, **kw)  # noqa: E731
        loss = lambda p, i, ini: fn.loss(p, i, targets, init=ini, **size)  # noqa: E731  (forward only)
        rows = gradcheck(rec, params, inputs, targets, init=init, value_and_grad=vg, loss_fn=loss, **size)
    print(table(rows))
    ok = ok and all(r.ok for r in rows)
    print("gradient check: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


def _check_compiled(fn, rec, params, inputs, targets, init, size) -> bool:
    """Compiled values and gradients against the reference interpreter."""
    from .bptt import value_and_grad
    loss_c, grads_c = fn.value_and_grad(params, inputs, targets, init=init, **size)
    loss_r, grads_r = value_and_grad(rec, params, inputs, targets, init=init, **size)
    print(f"{'tensor':<14} {'compiled vs reference max rel diff':>36}  ok")
    ok = True
    for key in ["loss", *grads_r]:
        a, b = (loss_c, loss_r) if key == "loss" else (grads_c[key], grads_r[key])
        err = float(np.max(np.abs(np.asarray(a) - b)) / max(np.max(np.abs(b)), 1e-12))
        ok &= err <= 1e-10
        print(f"{key:<14} {err:>36.2e}  {'yes' if err <= 1e-10 else 'NO'}")
    return ok


def cmd_compile(args):
    from .compiler import compile as compile_
    rec = _model(args)
    fn = compile_(rec, target=args.target, dtype=np.dtype(args.dtype), mode=args.mode, schedule=args.schedule)
    if args.ir:
        print(fn.program().listing())
    if args.ptx:
        print(fn.ptx(cc=tuple(int(p) for p in args.cc.split("."))))
    if args.emit or not (args.ir or args.ptx):
        print(fn.source)


def cmd_bench(args):
    from .bench import bench_model
    rec = _model(args)
    vs = [v for v in (args.vs or "").split(",") if v]
    print(bench_model(rec, tau=args.tau, batch=args.batch, vs=vs, repeats=args.repeats,
                      threads=args.threads))


def cmd_draw(args):
    from . import viz
    rec = _model(args)
    graph = viz.draw(rec, view=args.view, tau=args.tau, force=args.force)
    viz.save(graph, args.out)
    print(f"wrote {args.out}")


def cmd_demo(args):
    from .demo import main as demo
    return demo(args)


def schedule(sub):
    from .compiler import SCHEDULES
    sub.add_argument("--schedule", choices=SCHEDULES, default="auto",
                     help="cuda: the time loop in one persistent kernel, or a launch per stage and step")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unfold", description="A graph compiler for recurrent networks.")
    sub = p.add_subparsers(dest="command", required=True)

    def add(name, fn, help, tau=None, batch=False):
        s = sub.add_parser(name, help=help)
        if name != "demo":
            s.add_argument("model", help="a .rnn model file")
            s.add_argument("--dims", help="override dims: H=64,D=8")
        if tau is not None:
            s.add_argument("--tau", type=int, required=tau is True, default=None if tau is True else tau,
                           help="number of steps")
        if batch:
            s.add_argument("--batch", type=int, default=2, help="sequences per batch")
            s.add_argument("--seed", type=int, default=0)
        s.set_defaults(fn=fn)
        return s

    add("show", cmd_show, "print the checked recurrence")
    g = add("graph", cmd_graph, "unfold for --tau steps and summarize the DAG", tau=True)
    g.add_argument("--level", choices=["op", "var"], default="op")
    g.add_argument("--grad", action="store_true", help="also build the BPTT gradient graph")
    g.add_argument("--out", help="write the DAG as .json (node-link) or .graphml")
    add("run", cmd_run, "evaluate on random params and inputs", tau=True, batch=True)
    c = add("check", cmd_check, "check gradients against finite differences", tau=8, batch=True)
    c.add_argument("--target", choices=["reference", "cpu", "cuda"], default="reference")
    schedule(c)
    k = add("compile", cmd_compile, "compile and print the generated code")
    k.add_argument("--target", choices=["cpu", "cuda"], default="cpu")
    k.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    k.add_argument("--mode", choices=["rolled", "unrolled"], default="rolled")
    k.add_argument("--emit", action="store_true", help="print the generated source")
    k.add_argument("--ir", action="store_true", help="print the step program")
    k.add_argument("--ptx", action="store_true", help="print PTX (cuda)")
    k.add_argument("--cc", default="9.0", help="compute capability for --ptx")
    schedule(k)
    b = add("bench", cmd_bench, "time forward and forward+backward against peers", tau=200, batch=True)
    b.add_argument("--vs", help="peers: numpy,torch,torch-loop,jax")
    b.add_argument("--repeats", type=int, default=7)
    b.add_argument("--threads", type=int, default=1)
    d = add("draw", cmd_draw, "draw the recurrence with graphviz", tau=3)
    d.add_argument("--view", default="circuit",
                   choices=["circuit", "unfolded", "side-by-side", "ops", "gradient", "cell"])
    d.add_argument("-o", "--out", required=True, help="output file: .svg .png .pdf or .dot")
    d.add_argument("--force", action="store_true", help="draw even a very long unfolding")
    dm = add("demo", cmd_demo, "a tour on a built-in model")
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
