"""The provisioner slot: turn a verified Identity into a User, inside the caller's transaction.

Provisioners never commit; they raise the contract's errors
(``user.sync.signup-disabled``, ``user.sync.conflict``) and leave
disabled-user handling to the caller, which applies it to every path.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from authsvc.identity import Identity
from authsvc.models import User
from authsvc.users import UserStore


@runtime_checkable
class UserProvisioner(Protocol):
    """Optional class attribute ``trusts_linked_users = True``: an already linked user
    whose token would change nothing is taken as is, without calling ``provision``
    (the forward-auth fast path). Leave it out when provisioning decides more."""

    def provision(self, identity: Identity, users: UserStore) -> User:
        """The user for ``identity``: found by its link (and synced), adopted, or created."""
        ...


def find_and_sync(identity: Identity, users: UserStore) -> User | None:
    """The linked user, or an existing account adopted under ``link_existing_users``; synced."""
    user = users.linked(identity.subject) or users.adopt(identity)
    if user is not None:
        users.sync(user, identity)
    return user
