import assert from "node:assert/strict";
import { test } from "node:test";
import { pagePoint, wheelDelta } from "../src/viewer/control.js";

test("a point on the scaled, centred replay is the page's CSS pixel", () => {
  // A 1280x720 page shown at half size, 40 px from the stage's left and 10 from its top.
  const rect = { left: 140, top: 60, width: 640, height: 360 };
  const page = { width: 1280, height: 720 };
  assert.deepEqual(pagePoint(140, 60, rect, page), { x: 0, y: 0, inside: true });
  assert.deepEqual(pagePoint(460, 240, rect, page), { x: 640, y: 360, inside: true });
  assert.deepEqual(pagePoint(140.25, 60.5, rect, page), { x: 0.5, y: 1, inside: true });
  assert.equal(pagePoint(100, 240, rect, page).inside, false); // left of the page
  assert.equal(pagePoint(780, 240, rect, page).inside, false); // its right edge is outside
});

test("a page shown larger than it is scales down the other way", () => {
  const rect = { left: 0, top: 0, width: 1600, height: 1200 };
  assert.deepEqual(pagePoint(800, 600, rect, { width: 800, height: 600 }), { x: 400, y: 300, inside: true });
});

test("wheel deltas in lines and pages become pixels", () => {
  assert.deepEqual(wheelDelta({ deltaX: 0, deltaY: 120, deltaMode: 0 }), { dx: 0, dy: 120 });
  assert.deepEqual(wheelDelta({ deltaX: 1, deltaY: 3, deltaMode: 1 }), { dx: 16, dy: 48 });
  assert.deepEqual(wheelDelta({ deltaX: 0, deltaY: 1, deltaMode: 2 }), { dx: 0, dy: 800 });
});
