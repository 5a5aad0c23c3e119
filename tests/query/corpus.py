"""A generator of realistic audit events, shared by the query tests and ``bench/query.py``.

What makes it realistic enough to exercise the indexes and the planner:

* skewed actors (a Zipf law over ~5,000 people and ~200 service accounts: a few do most things)
  and skewed actions (~110 actions in 40 services, some far more common than others);
* correlated *stories*: one request fans out over 1-4 services that share its ``request_id`` and
  ``trace_id``, child events name their parent span in ``metadata.parent_span_id``, and a trace
  sometimes holds several requests;
* per-producer sequence numbers with rare jumps (lost events, for timeline gap detection);
* ``before``/``after`` on changes, free-text ``reason`` on some events, ticket ids, namespaces,
  and ~6 % non-success outcomes; times roughly in order with producer clock jitter.

Deterministic for a given seed: ``realistic_events(n, seed=...)`` yields the same dicts each run.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import random
from collections.abc import Iterator
from typing import Any

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)

# (service family, resource types, actions with relative weights). Each family runs under a few
# source.service names (regional / split deployments): 40 services in all.
_FAMILIES: list[tuple[str, list[str], list[tuple[str, float]]]] = [
    ("identity", ["user", "session", "account"], [
        ("auth.login", 400), ("auth.logout", 120), ("auth.token.refresh", 260),
        ("auth.mfa.challenge", 60), ("auth.password.change", 4), ("auth.password.reset", 3),
        ("auth.mfa.enable", 2), ("auth.mfa.disable", 0.5)]),
    ("iam", ["user", "role", "group", "policy"], [
        ("iam.user.create", 3), ("iam.user.delete", 1), ("iam.user.disable", 0.8),
        ("iam.user.enable", 0.5), ("iam.user.update", 6), ("iam.role.update", 5),
        ("iam.role.create", 1), ("iam.role.delete", 0.4), ("iam.role.attach_policy", 2),
        ("iam.role.detach_policy", 1), ("iam.group.member.add", 4), ("iam.group.member.remove", 2),
        ("iam.policy.update", 1), ("iam.access_key.create", 1), ("iam.access_key.delete", 0.6)]),
    ("k8s-apiserver", ["pod", "deployment", "secret", "configmap", "rolebinding", "namespace"], [
        ("k8s.pod.create", 80), ("k8s.pod.delete", 60), ("k8s.pod.exec", 4),
        ("k8s.deployment.update", 20), ("k8s.deployment.scale", 10), ("k8s.secret.get", 30),
        ("k8s.secret.update", 2), ("k8s.configmap.update", 8), ("k8s.rolebinding.create", 0.5),
        ("k8s.namespace.delete", 0.1), ("k8s.node.cordon", 0.3)]),
    ("deployer", ["service", "release"], [
        ("deploy.rollout.start", 10), ("deploy.rollout.finish", 10), ("deploy.rollback.start", 0.8),
        ("deploy.canary.promote", 2), ("deploy.config.update", 3)]),
    ("vault", ["secret", "lease", "token"], [
        ("secret.read", 120), ("secret.write", 6), ("secret.delete", 0.5),
        ("secret.lease.revoke", 3), ("secret.token.create", 20)]),
    ("storage-gateway", ["bucket", "object"], [
        ("storage.object.get", 300), ("storage.object.put", 90), ("storage.object.delete", 12),
        ("storage.bucket.policy.update", 0.6), ("storage.bucket.create", 0.4),
        ("storage.bucket.delete", 0.1), ("storage.bucket.acl.update", 0.3)]),
    ("postgres-audit", ["table", "database", "role"], [
        ("db.table.select", 150), ("db.table.update", 40), ("db.table.alter", 0.8),
        ("db.table.drop", 0.05), ("db.role.grant", 0.6), ("db.role.revoke", 0.3),
        ("db.database.backup", 1)]),
    ("payments", ["payment", "refund", "payout"], [
        ("payment.charge.capture", 90), ("payment.refund.create", 8), ("payment.payout.approve", 2),
        ("payment.dispute.update", 1)]),
    ("billing", ["invoice", "plan", "subscription"], [
        ("billing.invoice.update", 10), ("billing.plan.change", 3), ("billing.subscription.cancel", 1)]),
    ("ci", ["pipeline", "secret", "runner"], [
        ("ci.pipeline.run", 40), ("ci.pipeline.cancel", 3), ("ci.secret.access", 15),
        ("ci.runner.register", 0.5)]),
    ("admin-console", ["org", "member", "setting"], [
        ("org.settings.update", 2), ("org.member.invite", 2), ("org.member.remove", 0.6),
        ("org.sso.update", 0.2), ("org.export.create", 0.4)]),
    ("feature-flags", ["flag"], [("flag.toggle", 8), ("flag.rule.update", 4), ("flag.create", 1)]),
    ("network", ["firewall_rule", "vpn", "load_balancer"], [
        ("net.firewall.rule.update", 1.5), ("net.vpn.connect", 25), ("net.vpn.disconnect", 22),
        ("net.lb.backend.update", 2)]),
    ("orders", ["order", "cart"], [
        ("order.create", 120), ("order.cancel", 10), ("order.update", 30), ("cart.checkout", 100)]),
    ("support", ["ticket", "customer"], [
        ("support.ticket.update", 20), ("support.customer.view", 60),
        ("support.customer.impersonate", 0.4)]),
    ("kms", ["key"], [("kms.key.decrypt", 80), ("kms.key.encrypt", 60), ("kms.key.rotate", 0.2),
                      ("kms.key.disable", 0.05)]),
]
_VARIANTS = {
    "identity": ["identity", "identity-eu", "sso-bridge"],
    "iam": ["iam", "iam-sync"],
    "k8s-apiserver": ["k8s-apiserver-prod", "k8s-apiserver-staging", "k8s-apiserver-dev"],
    "deployer": ["deployer", "argo-rollouts"],
    "vault": ["vault", "vault-dr"],
    "storage-gateway": ["storage-gateway", "s3-proxy", "gcs-proxy"],
    "postgres-audit": ["pg-orders", "pg-billing", "pg-users"],
    "payments": ["payments", "payments-eu", "payouts"],
    "billing": ["billing", "invoicing"],
    "ci": ["ci", "ci-runners"],
    "admin-console": ["admin-console"],
    "feature-flags": ["feature-flags"],
    "network": ["netops", "vpn-gateway"],
    "orders": ["orders-api", "cart-api", "checkout"],
    "support": ["support-desk", "crm"],
    "kms": ["kms", "kms-hsm"],
}
REGIONS = ("eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-1")
ENVIRONMENTS = (("prod", 80), ("staging", 15), ("dev", 5))
OUTCOMES = (("success", 935), ("failure", 35), ("denied", 25), ("unknown", 5))
USER_AGENTS = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "kubectl/v1.31.2 (linux/amd64) kubernetes/5864a46",
    "aws-cli/2.17.10 Python/3.11.9 Linux/6.8.0 exe/x86_64.ubuntu.24",
    "terraform/1.9.5 (+https://www.terraform.io) terraform-provider-aws/5.70.0",
    "trailseal-sdk-python/0.1.0 httpx/0.27",
    "Go-http-client/2.0",
    "curl/8.5.0",
)
REASONS = (
    "scheduled rotation", "break-glass for incident INC-{n}", "customer request via ticket SUP-{n}",
    "rollback after elevated 5xx rate", "cleanup of stale resources", "on-call escalation",
    "quarterly access review", "deadlock detected in checkout worker, restarting",
    "capacity increase ahead of sale", "revoked after offboarding", "approved change CHG-{n}",
    "password expired", "bad password", "token expired", "policy violation: public bucket",
    "migration step 3 of 5", "hotfix for payment retries",
)
FIRST = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
         "zoe", "amir", "bea", "chen", "dmitri", "eva", "farah", "goran", "hana", "ines", "jonas")


def _zipf_weights(count: int, s: float = 1.1) -> list[float]:
    return [1.0 / (rank**s) for rank in range(1, count + 1)]


class _Chooser:
    """Weighted choice by bisection over cumulative weights (random.choices is slower per call)."""

    def __init__(self, items: list[Any], weights: list[float]) -> None:
        self.items = items
        self.cum = list(itertools.accumulate(weights))
        self.total = self.cum[-1]

    def __call__(self, rng: random.Random) -> Any:
        return self.items[bisect.bisect_right(self.cum, rng.random() * self.total)]


def _hex(rng: random.Random, digits: int) -> str:
    return f"{rng.getrandbits(digits * 4):0{digits}x}"


def _stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Generator:
    """Stateful generator of stories; see the module docstring."""

    def __init__(self, seed: int = 42, start: dt.datetime = T0, mean_gap_ms: float = 250.0,
                 gap_rate: float = 0.0002) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        self.clock = start
        self.mean_gap = mean_gap_ms / 1000.0
        self.gap_rate = gap_rate
        people = [f"{rng.choice(FIRST)}.{_hex(rng, 4)}@example.com" for _ in range(5000)]
        rng.shuffle(people)
        robots = [f"svc-{name}-{i}" for i in range(12) for name in
                  ("deployer", "backup", "sync", "billing", "ingest", "scanner", "autoscaler",
                   "reconciler", "terraform", "gitops", "etl", "alerting", "webhook", "cron",
                   "mesh", "batch", "exporter")][:200]
        self.people = _Chooser(people, _zipf_weights(len(people)))
        self.robots = _Chooser(robots, _zipf_weights(len(robots), 0.9))
        self.ips = [f"{rng.choice((10, 172, 192, 203))}.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
                    f"{rng.randint(1, 254)}" for _ in range(3000)] + [f"2001:db8::{rng.randint(1, 0xFFFF):x}" for _ in range(200)]
        families: list[tuple[str, list[str], _Chooser, float]] = []
        weights: list[float] = []
        for family, kinds, actions in _FAMILIES:
            names = [a for a, _ in actions]
            w = [x for _, x in actions]
            families.append((family, kinds, _Chooser(names, w), sum(w)))
            weights.append(sum(w))
        self.families = _Chooser(families, weights)
        self.envs = _Chooser([e for e, _ in ENVIRONMENTS], [w for _, w in ENVIRONMENTS])
        self.outcomes = _Chooser([o for o, _ in OUTCOMES], [w for _, w in OUTCOMES])
        self.seq: dict[str, int] = {}
        self.resources: dict[str, list[str]] = {}
        self.count = 0

    # -- parts ---------------------------------------------------------------------------------
    def _resource_id(self, kind: str) -> str:
        pool = self.resources.setdefault(kind, [])
        rng = self.rng
        if pool and rng.random() < 0.85:
            return pool[min(int(rng.paretovariate(1.2)) - 1, len(pool) - 1)]
        ident = f"{kind}-{_hex(rng, 8)}"
        if len(pool) < 20000:
            pool.append(ident)
        return ident

    def _producer(self, service: str, host: str) -> dict[str, Any]:
        key = f"{service}@{host}"
        seq = self.seq.get(key, 0) + 1
        if self.rng.random() < self.gap_rate:
            seq += self.rng.randint(1, 5)  # events lost between producer and trail
        self.seq[key] = seq
        return {"id": key, "seq": seq}

    def _event(self, actor: dict[str, Any], family: tuple[str, list[str], _Chooser, float],
               request_id: str, trace_id: str, parent_span: str | None, env: str,
               region: str) -> dict[str, Any]:
        rng = self.rng
        name, kinds, actions, _w = family
        action = actions(rng)
        kind = kinds[min(int(rng.expovariate(1.3)), len(kinds) - 1)]
        service = rng.choice(_VARIANTS[name])
        host = f"{service}-{rng.randint(0, 5)}"
        self.clock += dt.timedelta(seconds=rng.expovariate(1.0 / self.mean_gap))
        jitter = dt.timedelta(milliseconds=rng.gauss(0, 40))
        span = _hex(rng, 16)
        outcome = self.outcomes(rng)
        event: dict[str, Any] = {
            "id": f"{_hex(rng, 8)}-{_hex(rng, 4)}-7{_hex(rng, 3)}-{_hex(rng, 4)}-{_hex(rng, 12)}",
            "time": _stamp(self.clock + jitter),
            "actor": dict(actor),
            "action": action,
            "resource": {"type": kind, "id": self._resource_id(kind)},
            "outcome": outcome,
            "request_id": request_id,
            "trace_id": trace_id,
            "span_id": span,
            "source": {"service": service, "host": host, "region": region, "environment": env},
            "producer": self._producer(service, host),
        }
        metadata: dict[str, Any] = {}
        if parent_span:
            metadata["parent_span_id"] = parent_span
        if name == "k8s-apiserver":
            metadata["namespace"] = rng.choice(("default", "payments", "checkout", "kube-system",
                                                "monitoring", "ingress", "data"))
        if rng.random() < 0.08:
            metadata["ticket"] = f"INC-{rng.randint(1000, 9999)}"
        if outcome != "success" or rng.random() < 0.05:
            event["reason"] = rng.choice(REASONS).format(n=rng.randint(1000, 9999))
        last = action.rsplit(".", 1)[-1]
        if last in ("update", "change", "scale", "toggle", "attach_policy", "detach_policy"):
            before = {"replicas": rng.randint(1, 8)} if last == "scale" else {
                "role": rng.choice(("viewer", "editor", "admin")), "enabled": rng.random() < 0.5,
                "revision": rng.randint(1, 40), "version": f"v1.{rng.randint(0, 60)}.0"}
            after = dict(before)
            key = next(iter(after))
            after[key] = (after[key] + rng.randint(1, 4)) if isinstance(after[key], int) and not isinstance(after[key], bool) else rng.choice(("viewer", "editor", "admin", "owner"))
            if rng.random() < 0.3:
                after["labels"] = {"team": rng.choice(("core", "growth", "sre", "data"))}
            event["before"], event["after"] = before, after
        if metadata:
            event["metadata"] = metadata
        self.count += 1
        return event

    def story(self) -> list[dict[str, Any]]:
        """One trace: 1-3 requests, each fanning out over 1-4 services."""
        rng = self.rng
        human = rng.random() < 0.6
        actor: dict[str, Any]
        if human:
            actor = {"id": self.people(rng), "type": "user", "ip": rng.choice(self.ips),
                     "user_agent": rng.choice(USER_AGENTS)}
        else:
            actor = {"id": self.robots(rng), "type": "service"}
            if rng.random() < 0.5:
                actor["ip"] = rng.choice(self.ips)
        env, region = self.envs(rng), rng.choice(REGIONS)
        trace_id = _hex(rng, 32)
        events: list[dict[str, Any]] = []
        for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 3)):
            request_id = f"req_{_hex(rng, 20)}"
            parent: str | None = None
            for _hop in range(1 if rng.random() < 0.45 else rng.randint(2, 4)):
                event = self._event(actor, self.families(rng), request_id, trace_id, parent, env, region)
                parent = event["span_id"]
                events.append(event)
        return events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            yield from self.story()


def realistic_events(count: int, seed: int = 42, **options: Any) -> list[dict[str, Any]]:
    """``count`` realistic events (see the module docstring), deterministic for ``seed``."""
    return list(itertools.islice(Generator(seed, **options), count))
