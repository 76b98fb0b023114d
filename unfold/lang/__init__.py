"""The language: a model as text or Python, checked into a `Recurrence`."""
