"""Settings: precedence CLI > env > file > defaults, profiles, and errors that say where."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgq_console.cli import main
from pgq_console.config import (
    CliOptions,
    ConfigError,
    Target,
    build_uri,
    default_config_path,
    load_settings,
)

SECRET = "s3cret-Pa55"

PROFILES = """\
profile = "staging"
theme = "pgq-light"
refresh = 5

[profiles.staging]
dsn = "postgresql://ops@staging.internal:5432/app"
label = "STAGING"
color = "yellow"

[profiles.prod]
host = "db.internal"
port = 6432
user = "ops"
dbname = "app"
driver = "psycopg"
schema = "queue"
read_only = true
label = "PROD"
color = "red"
password_env = "PROD_DB_PASSWORD"
"""


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def settings_for(path: Path, environ: dict[str, str] | None = None, **cli: object):  # type: ignore[no-untyped-def]
    return load_settings(CliOptions(config=str(path), **cli), environ or {})  # type: ignore[arg-type]


def test_defaults_without_a_file() -> None:
    settings = load_settings(CliOptions(), {})
    assert not settings.config_found
    assert settings.config_path == default_config_path()
    assert (settings.theme, settings.refresh, settings.target.driver) == (
        "pgq-dark",
        2.0,
        "asyncpg-pool",
    )
    assert settings.target.profile is None and not settings.target.read_only


def test_default_path_follows_the_platform_config_dir(tmp_path: Path) -> None:
    # conftest points XDG_CONFIG_HOME at tmp_path/config
    assert default_config_path() == tmp_path / "config" / "pgq-console" / "config.toml"
    default_config_path().parent.mkdir(parents=True)
    write(default_config_path(), 'theme = "pgq-light"\n')
    assert load_settings(CliOptions(), {}).theme == "pgq-light"


def test_precedence_cli_over_env_over_file_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", PROFILES)
    from_file = settings_for(path)
    assert (from_file.theme, from_file.refresh) == ("pgq-light", 5.0)
    env = {"PGQ_CONSOLE_THEME": "pgq-high-contrast", "PGQ_CONSOLE_REFRESH": "7"}
    from_env = settings_for(path, env)
    assert (from_env.theme, from_env.refresh) == ("pgq-high-contrast", 7.0)
    from_cli = settings_for(path, env, theme="pgq-monochrome", refresh=1.0)
    assert (from_cli.theme, from_cli.refresh) == ("pgq-monochrome", 1.0)


def test_no_color_means_monochrome_unless_a_theme_is_chosen(tmp_path: Path) -> None:
    assert load_settings(CliOptions(), {"NO_COLOR": "1"}).theme == "pgq-monochrome"
    assert load_settings(CliOptions(theme="pgq-dark"), {"NO_COLOR": "1"}).theme == "pgq-dark"


def test_default_profile_and_its_badge(tmp_path: Path) -> None:
    settings = settings_for(write(tmp_path / "c.toml", PROFILES))
    target = settings.target
    assert target.profile == "staging"
    assert target.dsn == "postgresql://ops@staging.internal:5432/app"
    assert target.environment is not None and target.environment.label == "STAGING"
    assert sorted(settings.profiles) == ["prod", "staging"]


def test_an_explicit_dsn_wins_over_the_default_profile(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", PROFILES)
    settings = settings_for(path, dsn="postgresql://me@localhost/dev")
    assert settings.target.profile is None and settings.target.environment is None
    settings = settings_for(path, {"PGQ_CONSOLE_DSN": "postgresql://me@localhost/dev"})
    assert settings.target.profile is None


def test_profile_from_libpq_parameters(tmp_path: Path) -> None:
    settings = settings_for(write(tmp_path / "c.toml", PROFILES), profile="prod")
    target = settings.target
    assert target.dsn == "postgresql://ops@db.internal:6432/app"
    assert (target.driver, target.schema, target.read_only) == ("psycopg", "queue", True)
    assert target.environment is not None and target.environment.color == "red"
    # The CLI still overrides a profile's options.
    assert (
        settings_for(tmp_path / "c.toml", profile="prod", driver="asyncpg").target.driver
        == "asyncpg"
    )


def test_read_only_sticks_once_asked_for(tmp_path: Path) -> None:
    path = write(tmp_path / "c.toml", PROFILES)
    assert settings_for(path, read_only=True).target.read_only
    assert settings_for(path, {"PGQ_CONSOLE_READ_ONLY": "true"}).target.read_only
    # Switching to a profile keeps a --read-only given on the command line.
    settings = settings_for(path, read_only=True)
    assert settings.target_for("staging").read_only
    assert not settings_for(path).target_for("staging").read_only
    assert settings_for(path).target_for("prod").read_only


def test_password_from_a_variable_is_used_but_never_in_the_label(tmp_path: Path) -> None:
    settings = settings_for(write(tmp_path / "c.toml", PROFILES), profile="prod")
    dsn, label, secrets = settings.target.connect_dsn({"PROD_DB_PASSWORD": SECRET})
    assert f"ops:{SECRET}@db.internal:6432" in dsn
    assert SECRET not in label and label == "ops@db.internal:6432/app"
    assert SECRET in secrets
    with pytest.raises(ConfigError, match="PROD_DB_PASSWORD is not set"):
        settings.target.connect_dsn({})


def test_password_from_a_command(tmp_path: Path) -> None:
    script = tmp_path / "pw.sh"
    script.write_text(f"#!/bin/sh\necho '{SECRET}'\n")
    script.chmod(0o700)
    target = Target(dsn="postgresql://ops@h/app", password_command=str(script), profile="x")
    dsn, label, _ = target.connect_dsn({})
    assert SECRET in dsn and SECRET not in label
    failing = Target(dsn="postgresql://ops@h/app", password_command="false", profile="x")
    with pytest.raises(ConfigError, match="password_command exited with 1"):
        failing.connect_dsn({})
    # key=value DSNs get the password too (and become a URI: asyncpg reads only those).
    key_value = Target(dsn="host=h user=ops dbname=app", password_command=str(script))
    assert key_value.connect_dsn({})[0] == f"postgresql://ops:{SECRET}@h/app"


def test_unix_socket_host_goes_into_the_query() -> None:
    from pgq_console.config import ProfileConfig

    uri = build_uri(ProfileConfig(host="/var/run/postgresql", port=5433, user="ops", dbname="app"))
    assert uri == "postgresql://ops@/app?host=%2Fvar%2Frun%2Fpostgresql&port=5433"


def test_a_password_in_a_file_readable_by_others_is_warned_about(tmp_path: Path) -> None:
    text = '[profiles.dev]\ndsn = "postgresql://ops:hunter2@localhost/app"\n'
    open_file = write(tmp_path / "open.toml", text, 0o644)
    warnings = settings_for(open_file, profile="dev").warnings
    assert len(warnings) == 1 and "chmod 600" in warnings[0] and "hunter2" not in warnings[0]
    assert settings_for(write(tmp_path / "closed.toml", text, 0o600), profile="dev").warnings == ()
    # No password in it: nothing to warn about, whatever the mode.
    assert settings_for(write(tmp_path / "plain.toml", PROFILES, 0o644)).warnings == ()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('theme = "x"\nrefresh = [', ":2: not valid TOML"),  # at the end of the file
        ('theme = "x"\nrefresh = =\nx = 1\n', ":2: not valid TOML: Invalid value (column 11)"),
        (
            'theme = "x"\n\n[profiles.a]\ndsn = "d"\ncolour = "red"\n',
            ":5: profiles.a.colour: unknown key",
        ),
        (
            '[profiles.a]\ndsn = "d"\n\n[profiles.b]\nhost = "h"\ndriver = "odbc"\n',
            ":6: profiles.b.driver: unknown driver 'odbc'",
        ),
        ("refresh = -1\n", ":1: refresh: Input should be greater than 0"),
        ('[profiles.a]\nport = "many"\n', ":2: profiles.a.port:"),
        ('[profiles.a]\ncolor = "blurple"\n', ":2: profiles.a.color: not a colour"),
        ('[profiles.a]\ndsn = "postgresql://h/db"\nhost = "h"\n', "give either dsn or host"),
    ],
)
def test_file_errors_name_file_line_and_key(tmp_path: Path, text: str, expected: str) -> None:
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(ConfigError) as error:
        settings_for(path, profile="a" if "give either" in expected else None)
    message = str(error.value)
    assert str(path) in message and expected in message, message
    assert "\n" not in message


def test_variable_errors_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="^PGQ_CONSOLE_REFRESH: "):
        load_settings(CliOptions(), {"PGQ_CONSOLE_REFRESH": "soon"})
    with pytest.raises(ConfigError, match="^PGQ_CONSOLE_DRIVER: unknown driver 'odbc'"):
        load_settings(CliOptions(), {"PGQ_CONSOLE_DRIVER": "odbc"})


def test_missing_explicit_file_and_unknown_profile(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*nope.toml"):
        settings_for(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(CliOptions(), {"PGQ_CONSOLE_CONFIG": str(tmp_path / "nope.toml")})
    path = write(tmp_path / "c.toml", PROFILES)
    with pytest.raises(ConfigError, match="unknown profile 'qa': .* defines prod, staging"):
        settings_for(path, profile="qa")


def test_cli_reports_config_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(
        tmp_path / "bad.toml", '[profiles.a]\ndsn = "postgresql://x@127.0.0.1:1/d"\ndriver = 3\n'
    )
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(path), "--profile", "a"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("pgq-console: error: ")
    assert f"{path}:3: profiles.a.driver" in err[0]


def test_cli_connects_with_a_profile_and_never_shows_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROD_DB_PASSWORD", SECRET)
    text = PROFILES.replace('host = "db.internal"', 'host = "127.0.0.1"').replace("6432", "1")
    path = write(tmp_path / "c.toml", text)
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(path), "--profile", "prod"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "cannot reach ops@127.0.0.1:1/app" in err and SECRET not in err


def test_paths_prints_where_things_live(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQ_CONSOLE_",))}
    done = subprocess.run(
        [sys.executable, "-m", "pgq_console", "paths"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert str(default_config_path()) in done.stdout
    assert "user themes" in done.stdout and "built-in themes" in done.stdout
