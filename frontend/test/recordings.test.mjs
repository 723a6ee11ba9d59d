import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, listRecordings, recordingEvents, searchRecording, searchRecordings } from "../src/viewer/api.js";
import { hitText } from "../src/viewer/search-panel.js";
import { mergePages, recordingSummary, recordingTitle } from "../src/viewer/recordings.js";

function fakeFetch(status, body, seen = []) {
  return async (url, init) => {
    seen.push({ url, init });
    const text = typeof body === "string" ? body : JSON.stringify(body);
    return { ok: status >= 200 && status < 300, status, statusText: "Status", text: async () => text, body: null };
  };
}

// A response whose body arrives in pieces (byte arrays), as a large recording does.
function streamingFetch(pieces) {
  return async () => ({
    ok: true,
    status: 200,
    statusText: "OK",
    text: async () => { throw new Error("read as a whole although progress was asked for"); },
    body: new ReadableStream({
      start(controller) {
        for (const piece of pieces) controller.enqueue(piece);
        controller.close();
      },
    }),
  });
}

test("the recordings list is read a page at a time, with its filters", async () => {
  const seen = [];
  const page = { items: [{ id: "r1" }], next_cursor: "c2" };
  assert.deepEqual(await listRecordings({}, fakeFetch(200, page, seen)), { items: [{ id: "r1" }], nextCursor: "c2" });
  assert.equal(seen[0].url, "/recordings?limit=20");
  await listRecordings({ limit: 5, cursor: "c2", url: "example.com/a b", hasErrors: true, name: "demo" }, fakeFetch(200, page, seen));
  const query = new URL(seen[1].url, "http://x").searchParams;
  assert.deepEqual(Object.fromEntries(query), { limit: "5", cursor: "c2", name: "demo", url: "example.com/a b", has_errors: "true" });
  assert.deepEqual(await listRecordings({}, fakeFetch(200, { items: [], next_cursor: null })), { items: [], nextCursor: null });
  // The old bare array is not the listing's shape any more: said so, not misread.
  await assert.rejects(listRecordings({}, fakeFetch(200, [{ id: "r1" }])), /did not return \{items, next_cursor\}/);
  await assert.rejects(listRecordings({}, fakeFetch(401, { message: "an API key is required" })), (e) => e instanceof ApiError && e.status === 401 && e.message === "an API key is required");
});

test("a recording's events: a JSON array, with a viewer token when there is one", async () => {
  const seen = [];
  const events = [{ type: 4, timestamp: 1, data: {} }, { type: 2, timestamp: 2, data: {} }];
  assert.deepEqual(await recordingEvents("s/1", { token: "tok" }, fakeFetch(200, events, seen)), events);
  assert.equal(seen[0].url, "/recordings/s%2F1/events");
  assert.equal(seen[0].init.method, "GET");
  assert.equal(seen[0].init.headers.authorization, "Bearer tok");
  await recordingEvents("s1", {}, fakeFetch(200, events, seen));
  assert.equal(seen[1].init.headers.authorization, undefined); // no key in node's (absent) sessionStorage
});

test("a recording's events: errors in words", async () => {
  await assert.rejects(recordingEvents("gone", {}, fakeFetch(404, { message: "no recording gone" })), (e) => e.status === 404 && e.message === "no recording gone");
  await assert.rejects(recordingEvents("x", {}, fakeFetch(403, { message: "the viewer token is for another recording" })), (e) => e.status === 403 && /another recording/.test(e.message));
  await assert.rejects(recordingEvents("x", {}, fakeFetch(200, "[{\"type\": 4")), /not valid JSON/);
  await assert.rejects(recordingEvents("x", {}, fakeFetch(200, { events: [] })), /not a JSON array/);
  await assert.rejects(recordingEvents("x", {}, async () => { throw new TypeError("Failed to fetch"); }), /network error/);
});

test("a recording's events stream in with their size reported", async () => {
  const events = [{ type: 4, timestamp: 1, data: { href: "http://é.test/" } }, { type: 2, timestamp: 2, data: {} }];
  const bytes = new TextEncoder().encode(JSON.stringify(events));
  const cut = bytes.indexOf(0xc3) + 1; // inside the two bytes of "é": the decoder joins them
  const progress = [];
  const fetchImpl = streamingFetch([bytes.slice(0, cut), bytes.slice(cut)]);
  assert.deepEqual(await recordingEvents("x", { onProgress: (n) => progress.push(n) }, fetchImpl), events);
  assert.deepEqual(progress, [cut, bytes.length]);
});

test("recording titles and summaries", () => {
  const now = 10_000;
  assert.equal(recordingTitle({ id: "r1", name: "Checkout", urls: ["https://a.test/x"] }), "Checkout");
  assert.equal(recordingTitle({ id: "r1", urls: ["https://a.test/x", "https://a.test/y"] }), "a.test/x");
  assert.equal(recordingTitle({ id: "r1", urls: ["https://a.test/"] }), "a.test");
  assert.equal(recordingTitle({ id: "r1", urls: [] }), "r1");
  assert.equal(recordingTitle({ id: "r1" }), "r1");
  assert.equal(recordingSummary({ created_at: now - 120, ended_at: now - 60, duration_ms: 65_000, page_count: 3 }, now), "1 min 5 s · 3 pages · 2 min ago");
  assert.equal(recordingSummary({ created_at: now - 5, ended_at: null, duration_ms: 4000, page_count: 1 }, now), "recording now · 1 page · 5 s ago");
  assert.equal(recordingSummary({ created_at: now - 5, ended_at: now }, now), "5 s ago");
});

test("pages merge in order, a refreshed first page wins over later copies", () => {
  const first = [{ id: "c", v: 2 }, { id: "b", v: 2 }];
  const second = [{ id: "b", v: 1 }, { id: "a", v: 1 }];
  assert.deepEqual(mergePages([first, second]), [{ id: "c", v: 2 }, { id: "b", v: 2 }, { id: "a", v: 1 }]);
  assert.deepEqual(mergePages([]), []);
});

test("search within a recording: one kind at a time, hits in words on errors", async () => {
  const seen = [];
  const answer = { hits: [{ kind: "click", value: "#add-item", text: "Add item", offset_ms: 1200 }], truncated: false };
  assert.deepEqual(await searchRecording("r 1", { kind: "click", query: "add" }, fakeFetch(200, answer, seen)), answer);
  assert.equal(seen[0].url, "/recordings/r%201/search?click=add&limit=50");
  await assert.rejects(searchRecording("r", { kind: "html", query: "x" }, fakeFetch(200, answer)), /cannot search by html/);
  await assert.rejects(searchRecording("r", { kind: "text", query: "x" }, fakeFetch(401, { message: "an API key is required" })), (e) => e.status === 401);
  await assert.rejects(searchRecording("r", { kind: "text", query: "x" }, fakeFetch(200, [])), /did not return \{hits\}/);
});

test("search across recordings, and a hit in a line", async () => {
  const seen = [];
  const answer = { hits: [{ recording_id: "r1", kind: "url", value: "https://a.test/", text: "", offset_ms: 5 }], truncated: true };
  assert.deepEqual(await searchRecordings({ kind: "url", query: "a.test" }, fakeFetch(200, answer, seen)), answer);
  assert.equal(seen[0].url, "/search?url=a.test&limit=50");
  assert.equal(hitText({ kind: "click", value: "#add-item", text: "Add item" }), "#add-item “Add item”");
  assert.equal(hitText({ kind: "click", value: "#x", text: "" }), "#x");
  assert.equal(hitText({ kind: "text", value: "hello" }), "hello");
});
