"""``auto_sign_up``: create the user and its link on first login."""

from __future__ import annotations

from authsvc.identity import Identity
from authsvc.models import User
from authsvc.plugins import PluginContext
from authsvc.provisioning.base import find
from authsvc.users import UserStore


class AutoSignUpProvisioner:
    # A linked user whose token changes nothing needs no provisioning: the hot
    # path may answer from one read (authn.service.AuthnService.resolve).
    trusts_linked_users = True

    def __init__(self, default_role: str) -> None:
        self.default_role = default_role

    @classmethod
    def from_config(cls, context: PluginContext) -> AutoSignUpProvisioner:
        return cls(context.settings.users.auto_assign_role)

    def provision(self, identity: Identity, users: UserStore) -> User:
        return find(identity, users) or users.create(identity, self.default_role)
