// Dapr's JavaScript SDK (@dapr/dapr) in HTTP mode, its default, against layotto-rs: unchanged
// SDK calls, each checked. Run by tests/dapr_js.rs with DAPR_HTTP_PORT set to layotto-rs's
// dapr_http listener; prints one line per check and exits non-zero at the first failure.
const assert = require("node:assert/strict");
const { DaprClient, HttpMethod } = require("@dapr/dapr");

const STORE = "store";

function status(error) {
  return JSON.parse(error.message).status;
}

async function main() {
  const client = new DaprClient({
    daprHost: "127.0.0.1",
    daprPort: process.env.DAPR_HTTP_PORT,
  });

  // Start-up: the SDK waits for GET /v1.0/metadata to answer a body.
  await client.start();
  const metadata = await client.metadata.get();
  assert.equal(metadata.id, "app1");
  assert.ok(metadata.components.some((c) => c.name === STORE && c.type === "state.redis"));
  assert.equal(await client.metadata.set("owner", "js"), true);
  assert.equal((await client.metadata.get()).extended.owner, "js");
  assert.equal(await client.health.isHealthy(), true);
  console.log("metadata ok");

  // State with etags.
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
  const stale = await client.state.save(STORE, [{ key: "order", value: { id: 2 }, etag: "stale" }]);
  assert.equal(status(stale.error), 409);
  assert.deepEqual(await client.state.save(STORE, [{ key: "order", value: { id: 2 }, etag }]), {});
  assert.deepEqual(await client.state.get(STORE, "order"), { id: 2 });
  const staleDelete = await client.state.delete(STORE, "order", { etag });
  assert.equal(status(staleDelete.error), 409);
  const current = (await client.state.getBulk(STORE, ["order"]))[0].etag;
  assert.deepEqual(await client.state.delete(STORE, "order", { etag: current }), {});
  assert.equal(await client.state.get(STORE, "order"), "");
  await client.state.transaction(STORE, [
    { operation: "upsert", request: { key: "t1", value: "one" } },
    { operation: "delete", request: { key: "note" } },
  ]);
  assert.equal(await client.state.get(STORE, "t1"), "one");
  assert.equal(await client.state.get(STORE, "note"), "");
  const unknown = await client.state.save("nope", [{ key: "k", value: 1 }]);
  assert.equal(status(unknown.error), 400);
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
  assert.deepEqual(queried.results.map((r) => [r.key, r.data]), [["p1", { state: "WA", id: 1 }]]);
  console.log("query ok");

  // Bindings and invocation reach the test's HTTP app.
  const created = await client.binding.send("http", "post", { n: 1 }, { path: "/items" });
  assert.equal(created, 'created {"n":1}');
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
