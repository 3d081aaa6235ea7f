"""The steps of one image's publish: each timed into its result, and any expected failure inside
it turned into one StepFailed that names the step (the report's "failed at <step>")."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from factory.core import log, progress
from factory.core.errors import CommandError, FactoryError, StepFailed
from factory.publish.report import ImageResult


@contextmanager
def step(result: ImageResult, name: str) -> Iterator[None]:
    start = time.monotonic()
    log.get("publish").info("step", image=result.name, step=name)
    progress.current().step_started(result.name, name)
    ok = False
    try:
        yield
        ok = True
    except StepFailed:
        raise
    except FactoryError as e:
        # A failed command names its own step; StepFailed names it once, so only its detail is kept,
        # unless the command's step says more (gates: "sbom linux/arm64: `trivy ...` exited 2").
        message = e.detail if isinstance(e, CommandError) and e.step in name else e.message
        raise StepFailed(result.name, name, message, hint=e.hint) from e
    finally:
        result.timings[name] = round(time.monotonic() - start, 2)
        progress.current().step_done(result.name, name, result.timings[name], ok=ok)
