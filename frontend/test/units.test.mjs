import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, formatDetail, listSessions, startSession } from "../src/viewer/api.js";
import { backoffDelay } from "../src/viewer/backoff.js";
import { fitInto } from "../src/viewer/fit.js";
import { SlidingWindow } from "../src/viewer/meter.js";
import { formatAge, pickSession, sessionTitle } from "../src/viewer/sessions.js";
import { parseSteps } from "../src/viewer/start-form.js";

test("backoff grows exponentially with jitter, capped", () => {
  assert.equal(backoffDelay(0, { random: () => 0 }), 250);
  assert.equal(backoffDelay(0, { random: () => 1 }), 500);
  assert.equal(backoffDelay(3, { random: () => 1 }), 4000);
  assert.equal(backoffDelay(50, { random: () => 1 }), 15_000);
  assert.equal(backoffDelay(50, { random: () => 0 }), 7500);
});

test("fitInto scales a page into a box, centred", () => {
  assert.deepEqual(fitInto({ width: 640, height: 800 }, { width: 1280, height: 800 }), { scale: 0.5, x: 0, y: 200 });
  assert.deepEqual(fitInto({ width: 1000, height: 400 }, { width: 1000, height: 800 }), { scale: 0.5, x: 250, y: 0 });
  assert.deepEqual(fitInto({ width: 0, height: 0 }, { width: 1000, height: 800 }), { scale: 1, x: 0, y: 0 });
});

test("sliding window: rate over the window, median of recent values", () => {
  let now = 0;
  const w = new SlidingWindow({ windowMs: 5000, now: () => now });
  assert.equal(w.median(), null);
  for (let i = 0; i < 10; i++) {
    now += 500;
    w.add(100);
  }
  assert.equal(w.rate(), 200); // 1000 per 5 s
  now = 5000;
  w.add(1);
  w.add(1000);
  assert.equal(w.median(), 100);
  now = 20_000;
  assert.equal(w.rate(), 0);
  assert.equal(w.median(), null);
});

test("a young window divides by its age, at least a second", () => {
  let now = 0;
  const w = new SlidingWindow({ windowMs: 5000, now: () => now });
  now = 2000;
  w.add(10);
  assert.equal(w.rate(), 5);
});

test("formatDetail reads FastAPI details", () => {
  assert.equal(formatDetail("session not found"), "session not found");
  assert.equal(
    formatDetail([{ loc: ["body", "url"], msg: "Input should be a valid URL", type: "url_parsing" }, { loc: ["body", "steps", 0, "selector"], msg: "Field required" }]),
    "url: Input should be a valid URL; steps.0.selector: Field required",
  );
  assert.equal(formatDetail(undefined), "");
  assert.equal(formatDetail({ a: 1 }), '{"a":1}');
});

function fakeFetch(status, body, seen = []) {
  return async (url, init) => {
    seen.push({ url, init });
    return { ok: status >= 200 && status < 300, status, statusText: "Status", text: async () => (typeof body === "string" ? body : JSON.stringify(body)) };
  };
}

test("API calls: JSON in and out, errors carry the server's detail", async () => {
  const seen = [];
  const info = { id: "abc" };
  assert.deepEqual(await startSession({ url: "https://x.test", steps: [] }, fakeFetch(201, info, seen)), info);
  assert.equal(seen[0].url, "/sessions");
  assert.equal(seen[0].init.method, "POST");
  assert.deepEqual(JSON.parse(seen[0].init.body), { url: "https://x.test", steps: [] });
  await assert.rejects(startSession({ url: "nope" }, fakeFetch(422, { detail: [{ loc: ["body", "url"], msg: "bad URL" }] })), (e) => e instanceof ApiError && e.status === 422 && e.message === "url: bad URL");
  await assert.rejects(listSessions(fakeFetch(502, "<html>bad gateway</html>")), /502/);
  await assert.rejects(listSessions(async () => { throw new TypeError("Failed to fetch"); }), /network error/);
  assert.deepEqual(await listSessions(fakeFetch(200, [info])), [info]);
});

test("steps: empty is none, otherwise a JSON array", () => {
  assert.deepEqual(parseSteps("  "), []);
  assert.deepEqual(parseSteps('[{"action":"wait","ms":5}]'), [{ action: "wait", ms: 5 }]);
  assert.throws(() => parseSteps("{"), /not valid JSON/);
  assert.throws(() => parseSteps('{"action":"wait"}'), /JSON array/);
});

test("session picking and labels", () => {
  const sessions = [
    { id: "a", state: "stopped", created_at: 30, start_url: "https://a.test/" },
    { id: "b", state: "running", created_at: 10, start_url: "https://b.test/x" },
    { id: "c", state: "running", created_at: 20, start_url: "https://c.test/", name: "Checkout flow" },
    { id: "d", state: "starting", created_at: 25, start_url: "https://d.test/" },
  ];
  assert.equal(pickSession(sessions).id, "c");
  assert.equal(pickSession([sessions[0], sessions[3]]).id, "d");
  assert.equal(pickSession([sessions[0]]), null);
  assert.equal(sessionTitle(sessions[1]), "b.test/x");
  assert.equal(sessionTitle(sessions[2]), "Checkout flow");
  assert.equal(formatAge({ created_at: 100 }, 190), "1 min ago");
  assert.equal(formatAge({ created_at: 100_000 }, 100_005), "5 s ago");
});
