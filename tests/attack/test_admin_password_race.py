"""``user add`` decides whether the administrator may choose the password before its
transaction, then creates the account in another one.

An administrator starts ``user add puppet --role salesperson`` while the vault is still in
its first bootstrap and leaves it at the password prompt; meanwhile the first information
supervisor is made (by a colleague, honestly). He then types a password: the account is
created after the bootstrap, so its role is filed as an ordinary role request, yet it
carries the password he chose. Once the supervisor signs, he signs in as a salesperson.
The account must be refused (nothing written) when the bootstrap ended in between.
"""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from api.security import hash_password
from cli.users import _create
from policies.directory import roles_need_approval
from policies.errors import Refused
from vault.models import User
from vault.store import ArchiveStore
from vault.vault import Vault


def test_a_password_read_during_the_bootstrap_is_not_set_after_it(api_vault: Vault) -> None:
    store = ArchiveStore(api_vault)
    with Session(store.engine) as session:
        # The demo users include a supervisor: the bootstrap is over by now.
        assert roles_need_approval(session)
    with pytest.raises(Refused):
        _create(
            store,
            "puppet",
            ["salesperson"],
            hash_password("chosen by the administrator"),
            department="销售一部",
            clearance="internal",
            external=False,
            credential=None,
        )
    with Session(store.engine) as session:
        assert session.exec(select(User).where(User.username == "puppet")).first() is None
