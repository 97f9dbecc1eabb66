"""The detection rules file (``policies/detection.toml``): loaded and checked at start-up.

Thresholds are policy, reviewed like ``policy.csv``: a file the compliance side
can read and change without touching code. It is checked in full when the
service or ``archive-vault detect`` starts, so a typo (an unknown key, a
threshold of zero, an hour that is not one, a time zone that does not exist)
stops start-up with one line naming the file and the key, instead of silently
switching a rule off at three in the morning.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import datetime, time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from policies.errors import ConfigError

DETECTION_FILE = Path(__file__).resolve().parent / "detection.toml"
_HHMM = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TimeRules(_Part):
    zone: str = "Asia/Shanghai"
    work_start: str = "08:30"
    work_end: str = "18:30"
    work_days: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5])

    @field_validator("zone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("not a known time zone (e.g. Asia/Shanghai)") from None
        return value

    @field_validator("work_start", "work_end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not _HHMM.match(value):
            raise ValueError("a time of day as HH:MM (00:00-23:59)")
        return value

    @field_validator("work_days")
    @classmethod
    def _days(cls, value: list[int]) -> list[int]:
        if not value or any(d < 1 or d > 7 for d in value) or len(set(value)) != len(value):
            raise ValueError("distinct ISO weekdays, 1 (Monday) to 7 (Sunday)")
        return value


class VolumeRules(_Part):
    per_hour: int = Field(default=60, ge=1)
    per_day: int = Field(default=200, ge=1)
    baseline_days: int = Field(default=14, ge=1, le=90)
    baseline_factor: float = Field(default=5.0, gt=1.0, le=1000)
    baseline_floor: int = Field(default=30, ge=1)


class OffHoursRules(_Part):
    per_day: int = Field(default=5, ge=1)


class SecretRules(_Part):
    per_hour: int = Field(default=10, ge=1)
    per_day: int = Field(default=30, ge=1)


class DepartingRules(_Part):
    per_day: int = Field(default=15, ge=1)
    baseline_factor: float = Field(default=2.0, gt=1.0, le=1000)
    baseline_floor: int = Field(default=5, ge=1)


class DecoyRules(_Part):
    notify_every_minutes: int = Field(default=60, ge=1, le=7 * 24 * 60)


class AllowRules(_Part):
    service_accounts: list[str] = Field(default_factory=list)

    @field_validator("service_accounts")
    @classmethod
    def _names(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not _USERNAME.match(v)]
        if bad:
            raise ValueError(f"not a username: {bad[0][:64]!r}")
        return value


class _File(_Part):
    time: TimeRules = Field(default_factory=TimeRules)
    volume: VolumeRules = Field(default_factory=VolumeRules)
    off_hours: OffHoursRules = Field(default_factory=OffHoursRules)
    secret: SecretRules = Field(default_factory=SecretRules)
    departing: DepartingRules = Field(default_factory=DepartingRules)
    decoys: DecoyRules = Field(default_factory=DecoyRules)
    allow: AllowRules = Field(default_factory=AllowRules)


@dataclass(frozen=True, slots=True)
class DetectionRules:
    """The checked rules, with the working-hours test they imply."""

    zone: ZoneInfo
    work_start: time
    work_end: time
    work_days: frozenset[int]
    volume: VolumeRules
    off_hours: OffHoursRules
    secret: SecretRules
    departing: DepartingRules
    decoys: DecoyRules
    service_accounts: frozenset[str]

    def working(self, moment: datetime) -> bool:
        """Whether ``moment`` (aware) falls within working hours, in the rules' zone."""
        local = moment.astimezone(self.zone)
        if local.isoweekday() not in self.work_days:
            return False
        return self.work_start <= local.time() < self.work_end

    def allowed(self, account: str) -> bool:
        """A known service account: the volume-type rules leave it alone."""
        return account in self.service_accounts


def _hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def parse_rules(data: dict[str, Any], source: str = "detection rules") -> DetectionRules:
    """Rules from parsed TOML; ``ConfigError`` naming the key and what is wrong."""
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_input=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(file)"
        raise ConfigError(f"{source}: {where}: {first['msg']}") from None
    t = parsed.time
    start, end = _hhmm(t.work_start), _hhmm(t.work_end)
    if end <= start:
        raise ConfigError(f"{source}: time.work_end: must be after time.work_start")
    return DetectionRules(
        zone=ZoneInfo(t.zone),
        work_start=start,
        work_end=end,
        work_days=frozenset(t.work_days),
        volume=parsed.volume,
        off_hours=parsed.off_hours,
        secret=parsed.secret,
        departing=parsed.departing,
        decoys=parsed.decoys,
        service_accounts=frozenset(parsed.allow.service_accounts),
    )


def load_rules(path: Path = DETECTION_FILE) -> DetectionRules:
    """Read and check the rules file (``ConfigError`` if unreadable or invalid)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot be read ({exc.strerror or type(exc).__name__})"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_rules(data, str(path))
