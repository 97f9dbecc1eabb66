"""`archive-vault custodians` finds archives that break Art 22 and changes nothing;
`user disable` refuses a custodian who still keeps archives."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from tests.vault.test_cli import run


def test_custodians_are_listed_flagged_and_never_disabled_while_keeping(tmp_path: Path) -> None:
    data = tmp_path / "demo"
    run("demo", "--customers", "20", "--no-serve", data=data)
    engine = sa.create_engine(f"sqlite:///{data / 'vault.db'}")
    with engine.connect() as conn:
        kept = conn.execute(
            sa.text("SELECT archive_no, owner FROM archive WHERE classification != 'internal'")
        ).all()
        keepers = dict(
            conn.execute(
                sa.text(
                    "SELECT custodian, count(*) FROM archive WHERE custodian IS NOT NULL "
                    "GROUP BY custodian"
                )
            ).all()
        )
    assert kept, "the demo vault has secret archives"
    ok = run("custodians", data=data)
    assert "every custodian keeps Art 22" in ok.stdout
    keeper, count = next(iter(keepers.items()))
    refused = run("user", "disable", keeper, data=data, check=False)
    assert refused.returncode == 1
    assert f"custodian of {count} active archive(s)" in refused.stderr
    assert "handover" in refused.stderr
    # nor does a custodian lose the role that lets them keep archives
    dropped = run("user", "set-role", keeper, "--role", "compliance", data=data, check=False)
    assert dropped.returncode == 1
    assert f"custodian of {count} active archive(s)" in dropped.stderr
    with engine.begin() as conn:
        disabled = conn.execute(
            sa.text("SELECT disabled FROM app_user WHERE username = :u"), {"u": keeper}
        ).scalar_one()
        assert not disabled
        # an archive from before the rule: kept by its own owner
        no, owner = kept[0]
        conn.execute(
            sa.text("UPDATE archive SET custodian = :o WHERE archive_no = :n"),
            {"o": owner, "n": no},
        )
    flagged = run("custodians", "--problems", data=data, check=False)
    assert flagged.returncode == 1 and no in flagged.stdout
    assert "1 archive(s) break the custodian rule" in flagged.stderr
    engine.dispose()
