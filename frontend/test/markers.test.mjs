import assert from "node:assert/strict";
import { test } from "node:test";
import {
  ERROR_TAG,
  adjacentMarker,
  clampTime,
  countMarkers,
  formatClock,
  firstPageAt,
  formatDuration,
  inactivePeriods,
  isUserInteraction,
  momentTarget,
  timeSpan,
  timelineMarkers,
} from "../src/viewer/markers.js";

// A workflow as the recorder writes it (rrweb's event numbers): a page, checkouts that
// repeat its Meta, clicks, typing, a navigation, an error the page logged, a quiet stretch.
const T0 = 1_700_000_000_000;
const meta = (t, href) => ({ type: 4, timestamp: T0 + t, data: { href, width: 1280, height: 800 } });
const full = (t) => ({ type: 2, timestamp: T0 + t, data: { node: { type: 0, childNodes: [], id: 1 }, initialOffset: { top: 0, left: 0 } } });
const click = (t) => ({ type: 3, timestamp: T0 + t, data: { source: 2, type: 2, id: 7, x: 10, y: 20 } });
const mouseUp = (t) => ({ type: 3, timestamp: T0 + t, data: { source: 2, type: 0, id: 7, x: 10, y: 20 } });
const move = (t) => ({ type: 3, timestamp: T0 + t, data: { source: 1, positions: [{ x: 1, y: 2, id: 7, timeOffset: 0 }] } });
const input = (t) => ({ type: 3, timestamp: T0 + t, data: { source: 5, id: 9, text: "a", isChecked: false } });
const mutation = (t) => ({ type: 3, timestamp: T0 + t, data: { source: 0, adds: [], removes: [], texts: [], attributes: [] } });
const error = (t, message) => ({ type: 5, timestamp: T0 + t, data: { tag: ERROR_TAG, payload: { message } } });
const other = (t) => ({ type: 5, timestamp: T0 + t, data: { tag: "something-else", payload: {} } });

const WORKFLOW = [
  meta(0, "http://site.test/index.html"), full(3),
  move(500), mouseUp(990), click(1000), mutation(1010),
  meta(5000, "http://site.test/index.html"), full(5002), // a checkout: same page
  click(6000),
  meta(7000, "http://site.test/form.html"), full(7040),
  input(7500), input(7600), error(8000, "TypeError: x is undefined"), other(8100),
  mutation(12_000), mutation(20_000), // the page changes by itself: no interaction
  click(30_000),
  meta(31_000, "http://site.test/about.html"), full(31_020),
  mutation(45_000),
];

test("markers: navigations at the snapshot that shows them, clicks, errors; checkouts are none", () => {
  const markers = timelineMarkers(WORKFLOW);
  assert.deepEqual(markers.map((m) => [m.kind, m.at]), [
    ["navigation", 4], ["click", 1001], ["click", 6001], ["navigation", 7041],
    ["error", 8001], ["click", 30_001], ["navigation", 31_021],
  ]);
  const navigations = markers.filter((m) => m.kind === "navigation");
  assert.deepEqual(navigations.map((m) => m.href), ["http://site.test/index.html", "http://site.test/form.html", "http://site.test/about.html"]);
  assert.equal(markers.find((m) => m.kind === "error").label, "TypeError: x is undefined");
  assert.deepEqual(countMarkers(markers), { navigation: 3, click: 3, error: 1 });
});

test("markers do not depend on the order events arrive in", () => {
  const shuffled = [...WORKFLOW].reverse();
  assert.deepEqual(timelineMarkers(shuffled), timelineMarkers(WORKFLOW));
});

test("markers: an error without a message still shows, a Meta without its snapshot keeps its own time", () => {
  const markers = timelineMarkers([meta(0, "http://a.test/"), full(1), { type: 5, timestamp: T0 + 50, data: { tag: ERROR_TAG, payload: {} } }, meta(90, "http://b.test/")]);
  assert.deepEqual(markers.map((m) => [m.kind, m.at, m.label]), [
    ["navigation", 2, "http://a.test/"], ["error", 51, "error"], ["navigation", 91, "http://b.test/"],
  ]);
  assert.deepEqual(timelineMarkers([]), []);
});

test("the first page shows 1 ms after the first full snapshot", () => {
  assert.equal(firstPageAt(WORKFLOW), 4);
  assert.equal(firstPageAt([other(0), meta(10, "x"), full(30), full(5030)]), 31);
  assert.equal(firstPageAt([meta(0, "x"), other(10)]), 0);
});

test("time span as rrweb's getMetaData reckons it", () => {
  assert.deepEqual(timeSpan(WORKFLOW), { startTime: T0, endTime: T0 + 45_000, totalTime: 45_000 });
  assert.deepEqual(timeSpan([]), { startTime: 0, endTime: 0, totalTime: 0 });
});

test("user interactions are rrweb's: mouse, scroll, resize, input; not mutations or snapshots", () => {
  assert.equal(isUserInteraction(click(0)), true);
  assert.equal(isUserInteraction(move(0)), true);
  assert.equal(isUserInteraction(input(0)), true);
  assert.equal(isUserInteraction({ type: 3, timestamp: 0, data: { source: 3 } }), true); // scroll
  assert.equal(isUserInteraction({ type: 3, timestamp: 0, data: { source: 6 } }), false); // media
  assert.equal(isUserInteraction(mutation(0)), false);
  assert.equal(isUserInteraction(full(0)), false);
});

test("inactive stretches: gaps over the threshold between interactions, not the quiet tail", () => {
  // Interactions at 500 .. 7600, then none until the click at 30 000: that gap is skipped.
  assert.deepEqual(inactivePeriods(WORKFLOW), [{ start: 7600, end: 30_000 }]);
  // From the start too: nothing happens for 12 s, then a click.
  assert.deepEqual(inactivePeriods([meta(0, "x"), full(1), click(12_000)]), [{ start: 0, end: 12_000 }]);
  assert.deepEqual(inactivePeriods(WORKFLOW, 5000), [{ start: 7600, end: 30_000 }]);
  assert.deepEqual(inactivePeriods(WORKFLOW, 100), [
    { start: 0, end: 500 }, { start: 500, end: 990 }, { start: 1000, end: 6000 }, { start: 6000, end: 7500 }, { start: 7600, end: 30_000 },
  ]);
  assert.deepEqual(inactivePeriods([]), []);
});

test("clock and duration formatting", () => {
  assert.equal(formatClock(0), "0:00");
  assert.equal(formatClock(7_999), "0:07");
  assert.equal(formatClock(754_000), "12:34");
  assert.equal(formatClock(3_723_000), "1:02:03");
  assert.equal(formatClock(-5), "0:00");
  assert.equal(formatClock(Number.NaN), "0:00");
  assert.equal(formatDuration(850), "850 ms");
  assert.equal(formatDuration(42_500), "42 s");
  assert.equal(formatDuration(185_000), "3 min 5 s");
  assert.equal(formatDuration(120_000), "2 min");
  assert.equal(formatDuration(3_720_000), "1 h 2 min");
  assert.equal(formatDuration(7_200_000), "2 h");
  assert.equal(formatDuration(undefined), "");
});

test("seeking stays inside the recording; jumping goes to the next or previous marker", () => {
  assert.equal(clampTime(-10, 100), 0);
  assert.equal(clampTime(150, 100), 100);
  assert.equal(clampTime(Number.NaN, 100), 0);
  const markers = timelineMarkers(WORKFLOW);
  assert.equal(adjacentMarker(markers, 0, 1).at, 1001);
  assert.equal(adjacentMarker(markers, 1001, 1).at, 6001); // from a marker, the next one
  assert.equal(adjacentMarker(markers, 7041, -1).at, 6001);
  assert.equal(adjacentMarker(markers, 31_021, 1), null);
  assert.equal(adjacentMarker(markers, 4, -1), null);
});

test("a click is labelled with its target, as the snapshot and the mutations since tell it", () => {
  const el = (id, tagName, attributes, ...childNodes) => ({ type: 2, id, tagName, attributes, childNodes });
  const text = (id, textContent) => ({ type: 3, id, textContent });
  const page = { type: 0, id: 1, childNodes: [el(2, "HTML", {}, el(3, "body", {},
    el(7, "button", { id: "add-item" }, text(8, "  Add\n item ")),
    el(9, "a", { class: "nav  primary" }, text(10, "A very long link text that goes on and on past forty characters")),
    el(11, "div", {}, el(12, "script", {}, text(13, "var x = 1;")), el(14, "input", { "aria-label": "Search" })),
  ))] };
  const snapshot = { type: 2, timestamp: T0 + 1, data: { node: page, initialOffset: { top: 0, left: 0 } } };
  const mutate = (t, data) => ({ type: 3, timestamp: T0 + t, data: { source: 0, adds: [], removes: [], texts: [], attributes: [], ...data } });
  const clickOn = (t, id) => ({ type: 3, timestamp: T0 + t, data: { source: 2, type: 2, id, x: 0, y: 0 } });
  const events = [
    meta(0, "http://site.test/"), snapshot,
    clickOn(10, 7), clickOn(20, 9), clickOn(30, 11), clickOn(40, 14),
    mutate(50, { adds: [{ parentId: 3, nextId: null, node: el(20, "li", { class: "item" }, text(21, "Item 1")) }] }),
    clickOn(60, 20),
    mutate(70, { texts: [{ id: 8, value: "Add another" }], removes: [{ parentId: 3, id: 20 }] }),
    clickOn(80, 7), clickOn(90, 20), clickOn(100, 999),
  ];
  assert.deepEqual(timelineMarkers(events).filter((m) => m.kind === "click").map((m) => m.label), [
    'click on button#add-item "Add item"',
    'click on a.nav "A very long link text that goes on and…"',
    "click on div", // a script's text is no label
    'click on input "Search"',
    'click on li.item "Item 1"',
    'click on button#add-item "Add another"',
    "click", // removed
    "click", // never seen
  ]);
});

test("a moment's seek target: just after it, or after the snapshot that follows its Meta", () => {
  assert.equal(momentTarget(WORKFLOW, 1000), 1001); // the click
  assert.equal(momentTarget(WORKFLOW, 7000), 7041); // form.html's Meta: its snapshot at 7040
  assert.equal(momentTarget(WORKFLOW, 5000), 5003); // a checkout's Meta, snapshot at 5002
  assert.equal(momentTarget(WORKFLOW, 44_000), 44_001);
  assert.equal(momentTarget([meta(0, "x"), mutation(50)], 0), 1); // no snapshot follows
  assert.equal(momentTarget(WORKFLOW, -20), 4); // the start: the first page
  assert.equal(momentTarget([], 10), 0);
});

test("the recorder's click events are the clicks when a recording has them", () => {
  const recorderClick = (t, selector, text) => ({ type: 5, timestamp: T0 + t, data: { tag: "rrstream.click", payload: { selector, text } } });
  const events = [
    meta(0, "http://site.test/"), full(1),
    recorderClick(280, "#nav-form", "Sign up"), // rrweb's own click on this link was lost
    recorderClick(900, "#add-item", "Add item"), click(901),
    recorderClick(1500, "#secret", ""), // a masked element: its text is left out
  ];
  assert.deepEqual(timelineMarkers(events).filter((m) => m.kind === "click").map((m) => [m.at, m.label]), [
    [281, "click on #nav-form “Sign up”"], [901, "click on #add-item “Add item”"], [1501, "click on #secret"],
  ]);
});
