"""`orchat config show|path`: effective settings with their sources, and the files consulted."""

from __future__ import annotations

import sys
from typing import Any

from orchat import paths
from orchat.config import load_settings, mask_key
from orchat.settingstable import SETTINGS


def add_arguments(parser: Any) -> None:
    parser.add_argument("action", choices=["show", "path"], nargs="?", default="show")
    parser.add_argument("-p", "--profile", help="show the settings with this profile laid over them (each value says where it comes from)")


def show_value(value: Any) -> str:
    """Return a setting's value as it would be written in a config file (lists a,b; maps k=v,k=v)."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ",".join(str(item) for item in value)
    if isinstance(value, dict):
        return ",".join(f"{key}={item:g}" if isinstance(item, float) else f"{key}={item}" for key, item in value.items())
    return str(value)


def run(args: Any) -> int:
    if args.action == "path":
        system, user = paths.system_config_dir(), paths.user_config_dir()
        for path in (paths.system_config_file(), paths.user_config_file(), system / "aliases", user / "aliases", system / "profiles", user / "profiles"):
            state = "present" if path.exists() else "absent"
            sys.stdout.write(f"{path}\t{state}\n")
        return 0
    settings = load_settings(profile=args.profile)
    out = [f"{'API key':<26} {mask_key(settings.api_key)}  ({settings.api_key_source or 'not set'})"]
    for setting in SETTINGS:
        value = settings.values[setting.name]
        shown = show_value(value)
        out.append(f"{setting.name:<26} {shown}  ({settings.sources[setting.name]})")
    out.append(f"{'history file':<26} {settings.history_path}")
    sys.stdout.write("\n".join(out) + "\n")
    for warning in settings.warnings:
        sys.stderr.write(f"orchat: warning: {warning}\n")
    return 0
