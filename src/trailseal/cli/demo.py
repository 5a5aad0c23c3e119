"""``trailseal demo``: serve on SQLite and seed a realistic trail (what ``make run`` starts)."""

from __future__ import annotations

import datetime as dt
import random
from typing import Any

import click
import httpx

from trailseal.cli.serve import build_settings, run_server, settings_options

SERVICES = ("checkout", "payments", "identity", "inventory", "search")
PEOPLE = ("alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com")
ROLES = ("viewer", "editor", "admin", "billing-admin")


def demo_events(count: int = 300, seed: int = 7) -> list[dict[str, Any]]:
    """A deterministic, realistic mix: deploys, IAM changes, logins (some failing), a deletion."""
    rng = random.Random(seed)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=6)
    events: list[dict[str, Any]] = []

    def at(minutes: float) -> str:
        return (start + dt.timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    minute = 0.0
    seq: dict[str, int] = {}

    def producer(name: str) -> dict[str, Any]:
        seq[name] = seq.get(name, 0) + 1
        return {"id": name, "seq": seq[name]}

    while len(events) < count:
        minute += rng.uniform(0.2, 2.0)
        kind = rng.random()
        request_id = f"req-{rng.getrandbits(48):012x}"
        person = rng.choice(PEOPLE)
        ip = f"203.0.113.{rng.randint(1, 254)}"
        if kind < 0.45:
            ok = rng.random() > 0.2
            events.append({
                "time": at(minute), "actor": {"id": person, "type": "user", "ip": ip},
                "action": "auth.login", "resource": {"type": "account", "id": person},
                "outcome": "success" if ok else "failure", "request_id": request_id,
                "source": {"service": "identity", "environment": "prod", "region": "eu-west-1"},
                "producer": producer("identity-api"),
            })
            if not ok:
                events[-1]["reason"] = "bad password"
        elif kind < 0.70:
            service = rng.choice(SERVICES)
            version = f"v1.{rng.randint(10, 60)}.{rng.randint(0, 9)}"
            for phase, outcome in (("deploy.rollout.start", "success"), ("deploy.rollout.finish", rng.choice(["success", "success", "failure"]))):
                events.append({
                    "time": at(minute), "actor": {"id": "ci-bot", "type": "service"},
                    "action": phase, "resource": {"type": "service", "id": service},
                    "outcome": outcome, "request_id": request_id, "trace_id": f"{rng.getrandbits(128):032x}",
                    "source": {"service": "deployer", "environment": "prod"},
                    "after": {"version": version}, "producer": producer("deployer"),
                    "metadata": {"pipeline": f"build-{rng.randint(1000, 9999)}", "approved_by": rng.choice(PEOPLE)},
                })
                minute += rng.uniform(1, 4)
        elif kind < 0.90:
            old, new = rng.sample(ROLES, 2)
            events.append({
                "time": at(minute), "actor": {"id": person, "type": "user", "ip": ip},
                "action": "iam.role.update", "resource": {"type": "user", "id": rng.choice(PEOPLE)},
                "outcome": rng.choice(["success", "success", "denied"]), "request_id": request_id,
                "before": {"role": old}, "after": {"role": new},
                "source": {"service": "identity", "environment": "prod"},
                "producer": producer("identity-api"),
            })
        else:
            events.append({
                "time": at(minute), "actor": {"id": person, "type": "user", "ip": ip},
                "action": "data.export", "resource": {"type": "table", "id": "customers"},
                "outcome": "success", "request_id": request_id,
                "metadata": {"rows": rng.randint(10, 50000), "format": "csv"},
                "source": {"service": "payments", "environment": "prod"},
                "producer": producer("payments-api"),
            })
    events = events[:count]
    events.append({
        "time": at(minute + 3), "actor": {"id": "dave@example.com", "type": "user", "ip": "198.51.100.23"},
        "action": "data.delete", "resource": {"type": "bucket", "id": "prod-invoices-2023"},
        "outcome": "success", "request_id": "req-incident-0001",
        "reason": "cleanup ticket OPS-4411", "before": {"objects": 18234}, "after": {"objects": 0},
        "source": {"service": "storage-admin", "environment": "prod"},
    })
    return events


@click.command()
@settings_options
@click.option("--events", "count", type=int, default=300, show_default=True, help="Demo events to seed on first start.")
def demo(count: int, **flags: Any) -> None:
    """Serve on SQLite and seed a realistic demo trail (what `make run` does).

    \b
    Example:
      trailseal demo --data ./trailseal-data --port 8700
    """
    settings = build_settings(**flags)
    base = f"http://{settings.host}:{settings.port}"

    def seed(runtime: Any) -> None:
        log = settings.default_log
        admin_key = demo_admin_key(runtime) if settings.auth_required else None
        headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else {}
        if runtime.store.tree_size(log) == 0:
            events = demo_events(count)
            for start in range(0, len(events), 100):
                httpx.post(f"{base}/v1/events", json=events[start : start + 100], headers=headers,
                           timeout=60).raise_for_status()
            click.echo(f"Seeded {len(events)} demo events.")
        from trailseal.storage.keyfiles import verifier_keys

        key = verifier_keys(runtime.keyring(log))[-1]
        click.echo(
            f"\ntrailseal demo is up: {base}  (API docs: {base}/docs)\n"
            f"Verifier key: {key}\n"
            + (f"Admin API key (new at each demo start; the previous one is revoked):\n  {admin_key}\n"
               if admin_key else "Authentication is off.\n")
            + "\nTry next (in another terminal, from this directory):\n"
            + (f"  export TRAILSEAL_API_KEY={admin_key}\n" if admin_key else "")
            + f"  .venv/bin/trailseal emit --actor you --action deploy.rollout.start --resource service:checkout\n"
            f"  .venv/bin/trailseal verify --data {settings.data_dir}\n"
            f"  curl -s {base}/v1/logs/{log}/checkpoint\n"
            + (f"  curl -s -H \"Authorization: Bearer $TRAILSEAL_API_KEY\" {base}/v1/keys\n"
               if admin_key else "")
            + "Press Ctrl+C to stop.\n"
        )

    run_server(settings, on_ready=seed, bootstrap_admin=False)


def demo_admin_key(runtime: Any) -> str:
    """A fresh admin key for this demo run; earlier demo keys are revoked (only hashes are kept,
    so an old one cannot be shown again)."""
    import datetime as dt

    from trailseal.access.apikeys import create_key, revoke_key
    from trailseal.access.roles import ANY_TENANT, Grant, Role

    now = dt.datetime.now(dt.UTC)
    keys = runtime.access.keys
    for record in keys.list_keys():
        if record.name == "demo-admin" and record.status(now) == "active":
            revoke_key(keys, record.key_id, now)
    issued = create_key(keys, name="demo-admin", grants=[Grant(ANY_TENANT, Role.ADMIN)], now=now,
                        created_by="demo")
    return issued.token


COMMANDS = [demo]
