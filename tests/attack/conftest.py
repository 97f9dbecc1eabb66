"""The API fixtures (one demo user per role over a fresh vault), for attack tests."""

from tests.api.conftest import activate, api_vault, client, clock, login  # noqa: F401
