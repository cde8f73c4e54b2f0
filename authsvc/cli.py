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
from authsvc.config import ConfigError, Settings, load_settings
from authsvc.db import MigrationError
from authsvc.durations import parse_duration
from authsvc.plugins import PluginError, StartupError

EXIT_CONFIG = 1


def _common(parser: argparse.ArgumentParser) -> None:
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

    p = sub.add_parser("check-config", help="validate the configuration, print every problem")
    _common(p)
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
    p.add_argument(
        "--claim",
        action="append",
        default=[],
        metavar="K=V",
        help="extra claim; V is parsed as JSON when it can be",
    )
    p.add_argument("--ttl", default="1h", help="lifetime, e.g. 10m, 1h (default 1h)")
    p.set_defaults(func=_dev_token)

    token = sub.add_parser("token", help="token tools").add_subparsers(
        dest="token_command", required=True, metavar="WHAT"
    )
    p = token.add_parser("inspect", help="decode and verify a token: the JWT doctor")
    _common(p)
    p.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    p.set_defaults(func=_token_inspect)

    users = sub.add_parser("users", help="user administration").add_subparsers(
        dest="users_command", required=True, metavar="WHAT"
    )
    p = users.add_parser("list", help="list users")
    _common(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_users_list)
    for name, helptext in (
        ("show", "show one user"),
        ("disable", "disable a user (effective on its next request, sessions included)"),
        ("enable", "enable a user"),
    ):
        p = users.add_parser(name, help=helptext)
        _common(p)
        p.add_argument("login")
        p.set_defaults(func=_users_change, action=name)
    p = users.add_parser("set-role", help="set a user's role")
    _common(p)
    p.add_argument("login")
    p.add_argument("role", choices=("None", "Viewer", "Editor", "Admin"))
    p.set_defaults(func=_users_change, action="set-role")
    p = users.add_parser("set-server-admin", help="grant or revoke the server-admin flag")
    _common(p)
    p.add_argument("login")
    p.add_argument("value", choices=("true", "false"))
    p.set_defaults(func=_users_change, action="set-server-admin")

    sessions = sub.add_parser("sessions", help="session administration").add_subparsers(
        dest="sessions_command", required=True, metavar="WHAT"
    )
    p = sessions.add_parser("list", help="list sessions")
    _common(p)
    p.add_argument("--user", metavar="LOGIN")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_sessions_list)
    p = sessions.add_parser("revoke", help="revoke sessions")
    _common(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="LOGIN")
    who.add_argument("--id", metavar="ID")
    p.set_defaults(func=_sessions_revoke)
    return parser


def _settings(ns: argparse.Namespace) -> Settings:
    return load_settings(ns.homepath, ns.config, ns.cfg_args)


def _check_config(ns: argparse.Namespace) -> int:
    settings = _settings(ns)
    for warning in settings.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ok: {', '.join(str(f) for f in settings.config_files)}")
    return 0


def _serve(ns: argparse.Namespace) -> int:
    from authsvc.server import serve

    return serve(_settings(ns), ns.homepath, ns.config, ns.cfg_args)


def _dev_keys(ns: argparse.Namespace) -> int:
    from authsvc.dev_keys import make_keys

    settings = _settings(ns)
    private, jwks = make_keys(settings.paths.data)
    print(f"private key: {private}\npublic JWKS: {jwks}")
    print(f"point [auth.jwt] jwk_set_file at {jwks}")
    return 0


def _dev_token(ns: argparse.Namespace) -> int:
    from authsvc.dev_keys import mint_token, parse_claim

    settings = _settings(ns)
    claims = dict(parse_claim(c) for c in ns.claim)
    print(mint_token(settings.paths.data, ns.sub, claims, parse_duration(ns.ttl)))
    return 0


def _token_inspect(ns: argparse.Namespace) -> int:
    from authsvc.doctor import inspect_token

    token = sys.stdin.read().strip() if ns.token == "-" else ns.token  # noqa: S105
    report, ok = inspect_token(_settings(ns), token)
    print(report)
    return 0 if ok else 2


def _admin_app(ns: argparse.Namespace) -> Any:
    from authsvc.app import create_app

    settings = _settings(ns)
    return create_app(settings, migrate_schema=True, background=False)


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


def _users_list(ns: argparse.Namespace) -> int:
    from authsvc.users import admin_json, search_users

    svc = _admin_app(ns).extensions["authsvc"]
    with svc.db() as db:
        _total, users = search_users(db, "", 1, 1_000_000)
        _print_users([admin_json(u) for u in users], ns.json)
    return 0


def _users_change(ns: argparse.Namespace) -> int:
    from authsvc.users import admin_json, find_user, update_user

    svc = _admin_app(ns).extensions["authsvc"]
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
    return 0


def _sessions_list(ns: argparse.Namespace) -> int:
    from authsvc.users import find_user

    svc = _admin_app(ns).extensions["authsvc"]
    user_id = None
    if ns.user:
        with svc.db() as db:
            user = find_user(db, ns.user)
            if user is None:
                print(f"authsvc: no user with login {ns.user!r}", file=sys.stderr)
                return 1
            user_id = user.id
    records = [r.to_json() for r in svc.sessions.store.list(user_id)]
    if ns.json:
        print(json.dumps(records, indent=2))
    else:
        print(f"{'ID':<26} {'USER':>5}  {'CREATED':<20} {'EXPIRES':<20} CLIENT")
        for r in records:
            print(
                f"{r['id']:<26} {r['userId']:>5}  {_when(r['createdAt']):<20} "
                f"{_when(r['expiresAt']):<20} {r['clientIp']}"
            )
    return 0


def _sessions_revoke(ns: argparse.Namespace) -> int:
    from authsvc.users import find_user

    svc = _admin_app(ns).extensions["authsvc"]
    store = svc.sessions.store
    if ns.id:
        if not store.revoke(ns.id):
            print(f"authsvc: no session with id {ns.id!r}", file=sys.stderr)
            return 1
        print(f"revoked session {ns.id}")
        return 0
    with svc.db() as db:
        user = find_user(db, ns.user)
        if user is None:
            print(f"authsvc: no user with login {ns.user!r}", file=sys.stderr)
            return 1
        user_id = user.id
    print(f"revoked {store.revoke_user(user_id)} session(s) of {ns.user}")
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
