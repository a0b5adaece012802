"""``astropt users add | list | revoke``: manage the service's users from its machine."""

from __future__ import annotations

import argparse
import sys

from state.settings import get_settings
from state.store import migrate, session_scope
from state.store.users import SCOPES, UserError, add_user, list_users, revoke_user


def register(subparsers: argparse._SubParsersAction) -> None:
    users = subparsers.add_parser(
        "users",
        help="users of the service: tokens, scopes and quotas",
        description="Once a user exists, every request needs a token "
        "(docs/operations.md, 'Users'). Uses ASTROPT_DATABASE_URL / ASTROPT_DATA_DIR.",
    )
    verbs = users.add_subparsers(dest="verb", required=True)
    add = verbs.add_parser("add", help="add a user and print its token (shown once)")
    add.add_argument("name")
    add.add_argument(
        "--scope",
        choices=SCOPES,
        default="submit",
        help="read: see own jobs; submit: also run them (default); admin: everything",
    )
    add.add_argument(
        "--max-active-jobs", type=int, default=None, help="quota: queued + running jobs"
    )
    add.add_argument("--disk-gb", type=float, default=None, help="quota: disk of the user's runs")
    add.add_argument(
        "--device-hours", type=float, default=None, help="quota: device-hours of finished jobs"
    )
    add.set_defaults(func=run_add)
    listing = verbs.add_parser("list", help="list users (never their tokens)")
    listing.set_defaults(func=run_list)
    revoke = verbs.add_parser("revoke", help="revoke a user's token (their jobs stay)")
    revoke.add_argument("name")
    revoke.set_defaults(func=run_revoke)


def _url() -> str:
    url = get_settings().resolved_database_url
    migrate(url)
    return url


def run_add(args: argparse.Namespace) -> int:
    try:
        with session_scope(_url()) as session:
            token = add_user(
                session,
                args.name,
                [args.scope],
                max_active_jobs=args.max_active_jobs,
                disk_quota_gb=args.disk_gb,
                device_hours_quota=args.device_hours,
            )
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"added {args.name} ({args.scope}); the token is shown only now:")
    print(token)
    return 0


def run_list(args: argparse.Namespace) -> int:
    with session_scope(_url()) as session:
        for user in list_users(session):
            state = f"revoked {user.revoked_at:%Y-%m-%d}" if user.revoked_at else "active"
            quotas = ", ".join(
                f"{k}={v}"
                for k, v in (
                    ("jobs", user.max_active_jobs),
                    ("disk_gb", user.disk_quota_gb),
                    ("device_hours", user.device_hours_quota),
                )
                if v is not None
            )
            print(f"{user.name:24} {user.scopes:20} {state:18} {quotas}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    with session_scope(_url()) as session:
        if not revoke_user(session, args.name):
            print(f"error: no active user {args.name!r}", file=sys.stderr)
            return 2
    print(f"revoked {args.name}")
    return 0
