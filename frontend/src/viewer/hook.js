// window.rrstreamViewer: a read-only view of the viewer's state for end-to-end tests.

/**
 * @param {() => ({stream: import("./stream.js").LiveStream|null, player: import("./player.js").LivePlayer,
 *                 mode?: string, playback?: object|null})} current playback: main.js's
 *   recording player record ({phase, error, view}), while one is shown
 */
export function installTestHook(current, target = window) {
  const counter = (name) => () => current().stream?.counters[name] ?? 0;
  const hook = Object.freeze(
    Object.create(null, {
      connection: { enumerable: true, get: () => current().stream?.connection.state ?? "closed" },
      reconnecting: { enumerable: true, get: () => current().stream?.connection.reconnecting ?? false },
      welcomes: { enumerable: true, get: counter("welcomes") },
      resume: { enumerable: true, get: () => current().stream?.counters.resume ?? null },
      sessionId: { enumerable: true, get: () => current().stream?.sessionId ?? null },
      lastSeq: { enumerable: true, get: () => current().stream?.counters.lastSeq ?? null },
      eventsApplied: { enumerable: true, get: counter("eventsApplied") },
      framesReceived: { enumerable: true, get: counter("framesReceived") },
      resets: { enumerable: true, get: counter("resets") },
      segmentsStarted: { enumerable: true, get: counter("segmentsStarted") },
      framesPending: { enumerable: true, get: () => current().stream?.pending ?? 0 },
      codec: { enumerable: true, get: () => current().stream?.codec ?? null },
      // Who is in control of the page (1.1): {holder, you, canTake, refusal}.
      control: { enumerable: true, get: () => current().takeover?.state ?? null },
      // none, live, realtime (a recording over the WebSocket), recording, rewound
      mode: { enumerable: true, get: () => current().mode ?? (current().stream ? "live" : "none") },
      // The recording player: {phase, error, state, currentTime, totalTime, speed,
      // skipInactive, skipping, markers}, or null when none is shown.
      playback: { enumerable: true, get: () => describePlayback(current().playback) },
      // The document the viewer shows: the recording player's while one is shown.
      iframeDocument: { enumerable: true, value: () => {
        const { playback, player } = current();
        return playback ? playback.view?.iframeDocument() ?? null : player.iframeDocument();
      } },
    }),
  );
  Object.defineProperty(target, "rrstreamViewer", { value: hook, enumerable: true, configurable: false, writable: false });
  return hook;
}

function describePlayback(playback) {
  if (!playback) return null;
  return { phase: playback.phase, error: playback.error?.message ?? null, ...(playback.view?.describe() ?? {}) };
}
