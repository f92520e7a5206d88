"""`vitalstream users add|passwd|list|disable|enable`: the station's local user store."""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys

NAME = "users"
HELP = "Manage the station's users (roles, wards, passwords): add, passwd, list, disable, enable."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from vitalstream.auth.roles import ROLES

    parser.add_argument("action", choices=("add", "passwd", "list", "disable", "enable"))
    parser.add_argument("username", nargs="?", help="the name a person signs in with")
    parser.add_argument("--file", help="user file (else VITALSTREAM_STATION_USERS_FILE)")
    parser.add_argument("--name", help="display name shown on the board and in the alert history (add)")
    parser.add_argument("--role", choices=ROLES, help="role (add; changes it with passwd)")
    parser.add_argument("--ward", action="append", default=[], help="ward granted (repeatable)")
    parser.add_argument("--password-stdin", action="store_true",
                        help="read the password from standard input (else ask; add without a "
                        "terminal generates one and prints it once)")


def _password(args: argparse.Namespace, generate: bool) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if first != getpass.getpass("again: "):
            from vitalstream.cli import UsageError

            raise UsageError("vitalstream users: the passwords differ")
        return first
    if generate:
        password = secrets.token_urlsafe(15)
        print(f"generated password (shown once): {password}", file=sys.stderr)
        return password
    from vitalstream.cli import UsageError

    raise UsageError("vitalstream users: no password: use --password-stdin")


def run(args: argparse.Namespace) -> int:
    from vitalstream.auth.users import UserStore, UserStoreError
    from vitalstream.cli import UsageError

    path = args.file or os.environ.get("VITALSTREAM_STATION_USERS_FILE", "")
    if not path:
        raise UsageError("vitalstream users: no user file: --file or VITALSTREAM_STATION_USERS_FILE")
    try:
        store = UserStore.load(path, missing_ok=args.action == "add")
        if args.action == "list":
            for user in sorted(store.users.values(), key=lambda u: u.username):
                state = "disabled" if user.disabled else "active"
                print(f"{user.user_id}  {user.username:20} {user.role:15} {','.join(sorted(user.wards)):12} "
                      f"{state:8} {user.name}")
            return 0
        if not args.username:
            raise UsageError(f"vitalstream users {args.action}: which user?")
        if args.action == "add":
            if not (args.name and args.role and args.ward):
                raise UsageError("vitalstream users add: needs --name, --role and at least one --ward")
            user = store.add(args.username, args.name, args.role, args.ward, _password(args, generate=True))
        elif args.action == "passwd":
            changes: dict[str, object] = {"password": _password(args, generate=False)}
            if args.role:
                changes["role"] = args.role
            if args.ward:
                changes["wards"] = frozenset(args.ward)
            user = store.update(args.username, **changes)
        else:
            user = store.update(args.username, disabled=args.action == "disable")
        store.save()
    except UserStoreError as exc:
        raise UsageError(f"vitalstream users: {exc}") from None
    print(f"{args.action}: {user.username} ({user.user_id}, {user.role}, wards {','.join(sorted(user.wards))})")
    return 0
