// Dapr's JavaScript SDK (@dapr/dapr) in gRPC mode against layotto-rs: unchanged SDK calls, each
// checked — what http_mode.js does, plus configuration. Run by tests/dapr_js.rs with
// DAPR_GRPC_PORT set to layotto-rs's grpc listener; prints one line per check and exits non-zero
// at the first failure. After "configuration subscribed" the test changes item `color` (until it
// reads "configuration ok").
const assert = require("node:assert/strict");
const { Code } = require("@connectrpc/connect");
const { CommunicationProtocolEnum, DaprClient, HttpMethod } = require("@dapr/dapr");

const STORE = "store";

// A rejection with gRPC status `code`.
function failsWith(code) {
  return (error) => {
    assert.equal(error.code, code, `${error}`);
    return true;
  };
}

async function main() {
  const client = new DaprClient({
    daprHost: "127.0.0.1",
    daprPort: process.env.DAPR_GRPC_PORT,
    communicationProtocol: CommunicationProtocolEnum.GRPC,
  });

  // Start-up: the SDK waits for GetMetadata to answer.
  await client.start();
  const metadata = await client.metadata.get();
  assert.equal(metadata.id, "app1");
  assert.ok(metadata.components.some((c) => c.name === STORE && c.type === "state.redis"));
  assert.equal(await client.metadata.set("owner", "js"), true);
  assert.equal((await client.metadata.get()).extended.owner, "js");
  assert.equal(await client.health.isHealthy(), true);
  console.log("metadata ok");

  // State with etags; an etag mismatch is ABORTED, as daprd answers it.
  assert.deepEqual(await client.state.save(STORE, [
    { key: "order", value: { id: 1, items: ["a"] } },
    { key: "note", value: "hello" },
  ]), {});
  assert.deepEqual(await client.state.get(STORE, "order"), { id: 1, items: ["a"] });
  assert.equal(await client.state.get(STORE, "note"), "hello");
  assert.equal(await client.state.get(STORE, "never"), "");
  const bulk = await client.state.getBulk(STORE, ["order", "note"]);
  assert.equal(bulk.length, 2);
  const etag = bulk.find((item) => item.key === "order").etag;
  assert.ok(etag);
  await assert.rejects(
    client.state.save(STORE, [{ key: "order", value: { id: 2 }, etag: "stale" }]),
    failsWith(Code.Aborted),
  );
  assert.deepEqual(await client.state.save(STORE, [{ key: "order", value: { id: 2 }, etag }]), {});
  assert.deepEqual(await client.state.get(STORE, "order"), { id: 2 });
  await assert.rejects(client.state.delete(STORE, "order", { etag }), failsWith(Code.Aborted));
  const current = (await client.state.getBulk(STORE, ["order"]))[0].etag;
  assert.deepEqual(await client.state.delete(STORE, "order", { etag: current }), {});
  assert.equal(await client.state.get(STORE, "order"), "");
  await client.state.transaction(STORE, [
    { operation: "upsert", request: { key: "t1", value: "one" } },
    { operation: "delete", request: { key: "note" } },
  ]);
  assert.equal(await client.state.get(STORE, "t1"), "one");
  assert.equal(await client.state.get(STORE, "note"), "");
  await assert.rejects(
    client.state.save("nope", [{ key: "k", value: 1 }]),
    failsWith(Code.InvalidArgument),
  );
  console.log("state ok");

  // Publish.
  assert.deepEqual(await client.pubsub.publish("events", "orders", { orderId: 7 }), {});
  assert.deepEqual(await client.pubsub.publish("events", "orders", "plain text"), {});
  assert.deepEqual(
    await client.pubsub.publishBulk("events", "bulk-orders", [{ orderId: 8 }, "more text"]),
    { failedMessages: [] },
  );
  console.log("publish ok");

  // State query (the in-memory store; redis has none).
  await client.state.save("memory", [
    { key: "p1", value: { state: "WA", id: 1 } },
    { key: "p2", value: { state: "OR", id: 2 } },
  ]);
  const queried = await client.state.query("memory", {
    filter: { EQ: { state: "WA" } },
    sort: [],
    page: { limit: 10 },
  });
  assert.deepEqual(
    queried.results.map((r) => [r.key, JSON.parse(Buffer.from(r.data).toString())]),
    [["p1", { state: "WA", id: 1 }]],
  );
  console.log("query ok");

  // Bindings and invocation reach the test's HTTP app.
  const created = await client.binding.send("http", "post", { n: 1 }, { path: "/items" });
  assert.equal(Buffer.from(created.data).toString(), 'created {"n":1}');
  const invoked = await client.invoker.invoke("app2", "orders/42", HttpMethod.GET);
  assert.deepEqual(invoked, { method: "GET", target: "/orders/42" });
  console.log("bindings and invoke ok");

  // Secrets.
  assert.deepEqual(await client.secret.get("files", "db:user"), { "db:user": "admin" });
  assert.deepEqual(await client.secret.getBulk("files"), {
    "db:user": { "db:user": "admin" },
    token: { token: "s3cr3t" },
  });
  console.log("secrets ok");

  // Configuration: the item the test saved, then a change of it while subscribed.
  const got = await client.configuration.get("config", ["color"]);
  assert.equal(got.items.color.value, "red");
  let changed;
  const change = new Promise((resolve) => {
    changed = resolve;
  });
  const subscription = await client.configuration.subscribeWithKeys("config", ["color"], (update) => {
    changed(update);
  });
  console.log("configuration subscribed");
  const update = await change;
  assert.equal(update.items.color.value, "blue");
  await subscription.stop();
  console.log("configuration ok");

  // Lock and unlock.
  assert.deepEqual(await client.lock.lock("locks", "res", "owner-1", 30), { success: true });
  assert.deepEqual(await client.lock.lock("locks", "res", "owner-2", 30), { success: false });
  assert.deepEqual(await client.lock.unlock("locks", "res", "owner-2"), { status: 2 });
  assert.deepEqual(await client.lock.unlock("locks", "res", "owner-1"), { status: 0 });
  assert.deepEqual(await client.lock.unlock("locks", "res", "owner-1"), { status: 1 });
  console.log("lock ok");

  await client.stop();
  console.log("all ok");
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
