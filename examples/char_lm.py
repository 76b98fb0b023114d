"""A character-level language model: an LSTM learns to continue text.

The text is examples/data/unfold_docs.txt, this project's own documentation
(its README, docs/*.md and its modules' docstrings, MIT-licensed like the
code).  The last tenth is held out; the model trains on random windows of
the rest, and its held-out cross-entropy is reported in bits per character
(a model that knew nothing, uniform over the alphabet, scores log2(V)).

    python examples/char_lm.py --quick        # a short run (about a minute)
    python examples/char_lm.py                # the README's numbers

The model is examples/tasks/char_lstm.rnn; generation runs the compiled
step one character at a time (`generate`).
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np

import unfold as uf
from unfold.train import Batch, EarlyStopping, eval_loss, fit, generate, one_hot, optim, random_windows, save

HERE = Path(__file__).resolve().parent
TEXT = HERE / "data" / "unfold_docs.txt"


class Alphabet:
    """Characters <-> ids, in sorted order."""

    def __init__(self, text: str):
        self.chars = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.chars)}

    def encode(self, text: str) -> np.ndarray:
        return np.array([self.index[ch] for ch in text], dtype=np.int64)

    def decode(self, ids) -> str:
        return "".join(self.chars[i] for i in ids)


def windows(ids: np.ndarray, T: int, B: int, rng, V: int) -> Batch:
    """B random windows: x the characters, y the next ones (one-hot [T, B, V])."""
    x, y = random_windows((ids[:-1], ids[1:]), T, B, rng)
    return Batch({"x": one_hot(x, V)}, {"y": one_hot(y, V)})


def held_out_batch(ids: np.ndarray, T: int, V: int) -> Batch:
    """The held-out text cut into consecutive windows of T characters, each
    read from a zero state: every held-out character is predicted once."""
    n = (len(ids) - 1) // T
    x = ids[:n * T].reshape(n, T).T              # [T, n]: window b is ids[b*T : (b+1)*T]
    y = ids[1:n * T + 1].reshape(n, T).T
    return Batch({"x": one_hot(x, V)}, {"y": one_hot(y, V)})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smaller model, fewer steps (about a minute)")
    p.add_argument("--hidden", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--T", type=int, default=64, help="characters per training window")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=None,
                   help="Adam's first learning rate (default 1e-2 with --quick, else 3e-3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--progress", choices=["auto", "print", "none"], default="auto")
    p.add_argument("--out", type=Path, default=None, help="folder for the trained params and history")
    args = p.parse_args(argv)
    hidden = args.hidden or (64 if args.quick else 256)
    steps = args.steps or (1500 if args.quick else 3000)
    args.lr = args.lr or (1e-2 if args.quick else 3e-3)

    text = TEXT.read_text()
    alphabet = Alphabet(text)
    V, ids = len(alphabet.chars), alphabet.encode(text)
    split = int(0.9 * len(ids))
    train_ids, test_ids = ids[:split], ids[split:]
    rec = uf.load(HERE / "tasks" / "char_lstm.rnn").bind(V=V, H=hidden)
    fn = uf.compile(rec, target="cpu", dtype=np.float32)
    params = rec.init_params(seed=args.seed, dtype=np.float32)
    held_out = held_out_batch(test_ids, 256, V)
    print(f"{TEXT.name}: {len(text)} characters, alphabet of {V} (uniform: {math.log2(V):.2f} bits/char); "
          f"training on {len(train_ids)}, holding out {len(test_ids)}")
    print(f"LSTM H={hidden}, windows of {args.T} x {args.batch}, {steps} steps")

    clock = time.perf_counter()
    params, history = fit(
        fn, params, lambda rng: windows(train_ids, args.T, args.batch, rng, V), steps=steps,
        optimizer=optim.Adam(optim.cosine_decay(args.lr, steps, args.lr / 20), clip=1.0),
        eval_data=held_out, eval_every=max(1, steps // 10), callbacks=[EarlyStopping(patience=3)],
        seed=args.seed, progress=False if args.progress == "none" else args.progress)
    seconds = time.perf_counter() - clock
    bpc = eval_loss(fn, params, held_out) / math.log(2)
    print(f"\nheld-out: {bpc:.3f} bits per character after {history.last_step} steps ({seconds:.0f} s)"
          + (f"; {history.stop_reason}" if history.stop_reason else ""))

    prompt = "The compiler "
    sample = generate(fn, params, alphabet.encode(prompt), steps=400, temperature=args.temperature, seed=args.seed)
    print(f"\nsample (temperature {args.temperature}):\n{prompt}{alphabet.decode(sample)}")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        save(args.out / "char_lstm.npz", params, rec, meta={"bits_per_char": bpc, "alphabet": "".join(alphabet.chars)})
        history.save(args.out / "char_lstm.json")


if __name__ == "__main__":
    main()
