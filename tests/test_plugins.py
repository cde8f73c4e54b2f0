"""authsvc.plugins: one entry-point group per slot, stevedore's semantics.

Third-party plugins are made visible without installing anything: a module
and a ``*.dist-info`` directory in a tmp_path directory put on sys.path, which
is all importlib.metadata looks at.
"""

from __future__ import annotations

import configparser
import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pytest

from authsvc.plugins import GROUPS, PluginError, installed_plugins, load_plugin

REPO = Path(__file__).resolve().parents[1]
GROUP = "authsvc.key_providers"


def builtin_entry_points() -> list[tuple[str, str]]:
    """(group, name) of every plugin setup.cfg registers for our slots."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment, method-assign]
    parser.read(REPO / "setup.cfg", encoding="utf-8")
    found = []
    for group, lines in parser.items("options.entry_points"):
        if group not in GROUPS:
            continue
        for line in filter(None, (line.strip() for line in lines.splitlines())):
            found.append((group, line.partition("=")[0].strip()))
    return found


BUILTINS = builtin_entry_points()

MakeDist = Callable[..., Path]


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeDist]:
    """Make a distribution visible to importlib.metadata, without installing it.

    ``make_dist(name, {group: {plugin: "module:attr"}}, {module: source}, where=dir)``
    writes ``where/NAME-1.0.dist-info`` (METADATA, entry_points.txt, which may
    also be given as its text) and each module beside it; every ``where`` is
    put on sys.path. Modules written here are dropped from sys.modules
    afterwards so tests cannot see each other's.
    """
    modules: list[str] = []
    on_path: set[Path] = set()

    def make(
        name: str,
        entry_points: Mapping[str, Mapping[str, str]] | str,
        sources: Mapping[str, str] | None = None,
        where: Path | None = None,
    ) -> Path:
        site = where or tmp_path / "site"
        info = site / f"{name.replace('-', '_')}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
        if not isinstance(entry_points, str):
            entry_points = "".join(
                f"[{group}]\n" + "".join(f"{ep} = {target}\n" for ep, target in eps.items())
                for group, eps in entry_points.items()
            )
        (info / "entry_points.txt").write_text(entry_points)
        for module, source in (sources or {}).items():
            (site / f"{module}.py").write_text(source)
            modules.append(module)
        if site not in on_path:
            monkeypatch.syspath_prepend(str(site))
            on_path.add(site)
        importlib.invalidate_caches()
        return info

    yield make
    for module in modules:
        sys.modules.pop(module, None)


BOMB = "raise RuntimeError('this module must never be imported')\n"


# --------------------------------------------------------------------------- built-ins
def test_setup_cfg_registers_a_plugin_for_every_slot() -> None:
    assert {group for group, _ in BUILTINS} == set(GROUPS)


@pytest.mark.parametrize(("group", "name"), BUILTINS, ids=[f"{g}:{n}" for g, n in BUILTINS])
def test_builtin_is_installed(group: str, name: str) -> None:
    # Names only: listing must not import, and some built-in modules may not exist yet.
    assert name in installed_plugins(group), (
        f"{name} is in setup.cfg but not installed: pip install -e . again"
    )


def test_installed_plugins_is_sorted() -> None:
    for group in GROUPS:
        names = installed_plugins(group)
        assert names == sorted(set(names))


def test_unknown_group_is_empty() -> None:
    assert installed_plugins("authsvc.no_such_slot") == []


# --------------------------------------------------------------------------- third party
def test_third_party_plugin_loads_through_its_entry_point(
    make_dist: MakeDist, tmp_path: Path
) -> None:
    info = make_dist(
        "thirdparty-plugin",
        {GROUP: {"thirdparty": "thirdparty_plugin:ThirdPartyKeys"}},
        {"thirdparty_plugin": "class ThirdPartyKeys:\n    kind = 'third party'\n"},
    )
    assert info.name == "thirdparty_plugin-1.0.dist-info"

    assert "thirdparty" in installed_plugins(GROUP)
    plugin = load_plugin(GROUP, "thirdparty")

    assert plugin.__name__ == "ThirdPartyKeys"
    assert plugin.kind == "third party"
    module = sys.modules["thirdparty_plugin"]
    assert Path(module.__file__ or "").parent == tmp_path / "site"


def test_third_party_plugin_in_another_group_is_not_listed(make_dist: MakeDist) -> None:
    make_dist("thirdparty-plugin", {"authsvc.provisioners": {"elsewhere": "nowhere:X"}})
    assert "elsewhere" in installed_plugins("authsvc.provisioners")
    assert "elsewhere" not in installed_plugins(GROUP)


def test_listing_imports_nothing(make_dist: MakeDist) -> None:
    make_dist("thirdparty-plugin", {GROUP: {"bomb": "bomb_plugin:Keys"}}, {"bomb_plugin": BOMB})
    assert "bomb" in installed_plugins(GROUP)
    assert "bomb_plugin" not in sys.modules


def test_only_the_requested_plugin_is_imported(make_dist: MakeDist) -> None:
    make_dist(
        "thirdparty-plugin",
        {GROUP: {"good": "good_plugin:Keys", "bomb": "bomb_plugin:Keys"}},
        {"good_plugin": "class Keys:\n    pass\n", "bomb_plugin": BOMB},
    )
    plugin = load_plugin(GROUP, "good")
    assert plugin.__module__ == "good_plugin"
    assert "bomb_plugin" not in sys.modules


# --------------------------------------------------------------------------- failures
@pytest.mark.parametrize("group", GROUPS)
def test_unknown_name_lists_the_installed_names(make_dist: MakeDist, group: str) -> None:
    make_dist("thirdparty-plugin", {group: {"thirdparty": "nowhere:X"}})
    installed = installed_plugins(group)
    assert "thirdparty" in installed

    with pytest.raises(PluginError) as excinfo:
        load_plugin(group, "no-such-plugin")

    assert str(excinfo.value) == (
        f"no plugin 'no-such-plugin' in {group} (installed: {', '.join(installed)})"
    )


def test_unknown_name_in_an_empty_group() -> None:
    with pytest.raises(
        PluginError, match=r"^no plugin 'x' in authsvc\.nothing \(installed: none\)$"
    ):
        load_plugin("authsvc.nothing", "x")


def test_name_claimed_by_two_distributions_is_refused(make_dist: MakeDist) -> None:
    make_dist("thirdparty-a", {GROUP: {"twin": "twin_a:Keys"}}, {"twin_a": BOMB})
    make_dist("thirdparty-b", {GROUP: {"twin": "twin_b:Keys"}}, {"twin_b": BOMB})

    assert installed_plugins(GROUP).count("twin") == 1
    with pytest.raises(PluginError) as excinfo:
        load_plugin(GROUP, "twin")

    message = str(excinfo.value)
    assert "thirdparty-a (twin_a:Keys)" in message
    assert "thirdparty-b (twin_b:Keys)" in message
    assert "uninstall one" in message
    assert "twin_a" not in sys.modules
    assert "twin_b" not in sys.modules


@pytest.mark.parametrize(("group", "name"), BUILTINS, ids=[f"{g}:{n}" for g, n in BUILTINS])
def test_third_party_cannot_take_a_builtin_name(make_dist: MakeDist, group: str, name: str) -> None:
    make_dist("thirdparty-plugin", {group: {name: "impostor:Plugin"}}, {"impostor": BOMB})
    with pytest.raises(PluginError) as excinfo:
        load_plugin(group, name)
    message = str(excinfo.value)
    assert "authsvc (" in message
    assert "thirdparty-plugin (impostor:Plugin)" in message
    assert "impostor" not in sys.modules


def test_same_distribution_seen_twice_is_one_claim(make_dist: MakeDist, tmp_path: Path) -> None:
    source = {"once_plugin": "class Keys:\n    pass\n"}
    eps = {GROUP: {"once": "once_plugin:Keys"}}
    make_dist("thirdparty-plugin", eps, source, where=tmp_path / "first")
    make_dist("thirdparty-plugin", eps, source, where=tmp_path / "second")
    assert load_plugin(GROUP, "once").__name__ == "Keys"


def test_same_entry_point_listed_twice_is_one_claim(make_dist: MakeDist) -> None:
    make_dist(
        "thirdparty-plugin",
        f"[{GROUP}]\nonce = once_plugin:Keys\nonce = once_plugin:Keys\n",
        {"once_plugin": "class Keys:\n    pass\n"},
    )
    assert load_plugin(GROUP, "once").__name__ == "Keys"


def test_one_distribution_claiming_a_name_twice_is_refused(make_dist: MakeDist) -> None:
    make_dist(
        "thirdparty-plugin",
        f"[{GROUP}]\ntwin = twin_a:Keys\ntwin = twin_b:Keys\n",
        {"twin_a": BOMB, "twin_b": BOMB},
    )
    with pytest.raises(PluginError, match=r"twin_a:Keys.* and .*twin_b:Keys"):
        load_plugin(GROUP, "twin")


@pytest.mark.parametrize(
    ("target", "sources", "why"),
    [
        ("bomb_plugin:Keys", {"bomb_plugin": BOMB}, "this module must never be imported"),
        ("absent_plugin:Keys", {}, "No module named 'absent_plugin'"),
        ("empty_plugin:Keys", {"empty_plugin": "\n"}, "has no attribute 'Keys'"),
    ],
    ids=["raises-on-import", "missing-module", "missing-attribute"],
)
def test_broken_plugin_fails_naming_it(
    make_dist: MakeDist, target: str, sources: dict[str, str], why: str
) -> None:
    make_dist("thirdparty-plugin", {GROUP: {"broken": target}}, sources)
    with pytest.raises(PluginError) as excinfo:
        load_plugin(GROUP, "broken")
    message = str(excinfo.value)
    assert message.startswith(f"plugin 'broken' in {GROUP} from thirdparty-plugin failed to load: ")
    assert why in message
    assert excinfo.value.__cause__ is not None


# --------------------------------------------------------------------------- a third party's slot
THIRD_PARTY_KEYS = '''
from authsvc.keys.base import KeyError_, VerificationKey, allowed_algorithms
from joserfc.jwk import OctKey


class VaultKeys:
    """Reads its own option from its issuer's section, blames it as ours blame theirs."""

    def __init__(self, key):
        self.key = key

    @classmethod
    def from_config(cls, context):
        secret = context.options.get("vault_secret", "")
        if len(secret) < 32:
            raise KeyError_(context.problem("vault_secret", "needs at least 32 characters"))
        key = OctKey.import_key(secret.encode())
        algs = allowed_algorithms(key, None, context.jwt.algorithms)
        return cls(VerificationKey(None, key, algs))

    def get_key(self, kid):
        return self.key if kid is None else None

    def refresh(self):
        pass
'''


def test_a_third_party_key_provider_reads_its_issuers_options_and_blames_precisely(
    make_dist: MakeDist, homepath: Path
) -> None:
    from joserfc import jwt
    from joserfc.jwk import OctKey

    from authsvc.app import create_app
    from authsvc.config import load_settings
    from authsvc.plugins import StartupError

    make_dist(
        "vault-keys", {GROUP: {"vault": "vault_keys:VaultKeys"}}, {"vault_keys": THIRD_PARTY_KEYS}
    )
    custom = homepath / "conf" / "custom.ini"
    custom.write_text(
        "[auth.jwt.corp]\nheader_name = X-Corp\nkey_provider = vault\nvault_secret = short\n"
    )
    with pytest.raises(StartupError) as info:
        create_app(load_settings(homepath, environ={}), migrate_schema=True, testing=True)
    assert str(info.value) == (
        "conf/custom.ini [auth.jwt.corp] vault_secret: needs at least 32 characters"
    )

    secret = "v" * 40
    custom.write_text(
        "[auth.jwt.corp]\nheader_name = X-Corp\nkey_provider = vault\n"
        f"vault_secret = {secret}\nusername_claim = sub\nauto_sign_up = true\n"
    )
    settings = load_settings(homepath, environ={})
    # An option authsvc does not know is a warning, and the plugin still gets it.
    assert any("vault_secret: unknown key" in w for w in settings.warnings)
    app = create_app(settings, migrate_schema=True, testing=True)
    try:
        token = jwt.encode(
            {"alg": "HS256"}, {"sub": "v", "exp": 4_000_000_000}, OctKey.import_key(secret.encode())
        )
        response = app.test_client().get("/api/auth/verify", headers={"X-Corp": token})
        assert response.status_code == 200, response.get_json()
        assert response.headers["X-Auth-Issuer"] == "corp"
    finally:
        app.extensions["authsvc"].close()
