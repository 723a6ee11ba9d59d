// Wires the viewer together: the URL's ?session= (or ?recording=, a stored
// recording replayed in real time), the sidebar, the stream, the player, the
// stats panel, the header badge and the test hook.
import { h } from "./dom.js";
import { installTestHook } from "./hook.js";
import { LivePlayer } from "./player.js";
import { SessionList, pickSession, sessionTitle } from "./sessions.js";
import { StartForm } from "./start-form.js";
import { StatsPanel } from "./stats.js";
import { recordingStreamUrl } from "./connection.js";
import { LiveStream } from "./stream.js";

const params = new URLSearchParams(location.search);
// How far behind the page's timeline to replay, absorbing network jitter: ?buffer_ms=300
const bufferParam = Number.parseFloat(params.get("buffer_ms") ?? "");
const BUFFER_MS = Number.isFinite(bufferParam) && bufferParam >= 0 ? bufferParam : 200;

const $ = (id) => document.getElementById(id);
const badge = $("connection-badge");
const reconnectButton = $("reconnect");
const sessionLabel = $("session-label");
const message = $("player-message");

const player = new LivePlayer($("player"), { bufferMs: BUFFER_MS, onChange: render });
const stats = new StatsPanel($("stats"));
const sessions = new SessionList($("sessions"), { onSelect: (id) => choose(id), onLoad: onSessionsLoaded });
new StartForm($("start-form"), {
  onStarted: (session) => {
    choose(session.id);
    sessions.refresh();
  },
});

let stream = null;
let known = new Map(); // id -> SessionInfo from the last poll
let listFailed = false;
// ?recording=<id> replays that recording until a session is picked in the sidebar.
let recordingId = params.get("recording") || null;
// Only a viewer opened without ?session= or ?recording= follows the newest session by itself.
let userChose = params.has("session") || recordingId !== null;
let replaying = false; // the stream is a recording's, not a live session's

installTestHook(() => ({ stream, player }));
reconnectButton.addEventListener("click", () => stream?.reconnect());
addEventListener("pagehide", () => stream?.close());

function choose(id) {
  userChose = true;
  recordingId = null;
  watch(id);
}

function watch(id) {
  if (stream?.sessionId === id && replaying === (recordingId !== null)) return;
  stream?.close();
  stream = null;
  player.clear();
  replaying = recordingId !== null;
  stats.reset({ replay: replaying });
  setStreamParams(id);
  sessions.select(recordingId === null ? id : null);
  if (id) {
    const current = new LiveStream({ sessionId: id, player,
                                     url: replaying ? recordingStreamUrl(id) : undefined });
    const mine = (handler) => (event) => current === stream && handler(event.detail);
    current.addEventListener("state", mine(() => render()));
    current.addEventListener("frame", mine(({ frame, events }) => stats.onFrame(frame, events, current.counters)));
    current.addEventListener("message", mine((msg) => {
      stats.onMessage(msg);
      if (msg.type === "end" || msg.type === "error") render();
    }));
    stream = current;
    current.start();
  }
  render();
}

function onSessionsLoaded(list) {
  listFailed = list === null;
  if (list) {
    known = new Map(list.map((session) => [session.id, session]));
    if (!stream && !userChose) {
      const next = pickSession(list);
      if (next) watch(next.id);
    }
  }
  render();
}

function setStreamParams(id) {
  const url = new URL(location.href);
  const [set, other] = recordingId === null ? ["session", "recording"] : ["recording", "session"];
  url.searchParams.delete(other);
  if (id) url.searchParams.set(set, id);
  else url.searchParams.delete(set);
  history.replaceState(history.state, "", url);
}

function render() {
  const state = stream?.connection.state ?? "none";
  const detail = stream?.connection.detail ?? "";
  const retrying = stream?.connection.reconnecting ?? false;
  badge.dataset.state = retrying ? "retrying" : state;
  badge.textContent = !stream ? "no session" : retrying ? "reconnecting" : state;
  badge.title = detail;
  reconnectButton.disabled = !stream;
  stats.onConnection(!stream ? "–" : retrying ? "reconnecting" : state, stream?.counters ?? null);

  const info = stream && !replaying && known.get(stream.sessionId);
  sessionLabel.replaceChildren(
    stream && replaying ? h("span", { class: "header-recording", text: "recording" }) : "",
    info ? h("span", { class: "header-session-title", text: sessionTitle(info) }) : "",
    stream ? h("code", { text: stream.sessionId }) : "",
  );
  showMessage(...messageFor(state, detail, retrying));
}

function messageFor(state, detail, retrying) {
  if (!stream) {
    const hint = listFailed ? "The session list is unavailable right now." : "Start a session or the demo from the sidebar.";
    return ["No session — start one", hint, "empty"];
  }
  if (state === "ended" && replaying) return ["Recording ended", detail, player.hasContent ? "corner" : "center"];
  if (state === "ended") return ["Session ended", detail, player.hasContent ? "corner" : "center"];
  // Lost and coming back by itself (a gateway replica died or is being replaced): the
  // page stays as it was, and resumes where it stopped once the stream is back.
  if (retrying) return ["Reconnecting…", detail, player.hasContent ? "corner" : "center"];
  if (state === "closed") return ["Disconnected", detail, player.hasContent ? "corner" : "center"];
  if (player.hasContent) return [];
  if (state === "open") return ["Waiting for the first snapshot…", "", "center"];
  return ["Connecting…", "", "center"];
}

function showMessage(title = "", text = "", variant = "") {
  message.hidden = !title;
  message.dataset.variant = variant;
  message.querySelector(".player-message-title").textContent = title;
  message.querySelector(".player-message-text").textContent = text;
}

sessions.start();
watch(recordingId ?? (params.get("session") || null));
