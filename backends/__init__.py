"""Backends: one module per target (reference interpreter, numba CPU, numba CUDA)."""
