"""``lookup_only``: the user must already exist (linked, or adoptable); nobody is signed up."""

from __future__ import annotations

from authsvc.errors import SignupDisabled
from authsvc.identity import Identity
from authsvc.models import User
from authsvc.plugins import PluginContext
from authsvc.provisioning.base import find
from authsvc.users import UserStore


class LookupOnlyProvisioner:
    # A linked user whose token changes nothing needs no provisioning: the hot
    # path may answer from one read (authn.service.AuthnService.resolve).
    trusts_linked_users = True

    def __init__(self, section: str) -> None:
        self.section = section

    @classmethod
    def from_config(cls, context: PluginContext) -> LookupOnlyProvisioner:
        return cls(context.section)

    def provision(self, identity: Identity, users: UserStore) -> User:
        user = find(identity, users)
        if user is None:
            raise SignupDisabled(
                f"no user is linked to subject {identity.subject!r} (login {identity.login!r}) "
                f"and sign-up is off ([{self.section}] auto_sign_up = false)"
            )
        return user
