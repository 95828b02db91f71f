"""Governance on the Kafka runtime: every worker follows the rules from the governance
partition and checks its callers; forwarded reads carry the original caller, checked by the
owner; a worker that joins later replays the rules and enforces the same ones."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from memstream.streams.kafka.local import LocalDeployment, WorkerProcess
from memstream.streams.kafka.partitioning import partition_of

pytestmark = pytest.mark.slow  # two workers loading the embedding model, a third joining

PARTITIONS = 4


@pytest.fixture
def secured(kafka_broker, tmp_path) -> Iterator[LocalDeployment]:
    d = LocalDeployment(kafka_broker.bootstrap, tmp_path, partitions=PARTITIONS, auth=True)
    try:
        yield d
    finally:
        d.close()


def _bearer(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


def _until(check: Callable[[], httpx.Response], status: int, timeout: float = 30.0):
    """Call ``check`` until it answers ``status`` (the rules reach a worker's follower
    within its fetch wait); the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        r = check()
        if r.status_code == status or time.monotonic() > deadline:
            assert r.status_code == status, (r.status_code, r.text)
            return r
        time.sleep(0.1)


def _namespaces(owners: dict[int, WorkerProcess]) -> tuple[str, str]:
    """A namespace of a partition w1 owns, and one of a partition w2 owns."""
    found: dict[str, str] = {}
    for i in range(200):
        ns = f"team/n{i}"
        found.setdefault(owners[partition_of(ns.encode(), PARTITIONS)].name, ns)
    return found["w1"], found["w2"]


def test_rules_travel_on_the_log_and_every_worker_enforces_them(secured, tmp_path) -> None:
    d = secured
    # with authentication on, a worker needs the cluster token: it names the variable
    refused = subprocess.run(
        [sys.executable, "-m", "memstream", "worker", "--data", str(tmp_path / "x")],
        env=d.env(MEMSTREAM_CLUSTER_TOKEN=""),
        capture_output=True,
        timeout=120,
    )
    assert refused.returncode == 2
    assert b"MEMSTREAM_CLUSTER_TOKEN" in refused.stderr

    w1 = d.start_worker("w1", MEMSTREAM_SEMANTIC="1")
    w2 = d.start_worker("w2", MEMSTREAM_SEMANTIC="1")
    owners = d.serving([w1, w2])
    ns_a, ns_b = _namespaces(owners)  # on w1's partitions, on w2's

    # the deployment's first admin, appended through the requests topic
    made = subprocess.run(
        [sys.executable, "-m", "memstream", "admin-token"],
        env=d.env(),
        capture_output=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr.decode()
    admin = _bearer(made.stdout.decode().strip())

    h1 = httpx.Client(base_url=w1.url, timeout=60)
    h2 = httpx.Client(base_url=w2.url, timeout=60)
    # no token: 401 on both, with the challenge
    r = h2.get("/v1/memories", params={"namespace": ns_b})
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    assert h1.get("/v1/status").status_code == 401

    # the admin's token works on every worker once their followers read it
    _until(lambda: h2.get("/v1/rules", headers=admin), 200)
    _until(lambda: h1.get("/v1/rules", headers=admin), 200)
    r = h1.post("/v1/principals", json={"name": "alice"}, headers=admin)
    assert r.status_code == 200, r.text
    issued = h1.post("/v1/tokens", json={"principal": "alice"}, headers=admin)
    assert issued.status_code == 201, issued.text
    alice = _bearer(issued.json()["token"])
    texts = {
        ns_a: "The deploy freeze starts on Friday at noon",
        ns_b: "The deploy window opens on Monday morning",
    }
    ids = {}
    for ns, text in texts.items():
        r = h1.post("/v1/memories", json={"namespace": ns, "text": text}, headers=admin)
        assert r.status_code == 201, r.text
        ids[ns] = r.json()["memory_id"]

    # alice is known everywhere but holds no grant: 403, on her own worker and forwarded
    b_list = {"namespace": ns_b}
    r = _until(lambda: h2.get("/v1/memories", params=b_list, headers=alice), 403)
    assert r.json()["missing"] == f"read on {ns_b}"
    assert h1.get("/v1/memories", params=b_list, headers=alice).status_code == 403

    # a grant appended through w1 is enforced by w2, and by w1 on w2's behalf
    r = h1.post(
        "/v1/grants", json={"to": "alice", "modes": ["read"], "object": ns_b}, headers=admin
    )
    assert r.status_code == 201, r.text
    grant_id = r.json()["grant_id"]
    r = _until(lambda: h2.get("/v1/memories", params=b_list, headers=alice), 200)
    assert [m["memory_id"] for m in r.json()["memories"]] == [ids[ns_b]]
    r = _until(lambda: h1.get("/v1/memories", params=b_list, headers=alice), 200)
    assert [m["memory_id"] for m in r.json()["memories"]] == [ids[ns_b]]
    r = h1.get(f"/v1/memories/{ids[ns_a]}", params={"namespace": ns_a}, headers=alice)
    assert r.status_code == 403

    # searches: the admin finds both memories; alice, through either worker, only ns_b's
    query = {"query": "when is the deploy window and the deploy freeze?", "k": 10}

    def found(client: httpx.Client, who: dict[str, str], **body) -> set[str]:
        r = client.post("/v1/search", json={**query, **body}, headers=who)
        assert r.status_code == 200, r.text
        return {h["memory"]["memory_id"] for h in r.json()["hits"]}

    every = {ids[ns_a], ids[ns_b]}
    wanted = {"namespaces": [ns_a, ns_b], "min_offset": 0}
    deadline = time.monotonic() + 60
    while found(h1, admin, **wanted) != every and time.monotonic() < deadline:
        time.sleep(0.2)  # the indexes of both partitions reach the creates
    assert found(h1, admin) == every and found(h2, admin) == every
    for client in (h1, h2):
        assert found(client, alice) == {ids[ns_b]}
        assert found(client, alice, namespaces=[ns_a, ns_b]) == {ids[ns_b]}
        assert found(client, alice, namespaces=[ns_a]) == set()

    # /ready says the rules are read
    r = h1.get("/ready", headers=admin)
    assert r.status_code == 200 and r.json()["governance"]["ready"] is True

    # revoked through w2: w1 refuses again, on its own and forwarded
    assert h2.delete(f"/v1/grants/{grant_id}", headers=admin).status_code == 200
    _until(lambda: h1.get("/v1/memories", params=b_list, headers=alice), 403)
    _until(lambda: h2.get("/v1/memories", params=b_list, headers=alice), 403)
    for client in (h1, h2):
        assert found(client, alice) == set()

    # a forwarded call without the cluster token is refused, whatever it claims
    r = h2.get(
        "/v1/memories",
        params=b_list,
        headers={"X-Memstream-Forwarded": "1", "X-Memstream-Principal": "admin"},
    )
    assert r.status_code == 401

    # a worker joining later replays the governance partition: the same rules, enforced
    rules = h1.get("/v1/rules", headers=admin).json()
    assert d.stop(w2) == 0
    w3 = d.start_worker("w3", MEMSTREAM_SEMANTIC="0")
    d.serving([w1, w3])
    h3 = httpx.Client(base_url=w3.url, timeout=60)
    assert h3.get("/v1/rules", headers=admin).json() == rules
    b_list_of = {"namespace": ns_b}
    assert h3.get("/v1/memories", params=b_list_of).status_code == 401
    assert h3.get("/v1/memories", params=b_list_of, headers=alice).status_code == 403
    r = h3.get("/v1/memories", params=b_list_of, headers=admin)
    assert r.status_code == 200 and [m["memory_id"] for m in r.json()["memories"]] == [ids[ns_b]]
    r = h3.post(
        "/v1/grants", json={"to": "alice", "modes": ["read"], "object": ns_a}, headers=admin
    )
    assert r.status_code == 201, r.text
    a_get = {"namespace": ns_a}
    _until(lambda: h1.get(f"/v1/memories/{ids[ns_a]}", params=a_get, headers=alice), 200)
    r = _until(lambda: h3.get(f"/v1/memories/{ids[ns_a]}", params=a_get, headers=alice), 200)
    assert r.json()["text"] == texts[ns_a]
    for c in (h1, h2, h3):
        c.close()
