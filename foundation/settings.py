"""Configuration, read once from the environment (``VAULT_`` prefix) or passed in.

Everything that decides where secrets and data live is a setting so that tests
and operators never have to patch module globals.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from foundation.addresses import check_email, check_public_url

# The shipped profile schema is a data file of the vault package: named by path, not imported.
# Where an SMTP relay may be reached without TLS (smtp_tls "none").
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_SCHEMA_FILE = Path(__file__).resolve().parent.parent / "vault" / "profile_schema.toml"
# The shipped detection rules (issue 13), a data file of the policies package, named by path.
DEFAULT_DETECTION_FILE = Path(__file__).resolve().parent.parent / "policies" / "detection.toml"


class Settings(BaseSettings):
    """Vault settings; every path defaults to a place under ``data_dir``."""

    # Errors never echo the input: it may hold the SMTP password.
    model_config = SettingsConfigDict(
        env_prefix="VAULT_", extra="ignore", hide_input_in_errors=True
    )

    data_dir: Path = Field(default=Path("./var"))
    # Empty means "the embedded SQLite file under data_dir".
    database_url: str = ""
    # The key file lives outside the database (Art 22 "stored separately").
    key_file: Path | None = None
    # A passphrase sealing the key file (scrypt + AES-GCM), or a file holding it; without
    # either, an interactive command asks for it. Never logged, never in a message.
    key_passphrase: SecretStr = SecretStr("")
    key_passphrase_file: Path | None = None
    # Where the KEKs, the audit MAC key and the checkpoint signing key live: the key file,
    # or a PKCS#11 token (an HSM) that uses them without ever giving them out (vault.hsm).
    key_provider: Literal["file", "pkcs11"] = "file"
    pkcs11_library: Path | None = None  # the HSM vendor's PKCS#11 module (.so)
    pkcs11_token_label: str = Field(default="", max_length=32)
    # The user PIN, or a file holding it (mode 0600): never logged, never in a message.
    pkcs11_pin: SecretStr = SecretStr("")
    pkcs11_pin_file: Path | None = None
    schema_file: Path = DEFAULT_SCHEMA_FILE
    # PostgreSQL: the NOLOGIN role the service's login is made a member of. Empty means
    # "<database>_app", one per vault database, so a shared cluster's vaults never
    # share a role (a member of one vault's role gets no rights in another's).
    app_role: str = Field(default="", pattern=r"^([a-z_][a-z0-9_]{0,62})?$")
    # Leak detection's rules and thresholds; checked at start-up (a bad file stops it).
    detection_file: Path = DEFAULT_DETECTION_FILE

    # Limits: bad input is refused with a clear message, never half-stored.
    max_field_chars: int = Field(default=2000, ge=1)
    max_import_bytes: int = Field(default=2 * 1024**3, ge=1)
    max_attachment_bytes: int = Field(default=256 * 1024**2, ge=1)
    # Attachment bytes one user may upload per UTC day (counted in the database).
    upload_quota_bytes_per_day: int = Field(default=1024**3, ge=1)
    attachment_chunk_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024**2)
    default_retention_years: int = Field(default=10, ge=1, le=100)
    # Blind-index sizing (CipherSweet rule): fixed at ``init`` so indexes stay
    # comparable; an estimate of how many archives the vault will hold.
    expected_archives: int = Field(default=100_000, ge=100)
    index_min_candidates: int = Field(default=2, ge=1)

    # Audit checkpoints: the service signs at most this long after any append, so a
    # cut tail is caught by a signature; anything else signs every N entries or T
    # seconds, whichever comes first (and CLI commands at their end).
    audit_checkpoint_delay_seconds: float = Field(default=1.0, gt=0, le=60)
    audit_checkpoint_every_entries: int = Field(default=1000, ge=1)
    audit_checkpoint_every_seconds: float = Field(default=300.0, gt=0)
    # PostgreSQL's append queue: `audit verify` raises the alarm when an entry has
    # waited this long for the sequencer (no service or command running it).
    audit_queue_alarm_seconds: float = Field(default=60.0, gt=0)
    # The checkpoint origin line; empty means archive-vault/audit/<vault_id>.
    audit_origin: str = ""

    # API and authentication.
    token_ttl_minutes: int = Field(default=15, ge=1, le=24 * 60)
    login_max_failures: int = Field(default=5, ge=1)
    login_lock_minutes: int = Field(default=15, ge=1)
    login_delay_seconds: float = Field(default=0.5, ge=0)
    # Failed logins from one client address before it must wait (any usernames).
    login_address_max_failures: int = Field(default=30, ge=1)
    login_address_window_seconds: float = Field(default=300.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Web pages: a session ends after this long unused, and this long after sign-in
    # whatever happens; cookies are marked Secure when the service is served over TLS.
    web_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)
    web_absolute_hours: int = Field(default=12, ge=1, le=7 * 24)
    web_secure_cookies: bool = False

    # Grades of important clients (篇七: two or more contacts in the company). A setting
    # rather than part of the profile schema: the schema configures content, this
    # configures a rule on who serves the customer. ``VAULT_IMPORTANT_GRADES='["A","B"]'``.
    important_grades: list[str] = Field(default_factory=lambda: ["A"])

    # Leak cases' legal clocks (PIPL Art 57, policies.leak_duties): hours from when the
    # handlers became aware that customers' personal information was affected until the
    # regulator, and the individuals, must have been notified. Applied when a case's
    # duties are recorded; a case keeps the deadlines it was given.
    leak_regulator_hours: float = Field(default=4.0, gt=0, le=24 * 30)
    leak_individuals_hours: float = Field(default=72.0, gt=0, le=24 * 90)
    # Who affected people contact, as printed in the leak notice (an office, a phone
    # number, an address: the company's, never a customer's).
    leak_notice_contact: str = Field(default="", max_length=300)

    # Watching the service: the level of its JSON log lines on stderr, and the client
    # addresses (IPs or networks, comma-separated) that may read GET /metrics; empty
    # means nobody. Loopback only by default: the numbers show how busy the vault is.
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    metrics_allow: str = "127.0.0.1,::1"

    import_batch: int = Field(default=1000, ge=1)
    # With N ≥ 1, rows of an import file this large or larger are validated and sealed
    # in N worker processes (vault.import_workers) while the importer wraps the DEKs
    # and writes; 0 keeps everything in the importer's process. Two by default on a
    # machine of two cores or more: with two idle cores a 100,000-archive import took
    # 20-22 s against 28-29 s in one process; on cores busy with other work the
    # workers' extra CPU (pickling, two more interpreters) made it slower instead.
    import_workers: int = Field(default_factory=lambda: _default_import_workers(), ge=0, le=8)
    import_parallel_bytes: int = Field(default=8 * 1024**2, ge=0)
    rotate_batch: int = Field(default=2000, ge=1)
    # The inspection (Art 14): archives checked per batch, and how many days may pass
    # before the next one is due (half a year; the sweep and `inspect --due` warn).
    inspect_batch: int = Field(default=200, ge=1, le=10_000)
    inspect_every_days: int = Field(default=183, ge=1, le=366)

    # Notifications by mail (policies.notifications): off while smtp_host is empty.
    # Mails carry ids, archive numbers, usernames and a link under public_url only.
    smtp_host: str = Field(default="", max_length=253, pattern=r"^[A-Za-z0-9.:\[\]-]*$")
    smtp_port: int = Field(default=587, ge=1, le=65535)
    # "none" sends in the clear, so only to a relay on this machine.
    smtp_tls: Literal["starttls", "tls", "none"] = "starttls"
    smtp_sender: str = ""
    smtp_username: str = Field(default="", max_length=256)
    smtp_password: SecretStr = SecretStr("")
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    # Attempts before a mail is given up as failed (retries back off: 1 min, 5, 30, 2 h, 12 h…).
    smtp_max_attempts: int = Field(default=8, ge=1, le=20)
    public_url: str = ""

    @field_validator("important_grades", mode="after")
    @classmethod
    def _grades(cls, value: list[str]) -> list[str]:
        unknown = [g for g in value if g not in ("A", "B", "C", "D")]
        if unknown:
            raise ValueError(f"important_grades are among A, B, C, D, not {', '.join(unknown)}")
        return list(dict.fromkeys(value))

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("metrics_allow", mode="after")
    @classmethod
    def _metrics_allow(cls, value: str) -> str:
        """Each part an IP address or network; ``*`` or a name is refused, not guessed."""
        parts = [p.strip() for p in value.split(",") if p.strip()]
        for part in parts:
            try:
                ipaddress.ip_network(part, strict=False)
            except ValueError:
                raise ValueError(
                    f"metrics_allow: {part[:60]!r} is not an IP address or network"
                ) from None
        return ",".join(parts)

    @property
    def metrics_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(
            ipaddress.ip_network(p, strict=False) for p in self.metrics_allow.split(",") if p
        )

    @field_validator("data_dir", mode="after")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        return value.expanduser().resolve()

    @field_validator("public_url", mode="after")
    @classmethod
    def _public_url(cls, value: str) -> str:
        return check_public_url(value)

    @model_validator(mode="after")
    def _mail(self) -> Self:
        if not self.smtp_host:
            return self
        if self.smtp_tls == "none" and self.smtp_host not in LOCAL_HOSTS:
            raise ValueError(
                "smtp_tls 'none' sends mail and the SMTP password in the clear: it is allowed "
                f"only for a relay on this machine ({', '.join(sorted(LOCAL_HOSTS))}); use "
                "'starttls' or 'tls'"
            )
        if not self.smtp_sender:
            raise ValueError("smtp_sender is required when smtp_host is set")
        self.smtp_sender = check_email(self.smtp_sender)
        return self

    @property
    def mail_enabled(self) -> bool:
        return bool(self.smtp_host)

    @cached_property
    def resolved_key_file(self) -> Path:
        return (self.key_file or self.data_dir / "keys" / "keyring.json").expanduser().resolve()

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'vault.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.resolved_database_url.startswith("sqlite")


def _default_import_workers() -> int:
    """Two import workers where there is a second core for them, else none."""
    return 2 if (os.cpu_count() or 1) >= 2 else 0
