"""Dapr's Python SDK as an app (unchanged, `dapr[grpc]` from PyPI): `dapr.ext.grpc.App` with
`@app.subscribe` serves Dapr's AppCallback at APP_PORT, where layotto-rs (its app channel,
`app_protocol` grpc) delivers the events this program publishes through layotto-rs with
`DaprClient` — routed by a CEL rule (`rule=Rule(...)`), the dropped one moved to the
subscription's `dead_letter_topic` —, and `@app.method` answers the invocations of its own app id that `DaprClient`
makes over HTTP (the SDK's default) and over gRPC. Run by tests/dapr_python_sdk.rs; prints `ok <step>` and `all done`, a failed check
raises (exit non-zero with the traceback).
"""

import json
import os
import threading
import time

from dapr.clients import DaprClient
from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App, InvokeMethodRequest, InvokeMethodResponse, Rule

app = App()
received = []
prioritized = []
dead_letters = []
arrived = threading.Condition()
retried = set()


@app.subscribe(pubsub_name="events", topic="orders", dead_letter_topic="orders-dead")
def orders(event):
    data = json.loads(event.data)
    with arrived:
        received.append((data, event))
        arrived.notify_all()
    if data["step"] == "retry-me" and "retry-me" not in retried:
        retried.add("retry-me")
        return TopicEventResponse("retry")
    if data["step"] == "poison":
        return TopicEventResponse("drop")
    return TopicEventResponse("success")


@app.method(name="greet")
def greet(request: InvokeMethodRequest) -> InvokeMethodResponse:
    return InvokeMethodResponse(f"hello {request.text()}", "text/plain")


@app.subscribe(
    pubsub_name="events", topic="orders", rule=Rule('event.data.step == "priority"', 1)
)
def priority(event):
    with arrived:
        prioritized.append(json.loads(event.data))
        arrived.notify_all()
    return TopicEventResponse("success")


@app.subscribe(pubsub_name="events", topic="orders-dead")
def dead(event):
    with arrived:
        dead_letters.append((json.loads(event.data), event))
        arrived.notify_all()
    return TopicEventResponse("success")


def wait_for(done, seconds):
    """Waits until done() holds, at most `seconds`; answers whether it does."""
    with arrived:
        return arrived.wait_for(done, timeout=seconds)


threading.Thread(
    target=app.run, args=(int(os.environ["APP_PORT"]), "127.0.0.1"), daemon=True
).start()


def publish(client, step):
    client.publish_event(
        "events",
        "orders",
        json.dumps({"step": step}),
        data_content_type="application/json",
        publish_metadata={"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
    )


with DaprClient() as client:
    # layotto-rs asks ListTopicSubscriptions once this server answers: probe until subscribed.
    deadline = time.monotonic() + 30
    while True:
        publish(client, "probe")
        if wait_for(lambda: received, 0.3):
            break
        assert time.monotonic() < deadline, "no event reached the app"
    print("ok subscribed", flush=True)

    for step in ["first", "retry-me", "poison", "last"]:
        publish(client, step)
    assert wait_for(lambda: any(d["step"] == "last" for d, _ in received), 20), received
    events = [(d, e) for d, e in received if d["step"] != "probe"]
    assert [d["step"] for d, _ in events] == ["first", "retry-me", "retry-me", "poison", "last"], events
    first = events[0][1]
    assert first.Source() == "app1", first.Source()
    assert first.EventType() == "com.dapr.event.sent", first.EventType()
    assert first.ContentType() == "application/json", first.ContentType()
    assert first.Subject() == "orders", first.Subject()
    extensions = first.Extensions()
    assert extensions["pubsubname"] == "events", extensions
    assert extensions["traceparent"].startswith("00-0af7651916cd43dd"), extensions
    assert extensions["_metadata_pubsubname"] == "events", extensions
    print("ok events", flush=True)

    # The dropped event went to the dead-letter topic; the rule routes to its own handler.
    assert wait_for(lambda: dead_letters, 20), "no dead letter"
    assert [d["step"] for d, _ in dead_letters] == ["poison"], dead_letters
    publish(client, "priority")
    assert wait_for(lambda: prioritized, 20), "the routed event did not arrive"
    assert prioritized == [{"step": "priority"}], prioritized
    assert all(d["step"] != "priority" for d, _ in received), received
    print("ok routes and dead letters", flush=True)

for protocol in ["http", "grpc"]:
    os.environ["DAPR_API_METHOD_INVOCATION_PROTOCOL"] = protocol
    with DaprClient() as invoker:
        answer = invoker.invoke_method("app1", "greet", data="bob", content_type="text/plain")
        assert answer.text() == "hello bob", (protocol, answer.text())
        assert answer.content_type.startswith("text/plain"), (protocol, answer.content_type)
print("ok invoke", flush=True)

app.stop()
print("all done", flush=True)
