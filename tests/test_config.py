"""authsvc.config: Grafana's layered INI configuration, expansion, typing and blame.

Every test builds its own home path under tmp_path from the repository's
conf/defaults.ini and passes ``environ=`` explicitly, so nothing here depends on
the environment the tests run in.
"""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest
import sqlalchemy

from authsvc import config
from authsvc.config import ConfigError, Settings, env_var_name, load_settings, read_ini
from authsvc.plugins import installed_plugins

REPO = Path(__file__).resolve().parents[1]
DURATION_WHY = "expected a duration like 30s, 10m, 6h, 7d or 2w (or 0)"
BOOL_WHY = "expected a boolean: true or false (also yes/no, on/off, 1/0)"


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home path holding a copy of the repository's conf/defaults.ini."""
    home = tmp_path / "home"
    (home / "conf").mkdir(parents=True)
    shutil.copy(REPO / "conf" / "defaults.ini", home / "conf" / "defaults.ini")
    return home


@pytest.fixture
def stub_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Register plugin names that config derives but this checkout may not ship yet.

    The config only checks that a name is installed; these entry points are
    never loaded, so their target module does not exist.
    """
    site = tmp_path / "site"
    dist = site / "stub_plugins-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: stub-plugins\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[authsvc.key_providers]\n"
        "jwk_set_url = stub_plugins_absent:Keys\n"
        "[authsvc.provisioners]\n"
        "auto_sign_up = stub_plugins_absent:Provisioner\n"
    )
    monkeypatch.syspath_prepend(str(site))


def write_custom(home: Path, text: str, name: str = "conf/custom.ini") -> Path:
    path = home / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def load(
    home: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> Settings:
    return load_settings(home, config_file, args, environ=dict(env or {}))


def problems_of(
    home: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> list[str]:
    with pytest.raises(ConfigError) as excinfo:
        load(home, *args, env=env, config_file=config_file)
    return excinfo.value.problems


def only_problem(home: Path, *args: str, env: Mapping[str, str] | None = None) -> str:
    problems = problems_of(home, *args, env=env)
    assert len(problems) == 1, problems
    return problems[0]


def ini_value(tmp_path: Path, raw: str) -> str:
    """The value of ``k`` in a one-key file whose value is written as ``raw``."""
    path = tmp_path / "one.ini"
    path.write_text(f"[s]\nk = {raw}\n", encoding="utf-8")
    return read_ini(path, "one.ini")["s"]["k"].text


# --------------------------------------------------------------------------- defaults
def test_repo_defaults_ini_lists_exactly_the_schema() -> None:
    layer = read_ini(REPO / "conf" / "defaults.ini", "conf/defaults.ini")
    on_disk = {section: {k: v.text for k, v in values.items()} for section, values in layer.items()}
    assert on_disk == config.SCHEMA


def test_defaults_alone_load_cleanly(home: Path) -> None:
    settings = load(home)
    assert settings.warnings == ()
    assert settings.overrides == ()
    assert settings.config_files == (home / "conf" / "defaults.ini",)
    assert settings.server.root_url == "http://127.0.0.1:8080/"
    assert settings.database.url == f"sqlite:///{home / 'data' / 'authsvc.db'}"
    assert settings.jwt.enabled is False
    assert settings.jwt.cache_ttl == 3600
    assert settings.jwt.algorithms == tuple(config.ALGORITHMS)
    assert settings.jwt.key_provider == ""
    assert settings.jwt.user_provisioner == "lookup_only"
    assert settings.auth.session_store == "sql"


def test_missing_defaults_ini_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(tmp_path, environ={})
    assert excinfo.value.problems[0].startswith("conf/defaults.ini: cannot read")


def test_missing_config_file_is_an_error(home: Path) -> None:
    with pytest.raises(ConfigError, match=r"nowhere\.ini: config file not found"):
        load(home, config_file=home / "nowhere.ini")


def test_config_option_replaces_conf_custom_ini(home: Path, tmp_path: Path) -> None:
    write_custom(home, "[auth.jwt]\nkey_id = from-custom-ini\n")
    other = write_custom(tmp_path, "[auth.jwt]\nkey_id = from-config-option\n", "elsewhere.ini")
    settings = load(home, config_file=other)
    assert settings.jwt.key_id == "from-config-option"
    assert settings.config_files == (home / "conf" / "defaults.ini", other)


# --------------------------------------------------------------------------- layering
# Each layer sets [auth] login_cookie_name; a case enables the layers up to its own.
LAYERS = ["defaults-ini", "cfg-default-arg", "custom-file", "env", "cfg-arg"]
LAYER_ORIGINS = {
    "defaults-ini": "conf/defaults.ini",
    "cfg-default-arg": "argument cfg:default.auth.login_cookie_name",
    "custom-file": "conf/custom.ini",
    "env": "env AUTHSVC_AUTH_LOGIN_COOKIE_NAME",
    "cfg-arg": "argument cfg:auth.login_cookie_name",
}


def build_layers(
    home: Path, top: str, value: Callable[[str], str]
) -> tuple[list[str], dict[str, str]]:
    """Write every layer up to ``top``; return the cfg: arguments and the environment."""
    active = LAYERS[: LAYERS.index(top) + 1]
    args: list[str] = []
    env: dict[str, str] = {}
    if "defaults-ini" in active:
        defaults = home / "conf" / "defaults.ini"
        text = defaults.read_text()
        defaults.write_text(
            text.replace("login_cookie_name = authsvc_session", f"login_cookie_name = {value('d')}")
        )
    if "cfg-default-arg" in active:
        args.append(f"cfg:default.auth.login_cookie_name={value('default_arg')}")
    if "custom-file" in active:
        write_custom(home, f"[auth]\nlogin_cookie_name = {value('custom')}\n")
    if "env" in active:
        env["AUTHSVC_AUTH_LOGIN_COOKIE_NAME"] = value("env")
    if "cfg-arg" in active:
        args.append(f"cfg:auth.login_cookie_name={value('arg')}")
    return args, env


@pytest.mark.parametrize("top", LAYERS)
def test_each_layer_wins_over_the_previous(home: Path, top: str) -> None:
    args, env = build_layers(home, top, lambda layer: f"from_{layer}")
    expected = {
        "defaults-ini": "from_d",
        "cfg-default-arg": "from_default_arg",
        "custom-file": "from_custom",
        "env": "from_env",
        "cfg-arg": "from_arg",
    }[top]
    assert load(home, *args, env=env).auth.login_cookie_name == expected


@pytest.mark.parametrize("top", LAYERS)
def test_a_bad_value_is_blamed_on_the_layer_that_set_it(home: Path, top: str) -> None:
    # Every layer's value is bad, but only the winner's is checked and blamed.
    args, env = build_layers(home, top, lambda layer: f"bad {layer}")
    problem = only_problem(home, *args, env=env)
    assert problem.startswith(f"{LAYER_ORIGINS[top]} [auth] login_cookie_name: expected a cookie")


def test_empty_value_in_custom_file_is_skipped(home: Path) -> None:
    write_custom(home, "[auth]\nlogin_cookie_name =\n[auth.jwt]\ncache_ttl =\n")
    settings = load(home, "cfg:default.auth.login_cookie_name=from_default_arg")
    assert settings.auth.login_cookie_name == "from_default_arg"
    assert settings.jwt.cache_ttl == 3600


def test_cfg_arg_empty_value_is_applied(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nkey_id = from-custom\n")
    assert load(home, "cfg:auth.jwt.key_id=").jwt.key_id == ""


@pytest.mark.parametrize(
    "arg",
    ["auth.jwt.key_id=x", "cfg:key_id=x", "cfg:auth.jwt.key_id", "cfg:default.key_id=x"],
    ids=["no-cfg-prefix", "no-section", "no-value", "default-no-section"],
)
def test_malformed_cfg_argument_is_a_problem(home: Path, arg: str) -> None:
    assert only_problem(home, arg) == f"argument {arg!r}: expected cfg:SECTION.KEY=VALUE"


# --------------------------------------------------------------------------- environment
@pytest.mark.parametrize(
    ("section", "key", "name"),
    [
        ("auth.jwt", "cache_ttl", "AUTHSVC_AUTH_JWT_CACHE_TTL"),
        ("server", "http_port", "AUTHSVC_SERVER_HTTP_PORT"),
        ("remote_cache", "connstr", "AUTHSVC_REMOTE_CACHE_CONNSTR"),
        ("plugin.my-thing", "colour.name", "AUTHSVC_PLUGIN_MY_THING_COLOUR_NAME"),
    ],
    ids=["dotted-section", "plain", "underscore-section", "dash-section-dotted-key"],
)
def test_env_var_name(section: str, key: str, name: str) -> None:
    assert env_var_name(section, key) == name


def test_env_overrides_a_key_missing_from_every_file(home: Path) -> None:
    defaults = home / "conf" / "defaults.ini"
    text = defaults.read_text()
    assert "\ncache_ttl = 60m\n" in text
    defaults.write_text(text.replace("\ncache_ttl = 60m\n", "\n"))

    assert load(home).jwt.cache_ttl == 3600  # the schema's default fills the gap
    settings = load(home, env={"AUTHSVC_AUTH_JWT_CACHE_TTL": "5m"})
    assert settings.jwt.cache_ttl == 300
    assert settings.overrides == ("AUTHSVC_AUTH_JWT_CACHE_TTL=5m",)


def test_env_overrides_a_plugin_section_key_named_in_a_file(home: Path) -> None:
    write_custom(home, "[plugin.my-thing]\ncolour = red\n")
    settings = load(home, env={"AUTHSVC_PLUGIN_MY_THING_COLOUR": "blue"})
    assert settings.raw["plugin.my-thing"]["colour"] == "blue"
    assert settings.warnings == ()


def test_empty_env_value_is_ignored(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nkey_id = from-custom\n")
    settings = load(home, env={"AUTHSVC_AUTH_JWT_KEY_ID": "", "AUTHSVC_AUTH_JWT_CACHE_TTL": ""})
    assert settings.jwt.key_id == "from-custom"
    assert settings.jwt.cache_ttl == 3600
    assert settings.overrides == ()


def test_env_value_is_expanded(home: Path) -> None:
    settings = load(home, env={"AUTHSVC_AUTH_JWT_KEY_ID": "kid-${N}", "N": "7"})
    assert settings.jwt.key_id == "kid-7"


@pytest.mark.parametrize(
    ("section", "key", "value", "secret"),
    [
        ("auth.jwt", "hmac_secret", "hm@c-s3cret-value", "hm@c-s3cret-value"),
        ("auth.jwt", "key_value", "a2V5LXZhbHVlLXNlY3JldA==", "a2V5LXZhbHVlLXNlY3JldA=="),
        ("auth.jwt", "jwk_set_value", "andrcy12YWx1ZS1zZWNyZXQ=", "andrcy12YWx1ZS1zZWNyZXQ="),
        ("database", "url", "postgres://svc:db-pa55word@db.example:5432/authsvc", "db-pa55word"),
        ("remote_cache", "connstr", "addr=cache:6379,password=redis-pa55word", "redis-pa55word"),
    ],
    ids=["hmac_secret", "key_value", "jwk_set_value", "database-url", "redis-connstr"],
)
def test_secret_looking_values_are_redacted(
    home: Path, section: str, key: str, value: str, secret: str
) -> None:
    name = env_var_name(section, key)
    settings = load(home, env={name: value, "AUTHSVC_AUTH_JWT_KEY_ID": "kid-1"})
    assert set(settings.overrides) == {f"{name}=*********", "AUTHSVC_AUTH_JWT_KEY_ID=kid-1"}
    assert settings.raw[section][key] == value
    # Neither the override log nor a traceback showing the settings reveals it.
    for text in (*settings.overrides, *settings.warnings, repr(settings)):
        assert secret not in text


def test_hmac_secret_never_appears_in_clear(home: Path, tmp_path: Path) -> None:
    secret_file = tmp_path / "hmac.txt"
    secret_file.write_text("file-s3cret\n")
    write_custom(home, f"[auth.jwt]\nhmac_secret = $__file{{{secret_file}}}\n")
    settings = load(home, env={"AUTHSVC_AUTH_JWT_HMAC_SECRET": "env-s3cret"})
    assert settings.jwt.hmac_secret == "env-s3cret"
    shown = "\n".join([*settings.overrides, repr(settings), repr(settings.jwt)])
    assert "env-s3cret" not in shown
    assert "file-s3cret" not in shown


# --------------------------------------------------------------------------- INI dialect
def test_comment_lines(tmp_path: Path) -> None:
    path = tmp_path / "c.ini"
    path.write_text("; a comment\n# another\n[s]\n; k = 1\n# j = 2\nm = 3\n  # indented\n")
    assert {k: v.text for k, v in read_ini(path, "c.ini")["s"].items()} == {"m": "3"}


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("X-JWT ; note", "X-JWT"),
        ("X-JWT # note", "X-JWT"),
        ("X-JWT\t# note", "X-JWT"),
        ("a#b", "a#b"),
        ("a;b", "a;b"),
        ("a#b ; note", "a#b"),
        ('"""a ; b # c"""', "a ; b # c"),
        ('"""a ; b # c"""  ; note', "a ; b # c"),
        ("`a ; b # c`", "a ; b # c"),
        ('"quoted"', "quoted"),
        ("'single'", "single"),
        ("  padded  ", "padded"),
        ("", ""),
    ],
    ids=[
        "inline-semicolon",
        "inline-hash",
        "inline-tab-hash",
        "hash-inside-word",
        "semicolon-inside-word",
        "inside-word-then-inline",
        "triple-quoted-keeps-all",
        "triple-quoted-then-comment",
        "backquoted-keeps-all",
        "double-quoted",
        "single-quoted",
        "surrounding-space",
        "empty",
    ],
)
def test_value_rules(tmp_path: Path, raw: str, value: str) -> None:
    assert ini_value(tmp_path, raw) == value


def test_multi_line_triple_quoted_value(home: Path) -> None:
    write_custom(
        home,
        '''
        [auth.jwt]
        key_id = """first line
          ; not a comment
          # nor this = not a key

        [not.a.section]"""
        username_claim = after
        ''',
    )
    settings = load(home)
    assert settings.jwt.key_id == (
        "first line\n  ; not a comment\n  # nor this = not a key\n\n[not.a.section]"
    )
    assert settings.jwt.username_claim == "after"
    assert settings.warnings == ()


def test_keys_are_case_sensitive(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nKey_Id = upper\nkey_id = lower\n")
    settings = load(home)
    assert settings.jwt.key_id == "lower"
    assert settings.warnings == ("conf/custom.ini [auth.jwt] Key_Id: unknown key, ignored",)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ("kid-%(username_claim)s", "kid-login"),
        ("%(username_claim)s-%(email_claim)s", "login-mail"),
        ("%(groups_attribute_path)s", "login"),
        ("%(no_such_key)s", "%(no_such_key)s"),
        ("%(http_port)s", "%(http_port)s"),
        ("100%", "100%"),
    ],
    ids=["one", "two", "chained", "unknown-stays", "other-section-stays", "lone-percent"],
)
def test_interpolation_within_a_section(home: Path, raw: str, value: str) -> None:
    write_custom(
        home,
        f"""
        [auth.jwt]
        username_claim = login
        email_claim = mail
        groups_attribute_path = %(username_claim)s
        key_id = {raw}
        """,
    )
    assert load(home).jwt.key_id == value


def test_interpolation_sees_the_final_layer(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nusername_claim = login\nkey_id = kid-%(username_claim)s\n")
    settings = load(home, env={"AUTHSVC_AUTH_JWT_USERNAME_CLAIM": "sub"})
    assert settings.jwt.key_id == "kid-sub"


def test_self_reference_does_not_loop(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nkey_id = x%(key_id)s\n")
    assert load(home).jwt.key_id.startswith("x")


@pytest.mark.parametrize(
    "secret",
    ["ab%cd%(x", "p%(w)d", "%%lit", "a$b", "x${y", "q#r;s"],
    ids=[
        "percent-open-paren",
        "percent-format-d",
        "double-percent",
        "dollar",
        "open-brace",
        "hash",
    ],
)
def test_special_characters_in_a_secret_survive(home: Path, secret: str) -> None:
    write_custom(home, f"[auth.jwt]\nhmac_secret = {secret}\n")
    assert load(home).jwt.hmac_secret == secret


def test_key_outside_a_section_is_an_error(home: Path) -> None:
    write_custom(home, "key_id = x\n[auth.jwt]\n")
    problems = problems_of(home)
    assert problems == ["conf/custom.ini: line 1: a key outside any [section]: 'key_id = x'"]


# --------------------------------------------------------------------------- expansion
@pytest.mark.parametrize(
    "raw", ["${KID}", "$__env{KID}", "$__env{ KID }"], ids=["dollar-brace", "env", "env-spaces"]
)
def test_environment_expansion(home: Path, raw: str) -> None:
    write_custom(home, f"[auth.jwt]\nkey_id = pre-{raw}-post\n")
    assert load(home, env={"KID": "k1"}).jwt.key_id == "pre-k1-post"


def test_file_expansion_trims_surrounding_whitespace(home: Path, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("s3cr%et\n")
    write_custom(home, f"[auth.jwt]\nhmac_secret = $__file{{{secret_file}}}\n")
    assert load(home).jwt.hmac_secret == "s3cr%et"


def test_file_expansion_of_a_missing_file_names_it(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-secret"
    write_custom(
        home,
        f"[auth.jwt]\nenabled = true\nheader_name = X-JWT\nhmac_secret = $__file{{{missing}}}\n",
    )
    problem = only_problem(home)
    assert problem.startswith("conf/custom.ini [auth.jwt] hmac_secret: cannot read file")
    assert str(missing) in problem


@pytest.mark.parametrize("raw", ["${PORT}", "$__env{PORT}"], ids=["dollar-brace", "env"])
def test_unset_variable_is_one_problem_naming_it(home: Path, raw: str) -> None:
    write_custom(home, f"[server]\nhttp_port = {raw}\n")
    problem = only_problem(home, env={"OTHER": "1"})
    assert problem.startswith("conf/custom.ini [server] http_port: environment variable PORT")


def test_vault_is_refused(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nhmac_secret = $__vault{kv/authsvc:hmac}\n")
    problem = only_problem(home)
    assert problem.startswith("conf/custom.ini [auth.jwt] hmac_secret: $__vault{} is not supported")


def test_unknown_expansion_is_refused(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nkey_id = $__nope{x}\n")
    assert "unknown expansion $__nope{x}" in only_problem(home)


# --------------------------------------------------------------------------- typed values
@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("10m", 600),
        ("6h", 21600),
        ("7d", 604800),
        ("2w", 1209600),
        ("0", 0),
        ("1h30m", 5400),
    ],
    ids=lambda v: str(v),
)
def test_durations(home: Path, text: str, seconds: int) -> None:
    write_custom(home, f"[auth.jwt]\ncache_ttl = {text}\n")
    assert load(home).jwt.cache_ttl == seconds


@pytest.mark.parametrize(
    "text",
    ["not-a-duration", "10", "1h30", "-5s", "10 m", "5x", "m"],
    ids=["words", "no-unit", "trailing-number", "negative", "space", "bad-unit", "unit-only"],
)
def test_bad_duration_is_blamed_exactly(home: Path, text: str) -> None:
    # [auth.jwt] is not enabled: every value is validated all the same.
    write_custom(home, f"[auth.jwt]\ncache_ttl = {text}\n")
    assert only_problem(home) == f"conf/custom.ini [auth.jwt] cache_ttl: {DURATION_WHY}"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("true", True),
        ("false", False),
        ("yes", True),
        ("no", False),
        ("on", True),
        ("off", False),
        ("1", True),
        ("0", False),
        ("TRUE", True),
        ("Off", False),
    ],
    ids=lambda v: str(v),
)
def test_booleans(home: Path, text: str, value: bool) -> None:
    write_custom(home, f"[auth.jwt]\nurl_login = {text}\n")
    assert load(home).jwt.url_login is value


@pytest.mark.parametrize("text", ["maybe", "2", "enabled", "t"], ids=lambda v: v)
def test_bad_boolean(home: Path, text: str) -> None:
    write_custom(home, f"[auth.jwt]\nurl_login = {text}\n")
    assert only_problem(home) == f"conf/custom.ini [auth.jwt] url_login: {BOOL_WHY}"


@pytest.mark.parametrize(
    "text",
    ["RS256,ES256,HS256", "RS256 ES256 HS256", "RS256, ES256,  HS256", " RS256\tES256 , HS256 "],
    ids=["comma", "space", "comma-space", "mixed"],
)
def test_lists(home: Path, text: str) -> None:
    write_custom(home, f"[auth.jwt]\nalgorithms = {text}\n")
    assert load(home).jwt.algorithms == ("RS256", "ES256", "HS256")


@pytest.mark.parametrize(
    ("key", "text", "why"),
    [
        ("http_port", "eighty", "expected a whole number, got 'eighty'"),
        ("http_port", "70000", "expected a number from 0 to 65535"),
        ("root_url", "example.com", "expected an http:// or https:// URL"),
    ],
    ids=["port-not-number", "port-out-of-range", "root-url-no-scheme"],
)
def test_bad_server_values(home: Path, key: str, text: str, why: str) -> None:
    write_custom(home, f"[server]\n{key} = {text}\n")
    assert only_problem(home) == f"conf/custom.ini [server] {key}: {why}"


# --------------------------------------------------------------------------- [auth.jwt] checks
@pytest.mark.parametrize(
    "name",
    ["X JWT", "X-JWT(1)", "X-JWT:", "X-Jwt\u00e9"],
    ids=["space", "parens", "colon", "non-ascii"],
)
def test_invalid_header_name(home: Path, name: str) -> None:
    write_custom(home, f"[auth.jwt]\nheader_name = {name}\n")
    problem = only_problem(home)
    assert problem.startswith(
        "conf/custom.ini [auth.jwt] header_name: expected an HTTP header name"
    )


@pytest.mark.parametrize("name", ["X-JWT-Assertion", "Authorization", "x_jwt"])
def test_valid_header_name(home: Path, name: str) -> None:
    write_custom(home, f"[auth.jwt]\nheader_name = {name}\n")
    assert load(home).jwt.header_name == name


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{not-json", "expected a JSON object: "),
        ('["aud"]', "expected a JSON object, got list"),
        ("42", "expected a JSON object, got int"),
        ("null", "expected a JSON object, got NoneType"),
    ],
    ids=["broken", "array", "number", "null"],
)
def test_bad_expect_claims(home: Path, text: str, why: str) -> None:
    write_custom(home, f"[auth.jwt]\nexpect_claims = {text}\n")
    assert only_problem(home).startswith(f"conf/custom.ini [auth.jwt] expect_claims: {why}")


def test_expect_claims(home: Path) -> None:
    write_custom(
        home, '[auth.jwt]\nexpect_claims = {"iss": "https://idp", "aud": ["a", "b"], "x": true}\n'
    )
    assert load(home).jwt.expect_claims == {"iss": "https://idp", "aud": ["a", "b"], "x": True}


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PUBLIC KEY-----\n-----END PUBLIC KEY-----\n")
    return path


def test_two_key_sources_are_one_problem_naming_both(home: Path, key_file: Path) -> None:
    write_custom(home, f"[auth.jwt]\nkey_file = {key_file}\nhmac_secret = s3cret\n")
    problem = only_problem(home)
    assert problem.startswith("conf/custom.ini [auth.jwt] ")
    assert "only one key source" in problem
    assert "key_file" in problem.partition(": ")[2]
    assert "hmac_secret" in problem.partition(": ")[2]
    assert "s3cret" not in problem


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/jwks",
        "http://127.5.6.7/jwks",
        "http://[::1]:9000/jwks",
        "http://localhost/jwks",
        "http://LOCALHOST:1/jwks",
        "https://idp.example.com/.well-known/jwks.json",
    ],
    ids=[
        "ipv4-loopback",
        "ipv4-loopback-range",
        "ipv6-loopback",
        "localhost",
        "localhost-upper",
        "https-remote",
    ],
)
@pytest.mark.usefixtures("stub_plugins")
def test_jwk_set_url_accepted(home: Path, url: str) -> None:
    write_custom(home, f"[auth.jwt]\nenabled = true\nheader_name = X-JWT\njwk_set_url = {url}\n")
    settings = load(home)
    assert settings.jwt.jwk_set_url == (url,)
    assert settings.jwt.key_provider == "jwk_set_url"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (
            "http://idp.example.com/jwks",
            "must be https:// for the non-loopback host idp.example.com",
        ),
        ("http://localhost.evil.example/jwks", "must be https:// for the non-loopback host"),
        ("http://10.0.0.1/jwks", "must be https:// for the non-loopback host 10.0.0.1"),
        ("ftp://idp.example.com/jwks", "expected an https:// URL"),
        ("idp.example.com/jwks", "expected an https:// URL"),
    ],
    ids=["http-remote", "localhost-prefix", "http-private-ip", "ftp", "no-scheme"],
)
@pytest.mark.usefixtures("stub_plugins")
def test_jwk_set_url_refused(home: Path, url: str, why: str) -> None:
    write_custom(home, f"[auth.jwt]\njwk_set_url = {url}\n")
    assert only_problem(home).startswith(f"conf/custom.ini [auth.jwt] jwk_set_url: {why}")


@pytest.mark.parametrize(
    "key", ["key_file", "jwk_set_file", "tls_client_ca", "jwk_set_bearer_token_file"]
)
def test_missing_file_is_named(home: Path, tmp_path: Path, key: str) -> None:
    missing = tmp_path / "absent.pem"
    write_custom(home, f"[auth.jwt]\n{key} = {missing}\n")
    assert only_problem(home) == f"conf/custom.ini [auth.jwt] {key}: file not found: {missing}"


def test_relative_key_file_is_under_the_home_path(home: Path) -> None:
    (home / "keys").mkdir()
    (home / "keys" / "pub.pem").write_text("-----BEGIN PUBLIC KEY-----\n")
    write_custom(home, "[auth.jwt]\nkey_file = keys/pub.pem\n")
    assert load(home).jwt.key_file == str(home / "keys" / "pub.pem")

    write_custom(home, "[auth.jwt]\nkey_file = keys/absent.pem\n")
    assert only_problem(home) == (
        f"conf/custom.ini [auth.jwt] key_file: file not found: {home / 'keys' / 'absent.pem'}"
    )


def test_key_file_selects_its_provider(home: Path, key_file: Path) -> None:
    write_custom(home, f"[auth.jwt]\nenabled = true\nheader_name = X-JWT\nkey_file = {key_file}\n")
    assert load(home).jwt.key_provider == "key_file"


def test_configured_key_provider_wins_over_the_derived_one(home: Path, key_file: Path) -> None:
    write_custom(home, f"[auth.jwt]\nkey_file = {key_file}\nkey_provider = key_value\n")
    assert load(home).jwt.key_provider == "key_value"


@pytest.mark.parametrize(
    ("section", "key", "group"),
    [
        ("auth.jwt", "key_provider", "authsvc.key_providers"),
        ("auth.jwt", "user_provisioner", "authsvc.provisioners"),
        ("auth", "session_store", "authsvc.session_stores"),
    ],
    ids=["key_provider", "user_provisioner", "session_store"],
)
def test_unknown_plugin_lists_the_installed_names(
    home: Path, section: str, key: str, group: str
) -> None:
    write_custom(home, f"[{section}]\n{key} = no-such-plugin\n")
    installed = installed_plugins(group)
    assert installed, f"nothing installed in {group}"
    assert only_problem(home) == (
        f"conf/custom.ini [{section}] {key}: no plugin 'no-such-plugin' in entry point group "
        f"{group} (installed: {', '.join(installed)})"
    )


@pytest.mark.usefixtures("stub_plugins")
def test_auto_sign_up_selects_its_provisioner(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nauto_sign_up = true\n")
    assert load(home).jwt.user_provisioner == "auto_sign_up"


@pytest.mark.parametrize(
    "algorithms",
    ["none", "RS256 None", "NONE,HS256", "nOnE"],
    ids=["lower", "title", "upper", "mixed"],
)
def test_algorithm_none_is_refused(home: Path, algorithms: str) -> None:
    write_custom(home, f"[auth.jwt]\nalgorithms = {algorithms}\n")
    assert (
        only_problem(home) == "conf/custom.ini [auth.jwt] algorithms: 'none' can never be allowed"
    )


def test_unknown_algorithm_is_refused(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nalgorithms = RS256 HS1024\n")
    assert only_problem(home).startswith(
        "conf/custom.ini [auth.jwt] algorithms: unknown algorithm 'HS1024'"
    )


def test_empty_algorithms_is_refused(home: Path) -> None:
    problem = only_problem(home, "cfg:auth.jwt.algorithms=")
    assert problem.endswith("algorithms: expected at least one algorithm")


def test_enabled_without_a_key_source_is_refused(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nenabled = true\nheader_name = X-JWT\n")
    problem = only_problem(home)
    assert "conf/custom.ini [auth.jwt] enabled: enabled = true needs a key source" in problem
    for source in config.KEY_SOURCES:
        assert source in problem


def test_enabled_without_header_name_is_refused(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nenabled = true\nhmac_secret = s3cret\n")
    assert only_problem(home).endswith(
        "[auth.jwt] header_name: required when enabled = true (e.g. X-JWT-Assertion)"
    )


def test_bad_jmespath_is_refused(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nrole_attribute_path = contains(groups[*], \n")
    assert only_problem(home).startswith(
        "conf/custom.ini [auth.jwt] role_attribute_path: invalid JMESPath expression"
    )


# --------------------------------------------------------------------------- blame
def test_env_value_is_blamed_on_the_variable(home: Path) -> None:
    problem = only_problem(home, env={"AUTHSVC_AUTH_JWT_CACHE_TTL": "soon"})
    assert problem == f"env AUTHSVC_AUTH_JWT_CACHE_TTL [auth.jwt] cache_ttl: {DURATION_WHY}"


@pytest.mark.parametrize(
    ("arg", "origin"),
    [
        ("cfg:auth.jwt.cache_ttl=soon", "argument cfg:auth.jwt.cache_ttl"),
        ("cfg:default.auth.jwt.cache_ttl=soon", "argument cfg:default.auth.jwt.cache_ttl"),
    ],
    ids=["cfg", "cfg-default"],
)
def test_argument_value_is_blamed_on_the_argument(home: Path, arg: str, origin: str) -> None:
    assert only_problem(home, arg) == f"{origin} [auth.jwt] cache_ttl: {DURATION_WHY}"


def test_unset_variable_in_env_value_is_blamed_on_the_env_var(home: Path) -> None:
    problem = only_problem(home, env={"AUTHSVC_SERVER_HTTP_PORT": "${PORT}"})
    assert problem == (
        "env AUTHSVC_SERVER_HTTP_PORT [server] http_port: "
        "environment variable PORT is not set (in ${PORT})"
    )


def test_every_problem_is_reported_at_once(home: Path, tmp_path: Path) -> None:
    write_custom(
        home,
        f"""
        [server]
        http_port = eighty
        [auth.jwt]
        cache_ttl = not-a-duration
        expect_claims = {{not-json
        header_name = X JWT
        algorithms = RS256 none
        key_file = {tmp_path / "absent.pem"}
        user_provisioner = nope
        [database]
        type = postgres
        """,
    )
    problems = problems_of(
        home,
        "cfg:auth.jwt.require_exp=maybe",
        env={"AUTHSVC_AUTH_JWT_LEEWAY": "xx", "AUTHSVC_LOG_LEVEL": "loud"},
    )
    blamed = [p.split(": ")[0] for p in problems]  # FILE [SECTION] KEY
    assert sorted(blamed) == sorted(
        [
            "conf/custom.ini [server] http_port",
            "conf/custom.ini [auth.jwt] cache_ttl",
            "conf/custom.ini [auth.jwt] expect_claims",
            "conf/custom.ini [auth.jwt] header_name",
            "conf/custom.ini [auth.jwt] algorithms",
            "conf/custom.ini [auth.jwt] key_file",
            "conf/custom.ini [auth.jwt] user_provisioner",
            "conf/defaults.ini [database] url",
            "env AUTHSVC_AUTH_JWT_LEEWAY [auth.jwt] leeway",
            "env AUTHSVC_LOG_LEVEL [log] level",
            "argument cfg:auth.jwt.require_exp [auth.jwt] require_exp",
        ]
    )


def test_config_error_message_joins_the_problems(home: Path) -> None:
    write_custom(home, "[auth.jwt]\ncache_ttl = soon\nurl_login = maybe\n")
    with pytest.raises(ConfigError) as excinfo:
        load(home)
    assert str(excinfo.value) == "\n".join(excinfo.value.problems)
    assert len(excinfo.value.problems) == 2


# --------------------------------------------------------------------------- warnings
def test_unknown_key_is_a_warning_naming_it(home: Path) -> None:
    write_custom(home, "[auth.jwt]\ncache_tll = 5m\n")
    settings = load(home)
    assert settings.warnings == ("conf/custom.ini [auth.jwt] cache_tll: unknown key, ignored",)
    assert settings.jwt.cache_ttl == 3600


def test_unknown_section_is_a_warning_but_plugin_sections_are_not(home: Path) -> None:
    write_custom(home, "[auth.jtw]\nenabled = true\n[plugin.acme]\ncolour = red\n")
    settings = load(home)
    assert len(settings.warnings) == 1
    assert "[auth.jtw]" in settings.warnings[0]
    assert "enabled" in settings.warnings[0]
    assert settings.raw["plugin.acme"] == {"colour": "red"}


@pytest.mark.parametrize(
    ("how", "origin"),
    [
        ("custom-file", "conf/custom.ini"),
        ("cfg-default-arg", "argument cfg:default.auth.jwt.allow_assign_grafana_admin"),
        ("cfg-arg", "argument cfg:auth.jwt.allow_assign_grafana_admin"),
    ],
    ids=["custom-file", "cfg-default-arg", "cfg-arg"],
)
def test_grafana_admin_alias(home: Path, how: str, origin: str) -> None:
    args: list[str] = []
    if how == "custom-file":
        write_custom(home, "[auth.jwt]\nallow_assign_grafana_admin = true\n")
    elif how == "cfg-default-arg":
        args.append("cfg:default.auth.jwt.allow_assign_grafana_admin=true")
    else:
        args.append("cfg:auth.jwt.allow_assign_grafana_admin=true")
    settings = load(home, *args)
    assert settings.jwt.allow_assign_server_admin is True
    assert settings.warnings == (
        f"{origin} [auth.jwt] allow_assign_grafana_admin: deprecated alias, "
        "use allow_assign_server_admin",
    )


def test_grafana_admin_alias_loses_to_a_higher_layer(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nallow_assign_grafana_admin = true\n")
    settings = load(home, env={"AUTHSVC_AUTH_JWT_ALLOW_ASSIGN_SERVER_ADMIN": "false"})
    assert settings.jwt.allow_assign_server_admin is False


def test_new_name_wins_over_alias_in_the_same_file(home: Path) -> None:
    write_custom(
        home,
        "[auth.jwt]\nallow_assign_server_admin = false\nallow_assign_grafana_admin = true\n",
    )
    assert load(home).jwt.allow_assign_server_admin is False


def test_bad_alias_value_is_blamed_on_its_file(home: Path) -> None:
    write_custom(home, "[auth.jwt]\nallow_assign_grafana_admin = maybe\n")
    assert only_problem(home) == f"conf/custom.ini [auth.jwt] allow_assign_server_admin: {BOOL_WHY}"


# --------------------------------------------------------------------------- database
@pytest.mark.parametrize(
    "url",
    ["postgres://svc:pw@db.example:5432/authsvc", "postgresql://svc:pw@db.example:5432/authsvc"],
    ids=["postgres", "postgresql"],
)
def test_postgres_url_gets_an_installed_driver(home: Path, url: str) -> None:
    settings = load(home, env={"AUTHSVC_DATABASE_URL": url})
    assert settings.database.type == "postgres"
    parsed = sqlalchemy.make_url(settings.database.url)
    assert parsed.get_backend_name() == "postgresql"
    assert parsed.host == "db.example"
    assert parsed.database == "authsvc"
    assert parsed.username == "svc"
    assert parsed.password == "pw"
    # Builds the engine with the driver SQLAlchemy will use: importable, no connection made.
    engine = sqlalchemy.create_engine(parsed)
    engine.dispose()


def test_postgres_without_url_is_a_problem(home: Path) -> None:
    write_custom(home, "[database]\ntype = postgres\n")
    problem = only_problem(home)
    assert problem.startswith("conf/defaults.ini [database] url: type = postgres needs url")


@pytest.mark.parametrize(
    ("url", "why"),
    [("mysql://u@h/db", "unsupported database 'mysql'"), ("db.example/authsvc", "expected a URL")],
    ids=["mysql", "no-scheme"],
)
def test_unsupported_database_url(home: Path, url: str, why: str) -> None:
    write_custom(home, f"[database]\nurl = {url}\n")
    assert only_problem(home).startswith(f"conf/custom.ini [database] url: {why}")


def test_sqlite_path_is_relative_to_data(home: Path, tmp_path: Path) -> None:
    write_custom(home, f"[paths]\ndata = {tmp_path / 'state'}\n[database]\npath = a.db\n")
    settings = load(home)
    assert settings.database.url == f"sqlite:///{tmp_path / 'state' / 'a.db'}"
