"""Mail addresses and the public base URL: checked once, where they enter.

An address goes into an ``SMTP RCPT TO`` and a ``To:`` header, so it is held to
a plain ``local@domain`` form: no display names, comments, quoting or line
breaks, which is all a staff mailbox needs and leaves nothing to inject.
"""

from __future__ import annotations

import re

MAX_ADDRESS = 254
_LOCAL = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
EMAIL = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})+")
_URL = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/-]*)?")


def check_email(value: str) -> str:
    """The address, stripped and lower-cased in its domain; ValueError saying why not."""
    value = value.strip()
    if len(value) > MAX_ADDRESS or not EMAIL.fullmatch(value):
        raise ValueError(
            f"not a mail address of the form name@example.com (at most {MAX_ADDRESS} characters)"
        )
    local, domain = value.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def check_public_url(value: str) -> str:
    """The service's public base URL for links in mails, without a trailing slash."""
    value = value.strip().rstrip("/")
    if value and not _URL.fullmatch(value):
        raise ValueError(
            "public_url must be an http(s) base URL such as https://vault.example.com, "
            "without query or fragment"
        )
    return value
