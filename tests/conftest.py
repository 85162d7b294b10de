"""Session fixtures built from tests/helpers.py: the tiny world every readapt test shares."""

from __future__ import annotations

import pytest

from helpers import TinyWorld, build_world


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> TinyWorld:
    return build_world(tmp_path_factory.mktemp("world"))
