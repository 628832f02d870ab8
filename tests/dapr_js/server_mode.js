// Dapr's JavaScript SDK (@dapr/dapr) as an app: a DaprServer in HTTP mode, its default, whose
// subscriptions layotto-rs reads from GET /dapr/subscribe and whose routes it POSTs events to.
// Unchanged SDK code: server.pubsub.subscribe, then events published through the server's own
// client (over layotto-rs's Dapr HTTP API). Run by tests/dapr_js.rs with APP_PORT and APP_ID
// (layotto-rs's --app-port and --app-id) and DAPR_HTTP_PORT set; prints one line per check and
// exits non-zero at the first failure.
const assert = require("node:assert/strict");
const { DaprServer, DaprPubSubStatusEnum } = require("@dapr/dapr");

const PUBSUB = "events";
const TOPIC = "orders";

// What the subscription received, in order, and who waits for the next arrival.
const received = [];
let wake = () => {};

// Waits until `done()` holds, at most `ms` milliseconds; answers whether it does.
async function until(done, ms) {
  const deadline = Date.now() + ms;
  while (!done()) {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await new Promise((resolve) => {
      wake = resolve;
      setTimeout(resolve, left);
    });
  }
  return true;
}

const label = (data) => (typeof data === "string" ? data : data.step);

async function main() {
  const server = new DaprServer({
    serverHost: "127.0.0.1",
    serverPort: process.env.APP_PORT,
    clientOptions: { daprHost: "127.0.0.1", daprPort: process.env.DAPR_HTTP_PORT },
  });
  const retried = new Set();
  await server.pubsub.subscribe(PUBSUB, TOPIC, async (data, headers) => {
    received.push({ data, headers });
    wake();
    const step = label(data);
    if (step === "retry-me" && !retried.has(step)) {
      retried.add(step);
      return DaprPubSubStatusEnum.RETRY;
    }
    if (step === "poison") return DaprPubSubStatusEnum.DROP;
    return DaprPubSubStatusEnum.SUCCESS;
  });
  await server.start();
  assert.equal((await server.client.metadata.get()).id, process.env.APP_ID);

  // layotto-rs reads /dapr/subscribe once this server listens: probe until events arrive.
  const deadline = Date.now() + 20000;
  for (;;) {
    await server.client.pubsub.publish(PUBSUB, TOPIC, { step: "probe" });
    if (await until(() => received.length > 0, 300)) break;
    assert.ok(Date.now() < deadline, "no event reached the app");
  }
  console.log("subscribed ok");

  for (const event of [{ step: "first", n: 1 }, { step: "retry-me" }, { step: "poison" }, "plain text", { step: "last" }]) {
    assert.deepEqual(await server.client.pubsub.publish(PUBSUB, TOPIC, event), {});
  }
  const arrived = await until(() => received.some(({ data }) => label(data) === "last"), 20000);
  assert.ok(arrived, `not every event arrived: ${JSON.stringify(received.map((r) => r.data))}`);
  const events = received.filter(({ data }) => label(data) !== "probe");
  assert.deepEqual(
    events.map(({ data }) => label(data)),
    ["first", "retry-me", "retry-me", "poison", "plain text", "last"],
  );
  assert.deepEqual(events[0].data, { step: "first", n: 1 });
  assert.equal(events[0].headers["content-type"], "application/cloudevents+json");
  assert.equal(events[0].headers["pubsubname"], PUBSUB);
  console.log("events ok");

  await server.stop();
  console.log("all ok");
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
