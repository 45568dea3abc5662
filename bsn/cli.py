"""`flask bsn ...`: operator commands."""

from __future__ import annotations

import click
from flask import Flask
from flask.cli import AppGroup

from bsn.models import Role

bsn_cli = AppGroup("bsn", help="BSN operator commands.")


@bsn_cli.command("create-admin")
@click.option("--username", prompt=True)
@click.option("--email", prompt=True)
@click.password_option()
def create_admin(username: str, email: str, password: str) -> None:
    """Create an administrator account."""
    from bsn.errors import BSNError
    from bsn.services import accounts

    try:
        user = accounts.register(username, email, password, role=Role.ADMIN)
    except BSNError as exc:
        raise click.ClickException(f"{exc.message} {exc.fields or ''}".strip()) from None
    click.echo(f"admin {user.username} created (id {user.id})")


def init_app(app: Flask) -> None:
    app.cli.add_command(bsn_cli)


@bsn_cli.command("worker")
@click.option("--queues", default="high,default,low", show_default=True, help="Queues, most urgent first.")
@click.option("--burst", is_flag=True, help="Quit when the queues are empty.")
def worker(queues: str, burst: bool) -> None:
    """Run an RQ worker with the app context."""
    from flask import current_app

    from workers.runtime import run_worker

    run_worker(current_app._get_current_object(), [q.strip() for q in queues.split(",") if q.strip()], burst)


@bsn_cli.command("scheduler")
@click.option("--burst", is_flag=True, help="Enqueue what is due once, then quit.")
def scheduler(burst: bool) -> None:
    """Run rq-scheduler: registers the periodic jobs of workers/schedule.py, then enqueues them when due."""
    from flask import current_app

    from workers.runtime import run_scheduler

    run_scheduler(current_app._get_current_object(), burst)


@bsn_cli.command("audit-ledger")
def audit_ledger() -> None:
    """Check that every balance equals the sum of its ledger entries; exit 1 on any difference."""
    from bsn.services import tokens

    differences = tokens.audit()
    for row in differences:
        click.echo(f"user {row['user_id']}: balance {row['balance']} != entries {row['entries_sum']}")
    if differences:
        raise SystemExit(1)
    click.echo("ledger clean: every balance equals the sum of its entries")
