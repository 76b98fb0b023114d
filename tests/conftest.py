"""Hypothesis draws the same examples on every run by default, so a landing
passes or fails on the code, not on the draw; HYPOTHESIS_PROFILE=explore
searches afresh (and keeps what it finds in .hypothesis/)."""
import os

from hypothesis import settings

settings.register_profile("repeatable", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "repeatable"))
