"""Training on the compiled kernels: optimizers, schedules, a fit loop, data helpers, saving."""
