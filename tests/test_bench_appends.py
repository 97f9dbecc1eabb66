"""The pgbench report parser of ``bench/appends.py`` reads every version's throughput line.

pgbench 14 and later print one ``tps`` line, without connection setup; 13 and
earlier print two, including and excluding it. The baseline must be the rate
without connection setup whichever version runs, or the ratio would compare
the vault's writers (connected before their timed phase) against a rate that
counts connecting.
"""

from __future__ import annotations

import pytest

from bench._pgbench import PgbenchError, parse_pgbench

PG15 = """\
pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/bench-appends-x/insert.sql
scaling factor: 1
query mode: simple
number of clients: 8
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 1995
number of failed transactions: 0 (0.000%)
latency average = 7.535 ms
initial connection time = 140.265 ms
tps = 1061.760393 (without initial connection time)
"""

# pgbench 13: connection setup included first, then excluded (the one wanted).
PG13 = """\
transaction type: insert.sql
scaling factor: 1
query mode: simple
number of clients: 8
number of threads: 2
duration: 10 s
number of transactions actually processed: 9021
latency average = 8.871 ms
tps = 901.765432 (including connections establishing)
tps = 903.120001 (excluding connections establishing)
"""

BARE = "number of transactions actually processed: 50\ntps = 42.5\n"


def test_pgbench_15_without_initial_connection_time() -> None:
    r = parse_pgbench(PG15)
    assert r.tps == pytest.approx(1061.760393)
    assert r.transactions == 1995
    assert r.failed == 0
    assert r.latency_avg_ms == pytest.approx(7.535)


def test_pgbench_13_prefers_the_rate_excluding_connections() -> None:
    r = parse_pgbench(PG13)
    assert r.tps == pytest.approx(903.120001)
    assert r.transactions == 9021
    assert r.failed is None  # 13 does not print failures


def test_the_order_of_the_old_lines_does_not_matter() -> None:
    swapped = (
        "tps = 903.120001 (excluding connections establishing)\n"
        "tps = 901.765432 (including connections establishing)\n"
    )
    assert parse_pgbench(swapped).tps == pytest.approx(903.120001)


def test_a_bare_tps_line_and_an_integer_rate() -> None:
    assert parse_pgbench(BARE).tps == pytest.approx(42.5)
    assert parse_pgbench("tps = 812 (without initial connection time)\n").tps == 812.0


def test_failed_transactions_are_read() -> None:
    out = PG15.replace("failed transactions: 0 (0.000%)", "failed transactions: 7 (0.351%)")
    assert parse_pgbench(out).failed == 7


@pytest.mark.parametrize(
    "output",
    ["", "pgbench: error: connection to server failed\n", "latency average = 7.5 ms\n"],
)
def test_no_throughput_line_is_an_error(output: str) -> None:
    with pytest.raises(PgbenchError, match="no 'tps"):
        parse_pgbench(output)
