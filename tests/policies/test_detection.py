"""The detection sweep (issue 13): volume, off-hours, secret and departing rules over the
audit log; one case per rule, account and window, with its facts; none for an
allow-listed account; the rules file checked at start-up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from dataclasses import astuple
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from api.services import Services
from audit.codec import format_time, parse_time
from audit.events import Actor, AuditAction, AuditEvent
from audit.log import AuditLog
from foundation.db import transaction
from policies.decoys import Decoys
from policies.detection import Detector
from policies.detection_cases import Alerts
from policies.detection_rules import DETECTION_FILE, load_rules, parse_rules
from policies.errors import ConfigError
from policies.leak_models import LeakCase
from policies.leaks import LeakCases
from policies.models import AccessRequest
from policies.workflow import Workflow
from vault.vault import Vault

# Wednesday 9 January 2030, 10:00 in Beijing (02:00 UTC): working hours.
WORKDAY = datetime(2030, 1, 9, 2, 0, tzinfo=UTC)
RULES: dict[str, Any] = {
    "volume": {"per_hour": 3, "per_day": 6, "baseline_floor": 1000},
    "off_hours": {"per_day": 1},
    "secret": {"per_hour": 1000, "per_day": 1000},
    "departing": {"per_day": 1000, "baseline_floor": 1000},
    "allow": {"service_accounts": ["etl.sync"]},
}


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Rig:
    """An audit log on a settable clock and a detector over it."""

    def __init__(self, vault: Vault, rules: dict[str, Any]) -> None:
        self.clock = Clock(WORKDAY)
        self.vault = vault
        self.log = AuditLog(
            engine=vault.engine, keys=vault.keys, settings=vault.settings, clock=self.clock
        )
        desk = Workflow(audit=self.log)
        checked = parse_rules(rules)
        alerts = Alerts(LeakCases(desk, vault.keys))
        decoys = Decoys(
            engine=vault.engine, desk=desk, alerts=alerts, rules=checked, clock=self.clock
        )
        self.detector = Detector(
            engine=vault.engine,
            alerts=alerts,
            decoys=decoys,
            rules=checked,
            clock=self.clock,
            sequence=self.log.integrate,
        )

    def reads(self, actor: str, numbers: range, at: datetime) -> None:
        self.clock.now = at
        with transaction(self.vault.engine) as session:
            for n in numbers:
                self.log.append(
                    session,
                    AuditEvent(
                        action=AuditAction.READ,
                        actor=Actor(actor, "salesperson"),
                        archives=(f"KH-2030-{n:06d}",),
                        groups=("contact",),
                    ),
                )

    def cases(self) -> list[LeakCase]:
        with Session(self.vault.engine) as session:
            return list(session.exec(select(LeakCase).order_by(LeakCase.id)))


@pytest.fixture
def rig(vault: Vault) -> Rig:
    return Rig(vault, RULES)


def test_volume_raises_one_case_per_window_with_its_facts(rig: Rig) -> None:
    rig.reads("zhang.wei", range(1, 5), WORKDAY)  # 4 distinct in one hour > 3
    rig.reads("zhang.wei", range(1, 3), WORKDAY + timedelta(minutes=5))  # the same again
    rig.reads("etl.sync", range(1, 30), WORKDAY)  # a known service account
    first = rig.detector.sweep()
    assert first.entries == 35 and len(first.cases) == 1
    (case,) = rig.cases()
    assert (case.rule, case.account, case.source) == ("volume_hour", "zhang.wei", "detection")
    assert case.facts["count"] == 4 and case.facts["threshold"] == 3
    assert case.facts["window"] == {
        "kind": "hour",
        "from": "2030-01-09T10:00:00+08:00",
        "to": "2030-01-09T11:00:00+08:00",
    }
    assert case.archives == [f"KH-2030-{n:06d}" for n in range(1, 5)]
    # More reads in the same hour, swept again: still one case for that window.
    rig.reads("zhang.wei", range(5, 7), WORKDAY + timedelta(minutes=20))
    assert rig.detector.sweep().cases == []
    assert rig.detector.sweep().entries == 0  # nothing new
    # Another hour of the same day: the day's count (8 > 6) is a case of its own, once.
    rig.reads("zhang.wei", range(7, 9), WORKDAY + timedelta(hours=1))
    rig.detector.sweep()
    rig.detector.sweep()
    rules = sorted((c.rule, c.facts["count"], c.facts["window"]["kind"]) for c in rig.cases())
    assert rules == [("volume_day", 8, "day"), ("volume_hour", 4, "hour")]
    assert all(c.account == "zhang.wei" for c in rig.cases())


def test_reads_outside_working_hours_raise_one_case(rig: Rig) -> None:
    evening = WORKDAY + timedelta(hours=11)  # 21:00 in Beijing
    rig.reads("li.na", range(1, 3), evening)  # 2 > 1
    rig.reads("li.na", range(1, 3), evening + timedelta(minutes=30))
    rig.reads("etl.sync", range(1, 9), evening)
    rig.reads("wang.fang", range(1, 2), evening)  # 1: not above the threshold
    rig.detector.sweep()
    (case,) = rig.cases()
    assert (case.rule, case.account) == ("off_hours", "li.na")
    assert case.facts["count"] == 2 and case.facts["threshold"] == 1
    assert case.facts["working_hours"] == "08:30-18:30"
    assert case.facts["working_days"] == [1, 2, 3, 4, 5]
    assert case.facts["window"]["from"] == "2030-01-09T00:00:00+08:00"
    # A Saturday at 10:00 is outside working days too.
    rig.reads("wang.fang", range(1, 3), WORKDAY + timedelta(days=3))
    rig.detector.sweep()
    assert [c.account for c in rig.cases() if c.rule == "off_hours"] == ["li.na", "wang.fang"]


def test_far_above_the_accounts_own_median(vault: Vault) -> None:
    rules = RULES | {
        "volume": {"per_hour": 1000, "per_day": 1000, "baseline_floor": 5, "baseline_days": 7},
        "off_hours": {"per_day": 1000},  # the week includes a weekend
    }
    rig = Rig(vault, rules)
    for day in range(1, 8):  # two a day for a week
        rig.reads("zhang.wei", range(1, 3), WORKDAY - timedelta(days=day))
    rig.reads("zhang.wei", range(1, 11), WORKDAY)  # 10: not above 5 x 2
    rig.detector.sweep()
    assert rig.cases() == []
    rig.reads("zhang.wei", range(11, 12), WORKDAY + timedelta(minutes=1))  # 11 > 10
    rig.detector.sweep()
    (case,) = rig.cases()
    assert case.rule == "volume_baseline" and case.facts["median"] == 2.0
    assert case.facts["count"] == 11 and case.facts["factor"] == 5.0


def test_a_departing_employee_reading_more_than_usual(vault: Vault) -> None:
    rules = RULES | {"departing": {"per_day": 3, "baseline_floor": 1000}}
    rig = Rig(vault, rules)
    with transaction(vault.engine) as session:
        session.add(
            AccessRequest(
                uid="R-LEAVER",
                kind="handover",
                requester="head.one",
                purpose="handover",
                reason="leaving",
                state="pending",
                expires_at=WORKDAY + timedelta(days=7),
                change={"from": "li.na", "to": "zhang.wei"},
            )
        )
    rig.reads("li.na", range(1, 5), WORKDAY)
    rig.reads("wang.fang", range(1, 5), WORKDAY + timedelta(hours=2))  # not leaving
    rig.detector.sweep()
    rules_raised = {(c.rule, c.account) for c in rig.cases()}
    assert ("departing", "li.na") in rules_raised
    assert not any(account == "wang.fang" for rule, account in rules_raised if rule == "departing")
    (departing,) = [c for c in rig.cases() if c.rule == "departing"]
    assert departing.facts["handover_pending"] is True and departing.facts["count"] == 4


def test_concurrent_sweeps_raise_one_case(rig: Rig) -> None:
    rig.reads("zhang.wei", range(1, 9), WORKDAY)
    results: list[Any] = []

    def sweep() -> None:
        results.append(rig.detector.sweep())

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.entries for r in results) == 8
    assert sorted(c.rule for c in rig.cases()) == ["volume_day", "volume_hour"]


def test_the_shipped_rules_load() -> None:
    rules = load_rules(DETECTION_FILE)
    assert rules.working(WORKDAY) and not rules.working(WORKDAY + timedelta(hours=11))
    assert rules.decoys.notify_every_minutes == 60


@pytest.mark.parametrize(
    ("data", "names"),
    [
        ({"volume": {"per_hour": 0}}, "volume.per_hour"),
        ({"volume": {"per_hour": "ten"}}, "volume.per_hour"),
        ({"volumes": {}}, "volumes"),
        ({"time": {"zone": "Mars/Olympus"}}, "time.zone"),
        ({"time": {"work_start": "8h"}}, "time.work_start"),
        ({"time": {"work_start": "19:00"}}, "time.work_end"),
        ({"time": {"work_days": [0, 8]}}, "time.work_days"),
        ({"volume": {"baseline_factor": 0.5}}, "volume.baseline_factor"),
        ({"allow": {"service_accounts": ["Robert'); DROP"]}}, "allow.service_accounts"),
    ],
)
def test_a_bad_rules_file_is_named(data: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules(data, "detection.toml")
    assert str(caught.value).startswith(f"detection.toml: {names}")


def test_a_bad_rules_file_stops_start_up(vault: Vault, tmp_path: Path) -> None:
    bad = tmp_path / "detection.toml"
    bad.write_text("[volume]\nper_hour = -1\n", encoding="utf-8")
    vault.settings.detection_file = bad
    with pytest.raises(ConfigError, match=r"volume\.per_hour"):
        Services.build(vault)
    bad.write_text("[volume\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        Services.build(vault)


def test_detect_command_checks_the_file_and_sweeps(tmp_path: Path) -> None:
    data = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VAULT_")}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env=env | extra,
            timeout=120,
        )

    assert run("init").returncode == 0
    ok = run("detect")
    assert ok.returncode == 0, ok.stderr
    assert "cases raised: 0" in ok.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("[decoys]\nnotify_every_minutes = 0\n", encoding="utf-8")
    refused = run("detect", "--check", VAULT_DETECTION_FILE=str(bad))
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "decoys.notify_every_minutes" in refused.stderr


@settings(max_examples=200, deadline=None)
@given(
    zone=st.sampled_from(["Asia/Shanghai", "Asia/Kolkata", "Asia/Kathmandu", "America/St_Johns"]),
    base=st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    seconds=st.lists(st.integers(0, 3 * 3600), min_size=1, max_size=40),
    start=st.sampled_from(["08:30", "09:00", "09:15"]),
    end=st.sampled_from(["17:45", "18:00"]),
)
def test_touches_are_those_worked_out_entry_by_entry(
    zone: str, base: datetime, seconds: list[int], start: str, end: str
) -> None:
    """The sweep works out local hour, day and working time once per minute of a batch:
    the same touches as working them out for each entry, at any offset (half and
    quarter hours included) and at every working-hours boundary."""
    rules = parse_rules({**RULES, "time": {"zone": zone, "work_start": start, "work_end": end}})
    detector = Detector(engine=None, alerts=None, decoys=None, rules=rules, clock=None)  # type: ignore[arg-type]
    rows = [
        SimpleNamespace(
            time=format_time(m),
            actor=f"u{i % 3}",
            action=AuditAction.READ.value,
            outcome="allowed",
            archives=f'["KH-{i % 5}"]',
        )
        for i, m in enumerate(base + timedelta(seconds=n) for n in sorted(seconds))
    ]
    touches, off = detector._touches(rows)
    expected: set[tuple[str, ...]] = set()
    expected_off: set[tuple[str, ...]] = set()
    for row in rows:
        at = parse_time(row.time)
        local = at.astimezone(rules.zone)
        key = (row.actor, local.strftime("%Y-%m-%dT%H"), local.strftime("%Y-%m-%d"))
        expected.add((*key, json.loads(row.archives)[0]))
        if not rules.working(at):
            expected_off.add((*key, json.loads(row.archives)[0]))
    assert {astuple(t) for t in touches} == expected
    assert {astuple(t) for t in off} == expected_off
