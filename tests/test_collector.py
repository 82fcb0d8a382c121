"""The garbage collector's settings for a gunicorn worker (chatapp/collector.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from chatapp import collector


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored")
def test_tune_freezes_what_is_loaded_and_collects_young_objects_less_often() -> None:
    gc.unfreeze()
    loaded = [object()]  # a container the worker made before serving
    collector.tune()
    assert gc.get_freeze_count() > 0
    assert all(found is not loaded for found in gc.get_objects())  # left out of collections
    young, middle, old = gc.get_threshold()
    assert young == collector.YOUNG_THRESHOLD > 700
    assert (middle, old) == (10, 10)
