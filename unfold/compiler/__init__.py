"""The compiler: a recurrence lowered to its step program, printed by a backend, cached, called."""
