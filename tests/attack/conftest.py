"""The API fixtures (one demo user per role over a fresh vault), for attack tests;
and the pages' signed-in ``browser`` (``tests/web/conftest.py``)."""

from tests.api.conftest import activate, api_vault, client, clock, login  # noqa: F401
from tests.web.conftest import browser, web_app  # noqa: F401
