"""Bridges to other frameworks: an unfold cell as a PyTorch module or a JAX function, weights from PyTorch; gradients on a Dask cluster."""
