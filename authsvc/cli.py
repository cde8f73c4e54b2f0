"""The ``authsvc`` command line (CONTRACT §1).

Every command takes ``--homepath``, ``--config`` and ``cfg:SECTION.KEY=VALUE``
arguments after its command words and reads the same configuration as
``serve``. A bad config is one line per problem on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from authsvc import __version__
from authsvc.config import ConfigError, Settings, load_settings, parse_duration

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
        return EXIT_CONFIG
    except (FileExistsError, FileNotFoundError, ValueError) as exc:
        print(f"authsvc: {exc}", file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
