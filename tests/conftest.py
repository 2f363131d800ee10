"""Fixtures shared by several test files."""

from __future__ import annotations

import pytest
from _fresh_venv import FreshInstall, chapter_extras, fresh_install


@pytest.fixture(scope="session")
def installed(tmp_path_factory) -> FreshInstall:
    """The wheel, built and installed in a new venv with every chapter's extras and a Jupyter kernel."""
    return fresh_install(tmp_path_factory.mktemp("fresh"), extras=chapter_extras(), kernel=True)
