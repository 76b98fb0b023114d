"""Argument types of the command line: each turns a flag's text into a value or
raises argparse.ArgumentTypeError, which argparse reports with exit 2."""
from __future__ import annotations

import argparse
import re

from ..lang.errors import UnfoldError
from ..lang.sizes import LIMIT

#: the peers `unfold bench --vs` knows (benchmarks/peers.py implements them)
PEERS = ("numpy", "torch", "torch-loop", "jax")


def positive(text: str) -> int:
    value = integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive whole number (expected 1 or more)")
    return value


def natural(text: str) -> int:
    value = integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text} is negative (expected 0 or more)")
    return value


def integer(text: str) -> int:
    if not re.fullmatch(r"[+-]?\d{1,16}", text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number (expected, e.g., 8)")
    return int(text)


def peers(text: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in names if v not in PEERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown peer {unknown[0] if unknown else text!r} "
                                         f"(expected a comma-separated list of {', '.join(PEERS)})")
    return names


def cc(text: str) -> str:
    if not re.fullmatch(r"\d{1,2}\.\d", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a compute capability (expected, e.g., 9.0)")
    return text


def dims_entries(text: str) -> dict[str, int]:
    """One --dims argument: NAME=INTEGER[,NAME=INTEGER...]."""
    out: dict[str, int] = {}
    for part in text.split(","):
        name, eq, value = (p.strip() for p in part.partition("="))
        if not eq or not name.isidentifier() or not re.fullmatch(r"\d{1,30}", value):
            raise argparse.ArgumentTypeError(f"bad entry {part!r} (expected NAME=INTEGER, e.g. H=64,D=8)")
        if not 1 <= int(value) <= LIMIT:
            raise argparse.ArgumentTypeError(f"{name}={value}: a dim is a whole number from 1 to 2**53")
        if name in out:
            raise argparse.ArgumentTypeError(f"{name} is given twice")
        out[name] = int(value)
    return out


def dims(given: list[dict[str, int]] | None) -> dict[str, int]:
    """Every --dims argument merged; a dim given twice is an error, not a silent override."""
    out: dict[str, int] = {}
    for entries in given or []:
        for name, value in entries.items():
            if name in out:
                raise UnfoldError(f"--dims gives {name} twice ({name}={out[name]} and {name}={value})")
            out[name] = value
    return out
