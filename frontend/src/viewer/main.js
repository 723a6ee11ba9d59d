// Wires the viewer together: the URL's ?session= (or ?recording=, a stored
// recording replayed in real time), the sidebar, the stream, the player, the
// stats panel, the header badge and the test hook.
import { apiKey, viewerLink } from "./api.js";
import { h } from "./dom.js";
import { installTestHook } from "./hook.js";
import { KeyForm } from "./key-form.js";
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
const keyForm = new KeyForm($("key-panel"), $("key-form"), {
  onSaved: () => {
    sessions.refresh();
    if (refused()) rewatch(); // with the key, a token can be minted now
  },
});
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
// Viewer tokens by "session:<id>" / "recording:<id>": a viewer link's #token=, or one
// minted with the API key. The fragment never reaches a server's logs.
const tokens = new Map();
const linkToken = new URLSearchParams(location.hash.slice(1)).get("token");
if (linkToken) {
  const linked = recordingId !== null ? `recording:${recordingId}` : `session:${params.get("session") ?? ""}`;
  tokens.set(linked, linkToken);
}

installTestHook(() => ({ stream, player }));
reconnectButton.addEventListener("click", () => stream?.reconnect());
addEventListener("pagehide", () => stream?.close());

function choose(id) {
  userChose = true;
  recordingId = null;
  if (watching?.id === id && refused()) rewatch();
  else watch(id);
}

/** The stream was refused for good (4401, 4403): a key entered since may open it. */
function refused() {
  const connection = stream?.connection;
  return Boolean(connection) && connection.state === "closed" && !connection.reconnecting
    && /\(440[13]\)$/.test(connection.detail);
}

function rewatch() {
  const current = watching;
  watching = null;
  if (current) watch(current.id);
}

let watching = null; // {id, recording} of the stream being opened or watched

function watch(id) {
  if (watching?.id === id && watching.recording === (recordingId !== null)) return;
  watching = id ? { id, recording: recordingId !== null } : null;
  stream?.close();
  stream = null;
  player.clear();
  replaying = recordingId !== null;
  stats.reset({ replay: replaying });
  setStreamParams(id);
  sessions.select(recordingId === null ? id : null);
  if (watching) open(watching);
  render();
}

/** Opens the stream of `id` with its token: the link's, else one minted with the API key. */
async function open(ticket) {
  const { id, recording } = ticket;
  const key = `${recording ? "recording" : "session"}:${id}`;
  if (!tokens.has(key) && apiKey()) {
    try {
      tokens.set(key, (await viewerLink(id, { recording })).token);
    } catch {
      // no link (auth off answers one too; a 401 shows the key form): watch without
    }
    if (watching !== ticket) return; // another stream was chosen meanwhile
  }
  {
    const current = new LiveStream({ sessionId: id, player, token: tokens.get(key) ?? null,
                                     url: recording ? recordingStreamUrl(id) : undefined });
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

function onSessionsLoaded(list, error) {
  listFailed = list === null;
  keyForm.show(error?.status === 401);
  if (list) {
    known = new Map(list.map((session) => [session.id, session]));
    if (!watching && !userChose) {
      const next = pickSession(list);
      if (next) watch(next.id);
    }
  }
  render();
}

function setStreamParams(id) {
  const url = new URL(location.href);
  const key = `${recordingId === null ? "session" : "recording"}:${id}`;
  if (tokens.get(key) !== linkToken) url.hash = ""; // the link's token is for another stream
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
  if (refused()) {
    return ["Not allowed to watch", `${detail}. Open a viewer link, or enter an API key.`, "center"];
  }
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
