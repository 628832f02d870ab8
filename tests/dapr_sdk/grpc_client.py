"""Dapr's Python SDK (unchanged, `dapr` from PyPI) against layotto-rs: run by tests/dapr_python_sdk.rs.

The sidecar's address comes from Dapr's own environment variables (DAPR_RUNTIME_HOST,
DAPR_GRPC_PORT, DAPR_HTTP_PORT), as for daprd. Each step prints `ok <step>`;
a failed check raises, so the process exits non-zero with the traceback.
"""

import json
import threading

import grpc
from dapr.clients import DaprClient
from dapr.clients.exceptions import DaprGrpcError
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import StateItem


def step(name):
    print(f"ok {name}", flush=True)


with DaprClient() as d:
    # State: save, get with its etag, a stale etag refused, bulk, transaction, query, delete.
    d.save_state("store", "order-1", json.dumps({"id": 1, "status": "new"}))
    got = d.get_state("store", "order-1")
    assert json.loads(got.data) == {"id": 1, "status": "new"}, got.data
    assert got.etag, "an etag"
    try:
        d.save_state("store", "order-1", "x", etag="999999")
        raise AssertionError("a stale etag was accepted")
    except DaprGrpcError as err:
        assert err.code() == grpc.StatusCode.ABORTED, err.code()
        assert "possible etag mismatch" in err.details(), err.details()
    d.save_state("store", "order-1", json.dumps({"id": 1, "status": "paid"}), etag=got.etag)
    step("state save/get/etag")
    d.save_bulk_state("store", [StateItem("order-2", json.dumps({"id": 2, "status": "new"})),
                                StateItem("order-3", json.dumps({"id": 3, "status": "new"}))])
    bulk = d.get_bulk_state("store", ["order-1", "order-2", "absent"])
    assert [(i.key, bool(i.data)) for i in bulk.items] == [
        ("order-1", True), ("order-2", True), ("absent", False)], bulk.items
    d.execute_state_transaction("store", [
        TransactionalStateOperation(key="order-4", data=json.dumps({"id": 4, "status": "new"})),
        TransactionalStateOperation(key="order-3", operation_type=TransactionOperationType.delete),
    ])
    assert d.get_state("store", "order-3").data == b""
    d.delete_state("store", "order-2")
    assert d.get_state("store", "order-2").data == b""
    step("state bulk/transaction/delete")

    # Pub/sub: a streaming subscription receives every published event.
    subscription = d.subscribe("events", "orders")
    for n in range(5):
        d.publish_event("events", "orders", json.dumps({"n": n}), data_content_type="application/json")
    seen = []
    while len(seen) < 5:
        message = subscription.next_message()
        if message is None:
            continue
        seen.append(message.data()["n"])
        subscription.respond_success(message)
    subscription.close()
    assert seen == [0, 1, 2, 3, 4], seen
    step("publish and streaming subscribe")

    # Secrets.
    assert d.get_secret("secrets", "db-password").secret == {"db-password": "pw"}
    assert "db-password" in d.get_bulk_secret("secrets").secrets
    step("secrets")

    # Configuration: get, then a subscription whose handler sees a change.
    items = d.get_configuration("config", ["color"]).items
    assert items["color"].value == "red", items
    changed = threading.Event()

    def on_change(_id, response):
        if "color" in response.items and response.items["color"].value == "blue":
            changed.set()

    subscription_id = d.subscribe_configuration("config", ["color"], on_change)
    assert subscription_id, "a subscription id"
    print(f"subscribed {subscription_id}", flush=True)
    # The test changes the item once it sees the line above.
    assert changed.wait(20), "no configuration change arrived"
    assert d.unsubscribe_configuration("config", subscription_id)
    step("configuration get/subscribe/unsubscribe")

    # Lock.
    assert d.try_lock("locks", "res", "owner-a", 30).success
    assert not d.try_lock("locks", "res", "owner-b", 30).success
    assert d.unlock("locks", "res", "owner-b").status.name == "lock_belongs_to_others"
    assert d.unlock("locks", "res", "owner-a").status.name == "success"
    step("lock/unlock")

    # Metadata.
    d.set_metadata("owner", "team-a")
    metadata = d.get_metadata()
    assert metadata.application_id == "app1", metadata.application_id
    types = {c.name: c.type for c in metadata.registered_components}
    assert types["store"] == "state.redis", types
    assert metadata.extended_metadata["owner"] == "team-a", metadata.extended_metadata
    step("metadata")
print("all done", flush=True)
