"""The user store: find users by their link, create them, and sync them to a token.

A ``UserStore`` wraps one database transaction; provisioners call it and
never commit — the caller commits user, link and session together, or
nothing at all.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from sqlalchemy import bindparam, func, or_, select
from sqlalchemy.orm import Session as DbSession

from authsvc.config import issuer_section
from authsvc.db import RawQuery, ReadConnections
from authsvc.errors import UserConflict
from authsvc.identifiers import display_name, unique_key
from authsvc.identifiers import problem as identifier_problem
from authsvc.identity import Identity
from authsvc.models import AuthLink, User

JWT_PROVIDER = "jwt"
AUTH_MODULE = "authjwt"


@dataclass(frozen=True)
class SyncPolicy:
    """The ``[auth.jwt]`` switches that decide what a login may change on a user."""

    skip_role_sync: bool
    allow_assign_server_admin: bool
    link_existing_users: bool


class UserLike(Protocol):
    @property
    def login(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def name(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def is_server_admin(self) -> bool: ...
    @property
    def groups(self) -> Sequence[str]: ...


def pending_changes(user: UserLike, identity: Identity, policy: SyncPolicy) -> dict[str, Any]:
    """What a login with ``identity`` would change on ``user`` (empty: nothing to write)."""
    changes: dict[str, Any] = {}
    if identity.login and identity.login != user.login:
        changes["login"] = identity.login
    if identity.email and identity.email != (user.email or ""):
        changes["email"] = identity.email
    if identity.name and identity.name != user.name:
        changes["name"] = identity.name
    if not policy.skip_role_sync:
        if identity.role_from_token and identity.role != user.role:
            changes["role"] = identity.role
        if (
            policy.allow_assign_server_admin
            and identity.is_server_admin is not None
            and identity.is_server_admin != user.is_server_admin
        ):
            changes["is_server_admin"] = identity.is_server_admin
    if identity.groups_from_token and list(identity.groups) != list(user.groups or []):
        changes["groups"] = list(identity.groups)
    return changes


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user as a request sees it: a detached, read-only copy."""

    id: int
    login: str
    email: str | None
    name: str
    role: str
    is_server_admin: bool
    groups: tuple[str, ...]
    disabled: bool
    auth_module: str

    @classmethod
    def of(cls, user: User) -> UserRecord:
        return cls(
            id=user.id,
            login=user.login,
            email=user.email,
            name=user.name,
            role=user.role,
            is_server_admin=bool(user.is_server_admin),
            groups=tuple(user.groups or ()),
            disabled=bool(user.disabled),
            auth_module=user.auth_module,
        )

    def to_json(self) -> dict[str, Any]:
        """The user JSON of CONTRACT §3."""
        return {
            "id": self.id,
            "login": self.login,
            "email": self.email or "",
            "name": self.name,
            "role": self.role,
            "isServerAdmin": self.is_server_admin,
            "groups": list(self.groups),
            "authModule": self.auth_module,
        }


USER_COLUMNS = (
    "id", "login", "email", "name", "role", "is_server_admin", "groups", "disabled",
    "auth_module",
)  # fmt: skip
"""The columns a UserRecord is read from, in the order ``user_record`` takes them."""


def user_record(row: Sequence[Any]) -> UserRecord | None:
    """A UserRecord from a DB-API row of USER_COLUMNS (None for a row of NULLs: no user)."""
    if row is None or row[0] is None:
        return None
    groups = row[6]
    if isinstance(groups, (str, bytes)):
        groups = json.loads(groups)
    return UserRecord(
        id=row[0],
        login=row[1],
        email=row[2],
        name=row[3],
        role=row[4],
        is_server_admin=bool(row[5]),
        groups=tuple(groups or ()),
        disabled=bool(row[7]),
        auth_module=row[8],
    )


class UserReader:
    """Reads one user per request through RawQuery: the hot path's only query."""

    def __init__(self, reads: ReadConnections) -> None:
        users = User.__table__
        links = AuthLink.__table__
        cols = [users.c[name] for name in USER_COLUMNS]
        by_link = (
            select(*cols)
            .select_from(users.join(links, links.c.user_id == users.c.id))
            .where(
                links.c.provider == bindparam("provider"), links.c.subject == bindparam("subject")
            )
        )
        self._by_link = RawQuery(reads, by_link)
        self._by_id = RawQuery(reads, select(*cols).where(users.c.id == bindparam("id")))

    _record = staticmethod(user_record)

    def linked(self, subject: str, provider: str = JWT_PROVIDER) -> UserRecord | None:
        return self._record(self._by_link.first(provider=provider, subject=subject))

    def by_id(self, user_id: int) -> UserRecord | None:
        return self._record(self._by_id.first(id=user_id))


def auth_module(issuer: str) -> str:
    """``authModule`` of the user JSON: Grafana's ``authjwt``, or ``authjwt.NAME``."""
    return AUTH_MODULE if issuer == JWT_PROVIDER else f"{AUTH_MODULE}.{issuer}"


class UserStore:
    """User operations inside one transaction (``db``) for one issuer, timed by one clock.

    Links are (issuer name, subject): ``issuer`` is the link provider.
    """

    def __init__(
        self,
        db: DbSession,
        policy: SyncPolicy,
        clock: Callable[[], float],
        issuer: str = JWT_PROVIDER,
    ) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock
        self.issuer = issuer
        self.created: set[int] = set()
        """Ids of the users this transaction created (the sync step leaves them alone)."""

    # ---------------------------------------------------------------- lookups
    def linked(self, subject: str, provider: str | None = None) -> User | None:
        """The user linked to (provider, subject), if any; provider defaults to the issuer."""
        return self.db.scalars(
            select(User)
            .join(AuthLink, AuthLink.user_id == User.id)
            .where(AuthLink.provider == (provider or self.issuer), AuthLink.subject == subject)
        ).one_or_none()

    def holders(self, login: str, email: str) -> Sequence[User]:
        """Users already holding ``login`` or ``email``, compared by their NFKC case-fold."""
        conditions = [User.login_key == unique_key(login)]
        if email:
            conditions.append(User.email_key == unique_key(email))
        return self.db.scalars(select(User).where(or_(*conditions))).all()

    # ---------------------------------------------------------------- changes
    def create(self, identity: Identity, default_role: str) -> User:
        """A new user from ``identity``, linked to its subject."""
        self._refuse_taken(identity, owner=None)
        now = self.clock()
        user = User(
            login=identity.login,
            email=identity.email or None,
            name=identity.name,
            role=identity.role if identity.role_from_token else default_role,
            is_server_admin=bool(identity.is_server_admin),
            groups=list(identity.groups),
            disabled=False,
            auth_module=auth_module(self.issuer),
            created_at=now,
            updated_at=now,
        )
        self.db.add(user)
        self.db.flush()
        self.created.add(user.id)
        self.link(user, identity.subject)
        return user

    def link(self, user: User, subject: str, provider: str | None = None) -> None:
        self.db.add(
            AuthLink(
                user_id=user.id,
                provider=provider or self.issuer,
                subject=subject,
                created_at=self.clock(),
            )
        )
        self.db.flush()

    def adopt(self, identity: Identity) -> User | None:
        """An existing, unlinked account with the token's login or email, when that may be linked.

        With ``link_existing_users = false`` such an account is a 409 conflict,
        never a silent takeover.
        """
        holders = self.holders(identity.login, identity.email)
        if not holders:
            return None
        if not self.policy.link_existing_users or len(holders) > 1:
            raise UserConflict(self._conflict_reason(identity, holders))
        user = holders[0]
        if (
            self.db.scalar(
                select(AuthLink.id).where(
                    AuthLink.user_id == user.id, AuthLink.provider == self.issuer
                )
            )
            is not None
        ):
            raise UserConflict(
                f"login {identity.login!r} or email {identity.email!r} belongs to an account "
                f"linked to another subject, not {identity.subject!r}"
            )
        self.link(user, identity.subject)
        return user

    def sync(self, user: User, identity: Identity) -> bool:
        """Bring ``user`` in line with the token; True when anything changed (and was written)."""
        changes = pending_changes(user, identity, self.policy)
        if not changes:
            return False
        if "login" in changes or "email" in changes:
            taken = replace(
                identity, login=changes.get("login", ""), email=changes.get("email", "")
            )
            self._refuse_taken(taken, owner=user)
        for name, value in changes.items():
            setattr(user, name, value)
        user.updated_at = self.clock()
        self.db.flush()
        return True

    # ---------------------------------------------------------------- helpers
    def _refuse_taken(self, identity: Identity, owner: User | None) -> None:
        if not identity.login and not identity.email:
            return
        others = [
            u for u in self.holders(identity.login or "\x00", identity.email) if u is not owner
        ]
        if others:
            raise UserConflict(self._conflict_reason(identity, others))

    def _conflict_reason(self, identity: Identity, holders: Sequence[User]) -> str:
        """Which of the token's identifiers are taken; never whose account holds them."""
        taken = []
        if identity.login and any(u.login_key == unique_key(identity.login) for u in holders):
            taken.append(f"login {identity.login!r}")
        if identity.email and any(u.email_key == unique_key(identity.email) for u in holders):
            taken.append(f"email {identity.email!r}")
        verb = "belong" if len(taken) > 1 else "belongs"
        return (
            f"{' and '.join(taken) or 'the login or email'} {verb} to another account, "
            f"which is not linked to subject {identity.subject!r} "
            f"(set [{issuer_section(self.issuer)}] link_existing_users = true to link it)"
        )


# ------------------------------------------------------------------------ administration
# Shared by the admin API and the ``authsvc users`` commands: one way to do each thing.


def admin_json(user: User) -> dict[str, Any]:
    return {**UserRecord.of(user).to_json(), "disabled": user.disabled}


def search_users(
    db: DbSession, query: str = "", page: int = 1, per_page: int = 100
) -> tuple[int, Sequence[User]]:
    """Users whose login, email or name contains ``query`` (case-insensitive), one page."""
    where = []
    if query:
        # The query is literal text: LIKE's wildcards in it are escaped.
        escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        like = f"%{escaped}%"
        where.append(
            or_(
                func.lower(User.login).like(like, escape="\\"),
                func.lower(func.coalesce(User.email, "")).like(like, escape="\\"),
                func.lower(User.name).like(like, escape="\\"),
            )
        )
    total = db.scalar(select(func.count()).select_from(User).where(*where)) or 0
    rows = db.scalars(
        select(User).where(*where).order_by(User.id).offset((page - 1) * per_page).limit(per_page)
    ).all()
    return total, rows


@dataclass(frozen=True)
class NewUser:
    """An administrator's new user (``users create``, ``POST /api/admin/users``)."""

    login: str
    email: str = ""
    name: str = ""
    role: str = "Viewer"
    is_server_admin: bool = False
    links: tuple[tuple[str, str], ...] = ()
    """(issuer name, subject) pairs: the tokens that sign in as this user."""


def create_user(db: DbSession, new: NewUser, *, clock: Callable[[], float]) -> User:
    """A user made ahead of its first login; ValueError for a bad value, UserConflict when
    its login, email or a link is taken. The caller commits."""
    from authsvc.config import ROLES

    for what, value in (("login", new.login), ("email", new.email)):
        why = identifier_problem(value) if value or what == "login" else None
        if why is not None:
            raise ValueError(f"{what} {why}")
    if new.role not in ROLES:
        raise ValueError(f"role {new.role!r} is not one of {', '.join(ROLES)}")
    taken = db.scalars(
        select(User).where(
            or_(
                User.login_key == unique_key(new.login),
                *([User.email_key == unique_key(new.email)] if new.email else []),
            )
        )
    ).first()
    if taken is not None:
        which = "login" if taken.login_key == unique_key(new.login) else "email"
        raise UserConflict(f"{which} {getattr(new, which)!r} belongs to another account")
    now = clock()
    user = User(
        login=new.login,
        email=new.email or None,
        name=display_name(new.name),
        role=new.role,
        is_server_admin=new.is_server_admin,
        groups=[],
        disabled=False,
        auth_module="",
        created_at=now,
        updated_at=now,
    )
    db.add(user)
    db.flush()
    for issuer, subject in new.links:
        link_user(db, user, issuer, subject, clock=clock)
    return user


def link_user(
    db: DbSession, user: User, issuer: str, subject: str, *, clock: Callable[[], float]
) -> None:
    """Let ``issuer``'s tokens for ``subject`` sign in as ``user``; UserConflict when that
    subject is linked already, ValueError for a bad issuer name or subject."""
    from authsvc.config import ISSUER_NAME

    if issuer != JWT_PROVIDER and not ISSUER_NAME.match(issuer):
        raise ValueError(f"issuer {issuer!r} is not an issuer name (jwt, or [auth.jwt.NAME]'s)")
    why = identifier_problem(subject)
    if why is not None:
        raise ValueError(f"subject {why}")
    existing = db.scalar(
        select(AuthLink.user_id).where(AuthLink.provider == issuer, AuthLink.subject == subject)
    )
    if existing is not None:
        raise UserConflict(
            f"subject {subject!r} of issuer {issuer!r} is linked "
            + ("to this user already" if existing == user.id else "to another account")
        )
    db.add(AuthLink(user_id=user.id, provider=issuer, subject=subject, created_at=clock()))
    db.flush()


def find_user(db: DbSession, ref: str | int) -> User | None:
    """By id (an int) or by login (compared by NFKC case-fold, as uniqueness is)."""
    if isinstance(ref, int):
        return db.get(User, ref)
    return db.scalars(select(User).where(User.login_key == unique_key(ref))).first()


def update_user(
    db: DbSession,
    user: User,
    *,
    clock: Callable[[], float],
    disabled: bool | None = None,
    role: str | None = None,
    is_server_admin: bool | None = None,
) -> User:
    """Apply an administrator's change; the caller commits."""
    from authsvc.config import ROLES

    if role is not None and role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if disabled is not None:
        user.disabled = disabled
    if role is not None:
        user.role = role
    if is_server_admin is not None:
        user.is_server_admin = is_server_admin
    user.updated_at = clock()
    db.flush()
    return user
