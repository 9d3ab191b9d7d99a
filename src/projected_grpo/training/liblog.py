"""The libraries' own messages (transformers, TRL, accelerate, PEFT, datasets: their log records and Python
warnings) go to the run's log file while a run trains, not to the console the user watches."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

LIBRARIES = ("transformers", "trl", "accelerate", "peft", "datasets", "torch", "py.warnings")


@contextlib.contextmanager
def library_log(path: Path) -> Iterator[None]:
    """For the duration: each library logger (and Python warnings) writes to `path` (appended) only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
    saved = []
    for name in LIBRARIES:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.level, logger.propagate))
        logger.handlers, logger.propagate = [handler], False
        logger.setLevel(logging.INFO if name != "torch" else logging.WARNING)
    logging.captureWarnings(True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # each distinct warning once, into the file
            yield
    finally:
        logging.captureWarnings(False)
        for logger, handlers, level, propagate in saved:
            logger.handlers, logger.level, logger.propagate = handlers, level, propagate
        handler.close()
