// What a recording's timeline shows, read from its rrweb events: the moments worth a
// mark (navigations, clicks, errors the page logged) and the stretches rrweb's
// `skipInactive` fast-forwards. Pure: no DOM, so node tests run it over event arrays.

// rrweb's numbers (@rrweb/types), the few the timeline reads.
const FULL_SNAPSHOT = 2;
const INCREMENTAL = 3;
const META = 4;
const CUSTOM = 5;
const SOURCE_MUTATION = 0;
const SOURCE_MOUSE_INTERACTION = 2;
const SOURCE_INPUT = 5;
const MOUSE_CLICK = 2;
// rrweb-snapshot's serialized node types.
const NODE_ELEMENT = 2;
const NODE_TEXT = 3;
const LABEL_CHARS = 40;

/** The custom event (type 5) tag the in-page recorder gives errors the page logged. */
export const ERROR_TAG = "rrstream.error";
/** The custom event it adds for each click: `{selector, text}` of the element clicked. */
export const CLICK_TAG = "rrstream.click";

/** rrweb's default `inactivePeriodThreshold`: a gap between interactions it skips. */
export const INACTIVE_THRESHOLD_MS = 10_000;

/** The playback speeds offered, as rrweb-player offers them. */
export const SPEEDS = Object.freeze([1, 2, 4, 8]);

/**
 * The recording's span, as rrweb's Replayer.getMetaData() reckons it: from the first
 * event to the last, by timestamp (the Replayer sorts its events by timestamp too).
 * @returns {{startTime: number, endTime: number, totalTime: number}}
 */
export function timeSpan(events) {
  let start = Infinity;
  let end = -Infinity;
  for (const event of events) {
    if (event.timestamp < start) start = event.timestamp;
    if (event.timestamp > end) end = event.timestamp;
  }
  if (start === Infinity) return { startTime: 0, endTime: 0, totalTime: 0 };
  return { startTime: start, endTime: end, totalTime: end - start };
}

function byTime(events) {
  // Stable: events of one batch share a timestamp and keep their order.
  return events.map((event, index) => ({ event, index }))
    .sort((a, b) => a.event.timestamp - b.event.timestamp || a.index - b.index)
    .map(({ event }) => event);
}

/**
 * The timeline's markers, in time order. `at` is the offset (ms from the first event)
 * where the marker is drawn and where seeking to it goes: 1 ms after the event, because
 * the Replayer applies at a seek only what happened strictly before it.
 *
 * - navigation: a Meta event whose URL differs from the one before (the first page
 *   too; a checkout repeats the URL and is none), at the full snapshot that shows it
 * - click: the recorder's `rrstream.click` events (`click on #add-item “Add item”`); in
 *   a recording without them (older ones), rrweb's MouseInteraction clicks, labelled with
 *   their target as the snapshots tell it (`click on button#add-item "Add item"`). The
 *   recorder's are the ones to trust: rrweb's click on a link that navigates at once is
 *   often lost with its page's last batch.
 * - error: a custom event tagged `rrstream.error`, labelled with its message
 *
 * @returns {Array<{kind: "navigation"|"click"|"error", at: number, label: string, href?: string}>}
 */
export function timelineMarkers(events) {
  const sorted = byTime(events);
  const { startTime } = timeSpan(sorted);
  const markers = [];
  const rrwebClicks = [];
  const recorderClicks = [];
  const nodes = new NodeIndex();
  let href = null;
  let navigation = null; // the navigation whose full snapshot is still to come
  for (const event of sorted) {
    const at = event.timestamp - startTime + 1;
    if (event.type === META) {
      const next = event.data?.href ?? "";
      if (next !== href) {
        navigation = { kind: "navigation", at, label: next || "page", href: next };
        markers.push(navigation);
      }
      href = next;
    } else if (event.type === FULL_SNAPSHOT) {
      nodes.reset(event.data?.node);
      if (navigation) navigation.at = at;
      navigation = null;
    } else if (event.type === INCREMENTAL && event.data?.source === SOURCE_MUTATION) {
      nodes.mutate(event.data);
    } else if (event.type === INCREMENTAL && event.data?.source === SOURCE_MOUSE_INTERACTION && event.data.type === MOUSE_CLICK) {
      const target = nodes.describe(event.data.id);
      rrwebClicks.push({ kind: "click", at, label: target ? `click on ${target}` : "click" });
    } else if (event.type === CUSTOM && event.data?.tag === CLICK_TAG) {
      const { selector, text } = event.data.payload ?? {};
      const what = [selector, text ? `“${text}”` : ""].filter(Boolean).join(" ");
      recorderClicks.push({ kind: "click", at, label: what ? `click on ${what}` : "click" });
    } else if (event.type === CUSTOM && event.data?.tag === ERROR_TAG) {
      const message = event.data.payload?.message;
      markers.push({ kind: "error", at, label: typeof message === "string" && message ? message : "error" });
    }
  }
  markers.push(...(recorderClicks.length ? recorderClicks : rrwebClicks));
  return markers.sort((a, b) => a.at - b.at);
}

/**
 * The recorded page's nodes by rrweb id, as far as a click's label needs them: the last
 * full snapshot, then the nodes mutations added, removed or retexted.
 */
class NodeIndex {
  #nodes = new Map(); // id -> {tag (null: not an element), attributes, children: id[], text}

  reset(root) {
    this.#nodes.clear();
    if (root) this.#add(root);
  }

  mutate({ adds = [], removes = [], texts = [] }) {
    for (const { parentId, id } of removes) {
      const parent = this.#nodes.get(parentId);
      if (parent) parent.children = parent.children.filter((child) => child !== id);
      this.#nodes.delete(id);
    }
    for (const { parentId, node } of adds) {
      if (!node) continue;
      this.#add(node);
      const parent = this.#nodes.get(parentId);
      if (parent && !parent.children.includes(node.id)) parent.children.push(node.id);
    }
    for (const { id, value } of texts) {
      const node = this.#nodes.get(id);
      if (node) node.text = value ?? "";
    }
  }

  /** `button#add-item "Add item"`, or null for a node it does not know. */
  describe(id) {
    const node = this.#nodes.get(id);
    if (!node || node.tag === null) return null;
    const attrs = node.attributes;
    let name = node.tag;
    if (typeof attrs.id === "string" && attrs.id) name += `#${attrs.id}`;
    else if (typeof attrs.class === "string" && attrs.class.trim()) name += `.${attrs.class.trim().split(/\s+/)[0]}`;
    const text = (this.#text(id, 0) || attrs["aria-label"] || attrs.value || "").replace(/\s+/g, " ").trim();
    if (!text) return name;
    return `${name} "${text.length > LABEL_CHARS ? `${text.slice(0, LABEL_CHARS - 1).trimEnd()}…` : text}"`;
  }

  #add(node) {
    const isElement = node.type === NODE_ELEMENT;
    this.#nodes.set(node.id, {
      tag: isElement ? String(node.tagName).toLowerCase() : null,
      attributes: isElement ? node.attributes ?? {} : {},
      text: node.type === NODE_TEXT ? node.textContent ?? "" : "",
      children: [],
    });
    for (const child of node.childNodes ?? []) {
      this.#add(child);
      this.#nodes.get(node.id).children.push(child.id);
    }
  }

  // Enough of the text under a node for a label; a script's or style's is none.
  #text(id, depth) {
    const node = this.#nodes.get(id);
    if (!node || depth > 20 || node.tag === "script" || node.tag === "style") return "";
    if (node.tag === null) return node.text;
    let text = "";
    for (const child of node.children) {
      text += this.#text(child, depth + 1);
      if (text.length > LABEL_CHARS * 2) break;
    }
    return text;
  }
}

/**
 * The first moment anything is on screen: 1 ms after the first full snapshot (0 without
 * one). Seeking while paused to before it would leave whatever page was shown last.
 */
export function firstPageAt(events) {
  const { startTime } = timeSpan(events);
  let first = Infinity;
  for (const event of events) if (event.type === FULL_SNAPSHOT && event.timestamp < first) first = event.timestamp;
  return first === Infinity ? 0 : first - startTime + 1;
}

/**
 * Where to seek to show a moment at `offset` (ms from the first event, as search hits
 * give it): just after it, since the Replayer applies only what is before a seek; and
 * when that lands between a Meta and the full snapshot that follows it (a URL's moment
 * is its Meta), just after that snapshot, so the page is on screen.
 */
export function momentTarget(events, offset) {
  const sorted = byTime(events);
  if (!sorted.length) return 0;
  const startTime = sorted[0].timestamp;
  const at = startTime + Math.max(0, offset) + 1;
  let last = null;
  for (const event of sorted) {
    if (event.timestamp >= at) {
      if (last?.type === META && event.type === FULL_SNAPSHOT) return event.timestamp - startTime + 1;
      if (last?.type !== META) break;
    }
    last = event;
  }
  return at - startTime;
}

/** A user's doing, as rrweb tells it (its Replayer's private isUserInteraction). */
export function isUserInteraction(event) {
  if (event.type !== INCREMENTAL) return false;
  const source = event.data?.source;
  return source > SOURCE_MUTATION && source <= SOURCE_INPUT;
}

/**
 * The stretches that `skipInactive` fast-forwards: gaps longer than `thresholdMs`
 * between one user interaction (or the start) and the next. rrweb skips to the next
 * interaction only, so a quiet tail after the last one is played as it is.
 * @returns {Array<{start: number, end: number}>} offsets in ms from the first event
 */
export function inactivePeriods(events, thresholdMs = INACTIVE_THRESHOLD_MS) {
  const sorted = byTime(events);
  if (!sorted.length) return [];
  const startTime = sorted[0].timestamp;
  const periods = [];
  let lastActive = startTime;
  for (const event of sorted) {
    if (!isUserInteraction(event)) continue;
    if (event.timestamp - lastActive > thresholdMs) {
      periods.push({ start: lastActive - startTime, end: event.timestamp - startTime });
    }
    lastActive = event.timestamp;
  }
  return periods;
}

/** Counts per kind, for the timeline's legend. */
export function countMarkers(markers) {
  const counts = { navigation: 0, click: 0, error: 0 };
  for (const marker of markers) counts[marker.kind] += 1;
  return counts;
}

/** "0:07", "12:34", "1:02:03": a playback clock, whole seconds rounded down. */
export function formatClock(ms) {
  const total = Math.max(0, Math.floor((Number.isFinite(ms) ? ms : 0) / 1000));
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${String(minutes).padStart(2, "0")}:${seconds}` : `${minutes}:${seconds}`;
}

/** A duration in words for lists: "850 ms", "42 s", "3 min 5 s", "1 h 2 min". */
export function formatDuration(ms) {
  if (!Number.isFinite(ms) || ms < 0) return "";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return s % 60 ? `${Math.floor(s / 60)} min ${s % 60} s` : `${s / 60} min`;
  const min = Math.floor((s % 3600) / 60);
  return min ? `${Math.floor(s / 3600)} h ${min} min` : `${Math.floor(s / 3600)} h`;
}

/** The offset `ms` kept inside the recording: [0, total]. */
export function clampTime(ms, total) {
  if (!Number.isFinite(ms)) return 0;
  return Math.min(Math.max(0, ms), Math.max(0, total));
}

/** The marker after (`direction` 1) or before (-1) the time `ms`, or null. */
export function adjacentMarker(markers, ms, direction) {
  // A marker within half a second counts as where we are, so repeated jumps move on.
  const slack = 500;
  if (direction > 0) return markers.find((m) => m.at > ms + slack) ?? null;
  for (let i = markers.length - 1; i >= 0; i--) if (markers[i].at < ms - slack) return markers[i];
  return null;
}
