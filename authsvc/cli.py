"""The ``authsvc`` command line (CONTRACT §1).

Every command takes ``--homepath``, ``--config`` and ``cfg:SECTION.KEY=VALUE``
arguments after its command words and reads the same configuration as
``serve``. A bad config is one line per problem on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from authsvc import __version__
from authsvc.config import ROLES, ConfigError, Settings, load_settings
from authsvc.db import MigrationError
from authsvc.durations import parse_duration
from authsvc.logs import request_id
from authsvc.plugins import PluginError, StartupError

EXIT_CONFIG = 1


_OVERRIDES = (
    "Any config value can be overridden after the command words: cfg:SECTION.KEY=VALUE "
    "(e.g. cfg:server.http_port=9090), or cfg:default.SECTION.KEY=VALUE for a default "
    "below the custom file; AUTHSVC_<SECTION>_<KEY> in the environment does the same."
)


def _claim_option(p: argparse.ArgumentParser) -> None:
    """``--claim K=V`` (repeatable), read by ``dev_keys.parse_claim``."""
    p.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="K=V",
        help="extra claim; V is parsed as JSON when it can be",
    )


def _common(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _OVERRIDES
    parser.add_argument("--homepath", metavar="DIR", help="directory holding conf/defaults.ini")
    parser.add_argument("--config", metavar="FILE", help="custom ini (default conf/custom.ini)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="authsvc",
        description="Verifies JWTs for the services behind it. "
        "Config overrides: cfg:SECTION.KEY=VALUE or cfg:default.SECTION.KEY=VALUE.",
    )
    parser.add_argument("--version", action="version", version=f"authsvc {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("serve", help="run the service")
    _common(p)
    p.set_defaults(func=_serve)

    p = sub.add_parser(
        "check-config",
        help="validate the configuration and build every key as serve would; print every problem",
    )
    _common(p)
    p.add_argument(
        "--online", action="store_true", help="also fetch every JWKS URL and discovery document"
    )
    p.set_defaults(func=_check_config)

    dev = sub.add_parser("dev", help="development helpers").add_subparsers(
        dest="dev_command", required=True, metavar="WHAT"
    )
    p = dev.add_parser("keys", help="make a local signing key pair and JWKS under [paths] data")
    _common(p)
    p.set_defaults(func=_dev_keys)
    p = dev.add_parser("token", help="mint a token signed with the dev key")
    _common(p)
    p.add_argument("--sub", required=True, help="the token's subject")
    _claim_option(p)
    p.add_argument(
        "--ttl",
        default="1h",
        help="lifetime, e.g. 10m, 1h (default 1h); negative (--ttl=-5m) mints a token that "
        "expired that long ago, to try the doctor",
    )
    p.set_defaults(func=_dev_token)

    token = sub.add_parser("token", help="token tools").add_subparsers(
        dest="token_command", required=True, metavar="WHAT"
    )
    p = token.add_parser("inspect", help="decode and verify a token: the JWT doctor")
    _common(p)
    p.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    p.add_argument(
        "--issuer", metavar="NAME", help="verify with this issuer instead of routing by iss"
    )
    p.set_defaults(func=_token_inspect)

    assertion = sub.add_parser("assertion", help="outbound assertions").add_subparsers(
        dest="assertion_command", required=True, metavar="WHAT"
    )
    p = assertion.add_parser(
        "mint",
        help="print an [assertion.NAME] JWT (machine to machine: iss = sub = the client id)",
    )
    _common(p)
    p.add_argument("name", metavar="NAME", help="the [assertion.NAME] section")
    p.add_argument(
        "--subject", metavar="S", help="sub (default: the section's subject, else its issuer)"
    )
    _claim_option(p)
    p.add_argument("--ttl", metavar="D", help="lifetime, e.g. 5m (default: the section's)")
    p.set_defaults(func=_assertion_mint)

    users = sub.add_parser("users", help="user administration").add_subparsers(
        dest="users_command", required=True, metavar="WHAT"
    )
    p = users.add_parser("list", help="list users")
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_admin(_users_list))
    for name, helptext in (
        ("show", "show one user"),
        ("disable", "disable a user (effective on its next request, sessions included)"),
        ("enable", "enable a user"),
    ):
        p = users.add_parser(name, help=helptext)
        _common(p)
        p.add_argument("login")
        p.set_defaults(func=_admin(_users_change), action=name)
    p = users.add_parser("create", help="create a user before its first login")
    _common(p)
    p.add_argument("login")
    p.add_argument("--email", default="")
    p.add_argument("--name", default="")
    p.add_argument("--role", choices=ROLES, default=None, help="default [users] auto_assign_role")
    p.add_argument("--server-admin", action="store_true", help="make it a server admin")
    p.add_argument("--issuer", metavar="NAME", help="link it to this issuer's --subject")
    p.add_argument("--subject", metavar="SUB", help="the token sub that signs in as it")
    p.set_defaults(func=_admin(_users_create))
    p = users.add_parser("link", help="let an issuer's subject sign in as a user")
    _common(p)
    p.add_argument("login")
    p.add_argument("--issuer", metavar="NAME", required=True)
    p.add_argument("--subject", metavar="SUB", required=True)
    p.set_defaults(func=_admin(_users_link))
    p = users.add_parser("delete", help="delete a user, its links and its sessions")
    _common(p)
    p.add_argument("login")
    p.set_defaults(func=_admin(_users_delete))
    p = users.add_parser("set-role", help="set a user's role")
    _common(p)
    p.add_argument("login")
    p.add_argument("role", choices=ROLES)
    p.set_defaults(func=_admin(_users_change), action="set-role")
    p = users.add_parser("set-server-admin", help="grant or revoke the server-admin flag")
    _common(p)
    p.add_argument("login")
    p.add_argument("value", choices=("true", "false"))
    p.set_defaults(func=_admin(_users_change), action="set-server-admin")

    sessions = sub.add_parser("sessions", help="session administration").add_subparsers(
        dest="sessions_command", required=True, metavar="WHAT"
    )
    p = sessions.add_parser("list", help="list sessions")
    _common(p)
    p.add_argument("--user", metavar="LOGIN")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_admin(_sessions_list))
    p = sessions.add_parser("revoke", help="revoke sessions")
    _common(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="LOGIN")
    who.add_argument("--id", metavar="ID")
    p.set_defaults(func=_admin(_sessions_revoke))
    return parser


def _settings(ns: argparse.Namespace) -> Settings:
    return load_settings(ns.homepath, ns.config, ns.cfg_args)


def _check_config(ns: argparse.Namespace) -> int:
    from authsvc.checks import check_keys

    settings = _settings(ns)
    problems, notes = check_keys(settings, online=ns.online)
    for problem in problems:
        print(problem, file=sys.stderr)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    if problems:
        return EXIT_CONFIG
    print(f"ok: {', '.join(str(f) for f in settings.config_files)}")
    return 0


def _serve(ns: argparse.Namespace) -> int:
    from authsvc.server import serve

    return serve(_settings(ns), ns.homepath, ns.config, ns.cfg_args)


def _dev_keys(ns: argparse.Namespace) -> int:
    from authsvc.dev_keys import JWKS_FILE, dev_dir, make_keys

    try:
        settings = _settings(ns)
    except ConfigError as exc:
        # A quickstart config names the very files this command makes: "file not found"
        # for them is no reason to refuse making them.
        made = exc.settings
        if made is None or not all(
            str(dev_dir(made.paths.data) / JWKS_FILE) in p for p in exc.problems
        ):
            raise
        settings = made
    private, jwks = make_keys(settings.paths.data)
    print(f"private key: {private}\npublic JWKS: {jwks}")
    print(f"point [auth.jwt] jwk_set_file at {jwks}")
    return 0


def _dev_token(ns: argparse.Namespace) -> int:
    from authsvc.dev_keys import mint_token, parse_claim

    settings = _settings(ns)
    claims = dict(parse_claim(c) for c in ns.claim)
    ttl = ns.ttl.strip()
    seconds = -parse_duration(ttl[1:]) if ttl.startswith("-") else parse_duration(ttl)
    print(mint_token(settings.paths.data, ns.sub, claims, seconds))
    return 0


def _assertion_mint(ns: argparse.Namespace) -> int:
    from authsvc.dev_keys import parse_claim
    from authsvc.signing import build_assertion

    outbound = build_assertion(_settings(ns), ns.name)
    claims = dict(parse_claim(c) for c in ns.claim)
    ttl = parse_duration(ns.ttl) if ns.ttl is not None else None
    print(outbound.mint(ns.subject, claims, ttl).token)
    return 0


def _token_inspect(ns: argparse.Namespace) -> int:
    from authsvc.doctor import inspect_token

    token = sys.stdin.read().strip() if ns.token == "-" else ns.token  # noqa: S105
    report, ok = inspect_token(_settings(ns), token, ns.issuer)
    print(report)
    return 0 if ok else 2


def _admin(command: Callable[[argparse.Namespace, Any], int]) -> Callable[..., int]:
    """Run an admin command on the service without identity providers (admin commands
    never contact one), closed when the command is done."""

    def run(ns: argparse.Namespace) -> int:
        from authsvc.app import create_app

        settings = _settings(ns)
        app = create_app(settings, migrate_schema=True, background=False, identity_providers=False)
        svc = app.extensions["authsvc"]
        try:
            return command(ns, svc)
        finally:
            svc.close()

    return run


def _print_users(users: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps(users, indent=2))
        return
    print(f"{'ID':>5}  {'LOGIN':<24} {'EMAIL':<30} {'ROLE':<7} ADMIN DISABLED")
    for u in users:
        print(
            f"{u['id']:>5}  {u['login']:<24} {u['email']:<30} {u['role']:<7} "
            f"{'yes' if u['isServerAdmin'] else 'no':<5} {'yes' if u['disabled'] else 'no'}"
        )


def _users_list(ns: argparse.Namespace, svc: Any) -> int:
    from authsvc.users import admin_json, search_users

    with svc.db() as db:
        _total, users = search_users(db, "", 1, 1_000_000)
        _print_users([admin_json(u) for u in users], ns.json)
    return 0


def _users_change(ns: argparse.Namespace, svc: Any) -> int:
    from authsvc.users import admin_json, find_user, update_user

    with svc.db.begin() as db:
        user = find_user(db, ns.login)
        if user is None:
            print(f"authsvc: no user with login {ns.login!r}", file=sys.stderr)
            return 1
        actions: dict[str, dict[str, Any]] = {
            "show": {},
            "disable": {"disabled": True},
            "enable": {"disabled": False},
            "set-role": {"role": getattr(ns, "role", None)},
            "set-server-admin": {"is_server_admin": getattr(ns, "value", "") == "true"},
        }
        changes = actions[ns.action]
        if changes:
            update_user(db, user, clock=svc.clock, **changes)
        print(json.dumps(admin_json(user), indent=2))
    if changes:
        svc.audit("admin_change", user=user.login, actor=_actor(), changes=changes)
    return 0


def _actor() -> str:
    """Who ran an admin command, for the audit log."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


def _users_create(ns: argparse.Namespace, svc: Any) -> int:
    from authsvc.errors import UserConflict
    from authsvc.users import NewUser, admin_json, create_user

    if bool(ns.issuer) != bool(ns.subject):
        print("authsvc: --issuer and --subject go together", file=sys.stderr)
        return 1
    new = NewUser(
        login=ns.login,
        email=ns.email,
        name=ns.name,
        role=ns.role or svc.settings.users.auto_assign_role,
        is_server_admin=ns.server_admin,
        links=((ns.issuer, ns.subject),) if ns.issuer else (),
    )
    try:
        with svc.db.begin() as db:
            user = create_user(db, new, clock=svc.clock)
            print(json.dumps(admin_json(user), indent=2))
    except (ValueError, UserConflict) as exc:
        print(f"authsvc: {getattr(exc, 'reason', '') or exc}", file=sys.stderr)
        return 1
    svc.audit("admin_change", user=ns.login, actor=_actor(), changes={"created": _as_dict(new)})
    return 0


def _as_dict(new: Any) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(new)


def _users_link(ns: argparse.Namespace, svc: Any) -> int:
    from authsvc.errors import UserConflict
    from authsvc.users import find_user, link_user

    try:
        with svc.db.begin() as db:
            user = find_user(db, ns.login)
            if user is None:
                print(f"authsvc: no user with login {ns.login!r}", file=sys.stderr)
                return 1
            link_user(db, user, ns.issuer, ns.subject, clock=svc.clock)
    except (ValueError, UserConflict) as exc:
        print(f"authsvc: {getattr(exc, 'reason', '') or exc}", file=sys.stderr)
        return 1
    print(f"linked {ns.issuer}/{ns.subject} to {ns.login}")
    changes = {"linked": {"issuer": ns.issuer, "subject": ns.subject}}
    svc.audit("admin_change", user=ns.login, actor=_actor(), changes=changes)
    return 0


def _users_delete(ns: argparse.Namespace, svc: Any) -> int:
    from authsvc.users import find_user

    with svc.db() as db:
        user = find_user(db, ns.login)
        if user is None:
            print(f"authsvc: no user with login {ns.login!r}", file=sys.stderr)
            return 1
        user_id = user.id
    svc.sessions.revoke_user(user_id)
    with svc.db.begin() as db:
        doomed = find_user(db, user_id)
        if doomed is not None:
            db.delete(doomed)
    print(f"deleted user {ns.login} (id {user_id}), its links and its sessions")
    svc.audit("admin_change", user=ns.login, actor=_actor(), changes={"deleted": True})
    return 0


def _sessions_list(ns: argparse.Namespace, svc: Any) -> int:
    from authsvc.users import find_user

    user_id = None
    if ns.user:
        with svc.db() as db:
            user = find_user(db, ns.user)
            if user is None:
                print(f"authsvc: no user with login {ns.user!r}", file=sys.stderr)
                return 1
            user_id = user.id
    records = [r.to_json() for r in svc.sessions.store.list(user_id)]
    logins = _logins(svc, {r["userId"] for r in records})
    for r in records:
        r["login"] = logins.get(r["userId"], "")
    if ns.json:
        print(json.dumps(records, indent=2))
    else:
        print(f"{'ID':<26} {'LOGIN':<24} {'ISSUER':<12} {'CREATED':<20} {'EXPIRES':<20} CLIENT")
        for r in records:
            print(
                f"{r['id']:<26} {r['login']:<24} {r['issuer']:<12} {_when(r['createdAt']):<20} "
                f"{_when(r['expiresAt']):<20} {r['clientIp']}"
            )
    return 0


def _logins(svc: Any, user_ids: set[int]) -> dict[int, str]:
    from sqlalchemy import select

    from authsvc.models import User

    if not user_ids:
        return {}
    with svc.db() as db:
        rows = db.execute(select(User.id, User.login).where(User.id.in_(user_ids)))
        return {row[0]: row[1] for row in rows}


def _sessions_revoke(ns: argparse.Namespace, svc: Any) -> int:
    from authsvc.users import find_user

    store = svc.sessions.store
    if ns.id:
        record = next((r for r in store.list() if r.id == ns.id), None)
        if record is None or not svc.sessions.revoke(ns.id):
            print(f"authsvc: no session with id {ns.id!r}", file=sys.stderr)
            return 1
        print(f"revoked session {ns.id}")
        login = _logins(svc, {record.user_id}).get(record.user_id, "")
        svc.audit("session_revoked", user=login, issuer=record.issuer, actor=_actor())
        return 0
    with svc.db() as db:
        user = find_user(db, ns.user)
        if user is None:
            print(f"authsvc: no user with login {ns.user!r}", file=sys.stderr)
            return 1
        user_id = user.id
    count = svc.sessions.revoke_user(user_id)
    print(f"revoked {count} session(s) of {ns.user}")
    svc.audit("session_revoked", user=ns.user, actor=_actor(), changes={"count": count})
    return 0


def _when(ts: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    cfg_args = [a for a in args if a.startswith("cfg:")]
    ns = _build_parser().parse_args([a for a in args if not a.startswith("cfg:")])
    ns.cfg_args = cfg_args
    func: Callable[[argparse.Namespace], int] = ns.func
    request_id.set("-")  # a command is no request: its log and audit lines say so
    try:
        return func(ns)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        for warning in exc.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return EXIT_CONFIG
    except (
        FileExistsError,
        FileNotFoundError,
        ValueError,
        StartupError,
        PluginError,
        MigrationError,
    ) as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
