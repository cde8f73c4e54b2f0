"""The provisioner slot: find or create the User a verified Identity stands for.

Provisioners run inside the caller's transaction and never commit; they
raise the contract's errors (``user.sync.signup-disabled``,
``user.sync.conflict``). What follows — syncing a found user to the token,
refusing a disabled one, starting a session — are the caller's post-auth
steps (``authsvc.authn.steps``), the same around every provisioner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Self, runtime_checkable

from authsvc.identity import Identity
from authsvc.models import User
from authsvc.users import UserStore

if TYPE_CHECKING:
    from authsvc.plugins import PluginContext


@runtime_checkable
class UserProvisioner(Protocol):
    """A plugin in ``authsvc.provisioners``.

    Optional class attribute ``trusts_linked_users = True``: an already linked
    user whose token would change nothing is taken as is, without calling
    ``provision`` (the forward-auth fast path). Leave it out when provisioning
    decides more than that.
    """

    @classmethod
    def from_config(cls, context: PluginContext) -> Self:
        """Build the provisioner for ``context.issuer``."""

    def provision(self, identity: Identity, users: UserStore) -> User:
        """The user for ``identity``: found by its link, adopted, or created."""
        ...


def find(identity: Identity, users: UserStore) -> User | None:
    """The linked user, or an existing account adopted under ``link_existing_users``."""
    return users.linked(identity.subject) or users.adopt(identity)
