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


@bsn_cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status(as_json: bool) -> None:
    """Health of every part, the periodic schedule (next run, last success) and the queues; exit 1 if not ready."""
    import json

    from bsn import liveness

    report = liveness.status()
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
    else:
        for name, check in report["checks"].items():
            detail = ", ".join(f"{k}={v}" for k, v in check.items() if k != "ok")
            click.echo(f"{'ok ' if check['ok'] else 'BAD'} {name:<14} {detail}")
        click.echo("\nperiodic job          interval  last success  next run                     late")
        for row in report["schedule"]:
            age = "never" if row["last_success_age_seconds"] is None else f"{row['last_success_age_seconds']:.0f}s ago"
            click.echo(
                f"{row['id']:<21} {row['interval_seconds']:>7}s  {age:<12}  {row['next_run'] or '-':<27}  "
                f"{'LATE' if row['late'] else 'no'}{'  error: ' + row['last_error'] if row['last_error'] else ''}"
            )
        click.echo("\nqueue     queued  started  failed")
        for q in report["queues"]:
            click.echo(f"{q['name']:<9} {q['queued']:>6}  {q['started']:>7}  {q['failed']:>6}")
        click.echo(f"job outbox (waiting for Redis): {report['outbox_waiting']}")
        click.echo(f"\nworkers: {len(report['workers'])}")
        for w in report["workers"]:
            click.echo(f"  {w['name']} {w['state']} heartbeat {w['heartbeat_age_seconds']}s ago job={w['current_job']}")
    if not all(check["ok"] for check in report["checks"].values()):
        raise SystemExit(1)


@bsn_cli.command("seed")
@click.option("--users", default=10_000, show_default=True)
@click.option("--posts", default=100_000, show_default=True)
@click.option("--follows", default=500_000, show_default=True)
@click.option("--likes", default=1_000_000, show_default=True)
@click.option("--seed", "seed_value", default=7, show_default=True, help="Random seed: the same seed, the same data.")
def seed(users: int, posts: int, follows: int, likes: int, seed_value: int) -> None:
    """Fill an empty database with realistic volume (seeded accounts have no usable password)."""
    from bsn.seed import seed as run_seed

    if follows > users * (users - 1) or likes > users * posts:
        raise click.ClickException("more follows or likes than there are distinct pairs")
    try:
        timings = run_seed(users, posts, follows, likes, seed_value, echo=click.echo)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"seeded {users} users, {posts} posts, {follows} follows, {likes} likes in {timings['seconds']} s")
