"""A checked recurrence: the one IR every later stage reads.

    rec = Recurrence.check(model)      # what dsl.parse and builder.Model.build do
    rec = rec.bind(H=128)              # the same model with other dims, checked again
    params = rec.init_params(seed=0)   # dict name -> array
    print(rec.listing())               # what `unfold show` prints

Its equations are in step order and every expression carries its shape; an
unchecked model never escapes (`Recurrence.check` is the only way to make one).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
from .check import check
from .errors import ModelError
from .initializers import initialize
from .ir import Call, Equation, Init, Model, Role, Symbol, expr_text, reads, walk
from .sizes import size_text


@dataclass
class Recurrence(Model):
    """A checked recurrence (see the module docstring): a model whose symbols
    have shapes, whose equations are in step order, with its dims' values."""
    dims: dict[str, int] = field(default_factory=dict)
    #: the model as written: `bind` checks it again with new dims
    source: Model | None = field(default=None, repr=False, compare=False)

    @classmethod
    def check(cls, model: Model) -> "Recurrence":
        done = check(model)
        return cls(model.name, model.dim_decls, done.symbols, done.equations, done.loss,
                   model.functions, model.file, done.dims, model)

    # -- views ---------------------------------------------------------------
    def of_role(self, *roles: Role) -> list[Symbol]:
        by_role = self.__dict__.setdefault("_by_role", {})   # asked on every call of a compiled function
        if roles not in by_role:
            by_role[roles] = [s for s in self.symbols.values() if s.role in roles]
        return by_role[roles]

    @property
    def read_in_equations(self) -> frozenset[str]:
        """The names the equations read (a target read only by the loss is not among them)."""
        names = self.__dict__.get("_read")
        if names is None:
            names = self.__dict__["_read"] = frozenset(r.name for eq in self.equations for r in reads(eq.expr))
        return names

    @property
    def indices(self) -> dict[str, int]:
        """Inputs and targets that hold indices, each with how many values it may
        take (the fewest, if read by several calls): the class of
        `softmax_cross_entropy(z, k)` and the token of an embedding `E[x[t]]`."""
        found = self.__dict__.get("_indices")
        if found is None:
            found = self.__dict__["_indices"] = {}
            exprs = [eq.expr for eq in self.equations] + ([self.loss.expr] if self.loss else [])
            for e in (n for x in exprs for n in walk(x)):
                if isinstance(e, Call) and e.op.name == "softmax_cross_entropy" and e.attrs == ("class",):
                    k, n = e.args[1].name, e.args[0].shape[0]
                elif isinstance(e, Call) and e.op.name == "one_hot":
                    k, n = e.args[0].name, e.shape[0]
                else:
                    continue
                found[k] = min(found.get(k, n), n)
        return found

    @property
    def params(self) -> list[Symbol]:
        return self.of_role(Role.PARAM, Role.CONST)

    @property
    def states(self) -> list[Symbol]:
        return self.of_role(Role.STATE)

    def equation(self, name: str) -> Equation:
        return next(e for e in self.equations if e.name == name)

    def delays(self, name: str) -> list[int]:
        """How many steps back (ahead, for a backward state) `name` is read, sorted."""
        exprs = [e.expr for e in self.equations] + ([self.loss.expr] if self.loss else [])
        return sorted({abs(r.offset) for x in exprs for r in reads(x) if r.name == name and r.offset})

    def max_delay(self, name: str) -> int:
        return max(self.delays(name), default=0)

    # -- binding -------------------------------------------------------------
    def bind(self, **dims: int) -> "Recurrence":
        """A copy with some dims changed, checked again: `rec.bind(H=128)`."""
        unknown = sorted(set(dims) - set(self.dim_decls))
        if unknown:
            raise ModelError(f"unknown dim {unknown[0]}",
                             expected=f"one of {', '.join(self.dim_decls) or '(no dims)'}")
        for k, v in dims.items():
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ModelError(f"dim {k} = {v!r} is not a positive whole number", expected=f"{k}=64")
        decls = {k: ((int(dims[k]), loc) if k in dims else (v, loc))
                 for k, (v, loc) in self.dim_decls.items()}
        return Recurrence.check(dataclasses.replace(self.source, dim_decls=decls))

    def init_params(self, seed: int = 0, dtype=np.float64) -> dict[str, np.ndarray]:
        """Fresh values for every param and const, reproducible from `seed`."""
        rng = np.random.default_rng(seed)
        return {s.name: initialize(s, self.dims, rng).astype(dtype) for s in self.params}

    # -- text ----------------------------------------------------------------
    def listing(self) -> str:
        """The checked recurrence as text (what `unfold show` prints)."""
        out = [f"recurrence {self.name}  ({self.file})", "dims"]
        out += [f"  {k} = {v}" for k, v in self.dims.items()]
        out.append("symbols")
        out += [f"  {s.role.value:<12} {s.name:<8} {self._symbol_text(s)}" for s in self.symbols.values()]
        out.append("equations (one step, in order)")
        out += [f"  {e.name}[t] = {expr_text(e.expr)}" for e in self.equations]
        if self.loss:
            out.append(f"loss = {self.loss.reduce.value}({expr_text(self.loss.expr)})")
        if self.functions:
            out.append("functions")
            out += [f"  {k}({', '.join(map(str, f.variables))}) = {f.expr}" for k, f in self.functions.items()]
        return "\n".join(out)

    def _symbol_text(self, s: Symbol) -> str:
        concrete = "[" + ", ".join(map(str, s.shape or ())) + "]" if s.shape else "scalar"
        shape = "[" + ", ".join(size_text(d) for d in s.dims) + "] = " if s.dims else ""
        extra = ""
        if s.role is Role.STATE:
            extra = (f"  init={s.init}  direction={'forward' if s.direction > 0 else 'backward'}"
                     f"  delays={','.join(str(k) for k in self.delays(s.name))}")
        elif s.role in (Role.INPUT, Role.TARGET) and not s.timed:
            extra = "  (one per sequence)"
        elif isinstance(s.init, Init):
            extra = f"  init={s.init.kind}({', '.join(size_text(a) for a in s.init.args)})"
        return f"{shape}{concrete}{extra}"

    def __str__(self) -> str:
        return self.listing()


def canonical(rec: Recurrence) -> str:
    """The recurrence as text, without its file name: what compiled code depends on."""
    return rec.listing().split("\n", 1)[1]
