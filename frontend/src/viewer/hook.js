// window.rrstreamViewer: a read-only view of the viewer's state for end-to-end tests.

/**
 * @param {() => ({stream: import("./stream.js").LiveStream|null, player: import("./player.js").LivePlayer})} current
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
      iframeDocument: { enumerable: true, value: () => current().player.iframeDocument() },
    }),
  );
  Object.defineProperty(target, "rrstreamViewer", { value: hook, enumerable: true, configurable: false, writable: false });
  return hook;
}
