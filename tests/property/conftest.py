"""Hypothesis settings for the property suite: bounded example counts so it runs in seconds.

Profiles: ``ci`` (the default) and ``deep`` (``EXOPIPE_HYPOTHESIS_PROFILE`` is not read here:
select it with ``pytest --hypothesis-profile=deep`` when hunting).
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every CI run: a failure is reproducible
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile("ci")
