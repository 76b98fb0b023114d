"""The CPU benchmark's goals, checked on one run's results (benchmarks/cpu.py prints them).

    flops(case)                      # the matmul FLOPs of one forward + backward
    print(goals_table(results, peak))

Goals (the issue "faster than oneDNN's LSTM at every size, on any BLAS"):
LSTM at least 1.0x PyTorch's native nn.LSTM at every size (stretch: 1.3x at
H >= 256); every cell at least 1.5x JAX's lax.scan and 1.0x PyTorch native
where PyTorch has the cell; at H >= 256 at least peak / 1.3 GFLOP/s, where
the FLOPs are the matmuls' (the elementwise work is not counted) and the
peak is the micro-kernels' on a large square GEMM (benchmarks/gemm.py).
A ratio is the peer's forward+backward median over unfold's, from one run.
"""
from __future__ import annotations

#: gate blocks per cell: the rows of its packed weights are g * H
GATES = {"elman": 1, "lstm": 4, "gru": 3, "softsign": 2}


def flops(case) -> float:
    """Matmul FLOPs of forward + backward: the projection and a step's product forward;
    a step's product, two weight gradients and the input gradient backward."""
    g, H, D, TB = GATES[case.cell], case.H, case.D, case.tau * case.B
    return 2.0 * TB * g * H * (3 * D + 3 * H)


def _ratio(r, peer):
    base = r.systems.get("unfold", {}).get("fwd_bwd", {}).get("median_ms")
    other = r.systems.get(peer, {}).get("fwd_bwd", {}).get("median_ms")
    return other / base if base and other else None


def verdicts(r, peak: float | None) -> list[str]:
    """What this row misses of the goals (an empty list: all met)."""
    misses = []
    torch, jax = _ratio(r, "torch"), _ratio(r, "jax")
    if torch is not None and torch < 1.0:
        misses.append(f"torch {torch:.2f}x < 1.0x")
    if jax is not None and jax < 1.5:
        misses.append(f"jax {jax:.2f}x < 1.5x")
    ms = r.systems.get("unfold", {}).get("fwd_bwd", {}).get("median_ms")
    if peak and ms and r.case.H >= 256 and flops(r.case) / ms / 1e6 < peak / 1.3:
        misses.append(f"{flops(r.case) / ms / 1e6:.0f} GFLOP/s < peak / 1.3 = {peak / 1.3:.0f}")
    return misses


def goals_table(results, peak: float | None) -> str:
    """Markdown: per case unfold's forward+backward ms and GFLOP/s (and % of peak), the
    ratios to PyTorch native and JAX, and the goals it misses."""
    lines = ["| cell, B, H, tau | unfold f+b ms | GFLOP/s | % of peak | torch / unfold | jax / unfold | goals |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        ms = r.systems.get("unfold", {}).get("fwd_bwd", {}).get("median_ms")
        if not ms:
            continue
        rate = flops(r.case) / ms / 1e6
        share = f"{100 * rate / peak:.0f}" if peak else "-"
        torch, jax = _ratio(r, "torch"), _ratio(r, "jax")
        misses = verdicts(r, peak)
        lines.append(f"| {r.case.cell} {r.case.B}, {r.case.H}, {r.case.tau} | {ms:.3g} | {rate:.1f} | {share} | "
                     + (f"{torch:.2f}" if torch else "-") + " | " + (f"{jax:.2f}" if jax else "-")
                     + " | " + ("met" if not misses else "; ".join(misses)) + " |")
    return "\n".join(lines)


def summary(results, peak: float | None) -> dict:
    """Per case: GFLOP/s, ratios, misses (for the JSON)."""
    out = {}
    for r in results:
        ms = r.systems.get("unfold", {}).get("fwd_bwd", {}).get("median_ms")
        if ms:
            out[r.case.key] = {"gflops": flops(r.case) / ms / 1e6, "torch_ratio": _ratio(r, "torch"),
                               "jax_ratio": _ratio(r, "jax"), "misses": verdicts(r, peak)}
    return out
