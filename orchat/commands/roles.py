"""`orchat roles [--json]`: the roles `-r NAME` can use, with the file each comes from."""

from __future__ import annotations

import json
import sys
from typing import Any


def add_arguments(parser: Any) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON array (name, source, description, header values)")


def run(args: Any) -> int:
    """List the roles; a malformed role file is a ConfigError (exit 78) naming its line."""
    from orchat.chat.roles import list_roles

    roles = list_roles()
    if args.json:
        sys.stdout.write(json.dumps([role.as_json() for role in roles], ensure_ascii=False) + "\n")
        return 0
    width = max((len(role.name) for role in roles), default=4)
    for role in roles:
        sys.stdout.write(f"{role.name:<{width}}  {role.description or '-'}  ({role.source})\n")
    return 0
