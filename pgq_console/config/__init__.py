"""Settings: defaults < config file (TOML) < `PGQ_CONSOLE_*` variables < command line.

The config file lives in the platformdirs config directory (`pgq-console paths` prints it) and
holds named profiles. A profile says where to connect (a DSN or libpq parameters), with which
driver, which PgQueuer installation, whether read-only, and an environment label and colour
for the header. The console never writes a password anywhere: profiles take it from `.pgpass`,
a variable (`password_env`) or a command (`password_command`). Every error names the file, the
line and the key, or the variable.
"""

from __future__ import annotations

from pgq_console.config.connecting import open_target
from pgq_console.config.errors import ConfigError
from pgq_console.config.files import default_config_path, describe_paths, user_theme_dir
from pgq_console.config.resolution import CliOptions, Environment, Settings, Target, load_settings
from pgq_console.config.schema import ProfileConfig
from pgq_console.config.secrets import build_uri

__all__ = [
    "CliOptions",
    "ConfigError",
    "Environment",
    "ProfileConfig",
    "Settings",
    "Target",
    "build_uri",
    "default_config_path",
    "describe_paths",
    "load_settings",
    "open_target",
    "user_theme_dir",
]
