"""The tests here deliver to receivers on 127.0.0.1: ANTAEUS_WEBHOOK_ALLOW_PRIVATE=true.

(tests/notify/test_webhook_addresses.py, which checks the refusals, sets it off.)
"""

from __future__ import annotations

import pytest

from antaeus.config import Settings
from tests.notify.helpers import allowing_private


@pytest.fixture
def settings(database_url: str) -> Settings:
    return allowing_private(database_url)
