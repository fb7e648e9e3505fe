"""chat2api's settings: ``config.yaml`` with environment overrides.

Every key of ``config.yaml`` can be overridden by an environment variable of
the same name in upper case (``pow_difficulty`` → ``POW_DIFFICULTY``), so the
original chat2api's variable names work unchanged. Values are parsed and
validated once, here; a bad value raises :class:`SettingsError` naming the
setting, and start-up stops with that message.
"""

from settings.load import SettingsError, load_settings, parse_bool
from settings.schema import Settings, Timeouts

__all__ = ["Settings", "SettingsError", "Timeouts", "load_settings", "parse_bool"]
