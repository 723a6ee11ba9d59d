// Wires the viewer together: the URL (?session= live; ?recording= played from its
// events; ?recording=&realtime=1 replayed in real time over the WebSocket), the sidebar,
// the live stream and player, the recording player (a chunk loaded on first use), the
// stats panel, the header badge and the test hook.
import { ApiError, apiKey, recordingEvents, searchRecording, viewerLink } from "./api.js";
import { h } from "./dom.js";
import { TakeoverControl } from "./control.js";
import { installTestHook } from "./hook.js";
import { KeyForm } from "./key-form.js";
import { LivePlayer } from "./player.js";
import { RecordingList, recordingTitle } from "./recordings.js";
import { SearchPanel } from "./search-panel.js";
import { SessionList, isLive, pickSession, sessionTitle } from "./sessions.js";
import { StartForm } from "./start-form.js";
import { StatsPanel } from "./stats.js";
import { recordingStreamUrl } from "./connection.js";
import { LiveStream } from "./stream.js";

const params = new URLSearchParams(location.search);
// How far behind the page's timeline to replay, absorbing network jitter: ?buffer_ms=300
const bufferParam = Number.parseFloat(params.get("buffer_ms") ?? "");
const BUFFER_MS = Number.isFinite(bufferParam) && bufferParam >= 0 ? bufferParam : 200;
// A rewind opens this far before the newest recorded moment, playing.
const REWIND_MS = 10_000;
// ?recording=<id>&t=<ms>: open the recording paused at that moment (a search hit's offset).
const momentParam = Number.parseFloat(params.get("t") ?? "");

const $ = (id) => document.getElementById(id);
const badge = $("connection-badge");
const reconnectButton = $("reconnect");
const sessionLabel = $("session-label");
const message = $("player-message");
const liveStage = $("player");
const replayStage = $("replay");
const playbackBar = $("playback");
const liveControls = $("live-controls");
const timelineRoot = $("timeline");
const statsRoot = $("stats");
const rewindButton = $("rewind");

const player = new LivePlayer(liveStage, { bufferMs: BUFFER_MS, onChange: render });
// Who is in control of the page; with a control link, Take control / Hand back.
const takeover = new TakeoverControl($("control-bar"), liveStage, player,
  (message) => stream?.connection.send(message) ?? false, () => stream?.counters.lastSeq ?? null);
const stats = new StatsPanel(statsRoot);
const sessions = new SessionList($("sessions"), { onSelect: (id) => choose(id), onLoad: onSessionsLoaded });
const recordings = new RecordingList($("recordings"), { onSelect: (recording) => play(recording.id) });
new SearchPanel($("find"), {
  onOpen: (id, offset) => play(id, { moment: offset }),
  titleOf: (id) => {
    const recording = recordings.get(id);
    const session = known.get(id);
    return recording ? recordingTitle(recording) : session ? sessionTitle(session) : id;
  },
});
const keyForm = new KeyForm($("key-panel"), $("key-form"), {
  onSaved: () => {
    sessions.refresh();
    recordings.refresh();
    if (refused()) rewatch(); // with the key, a token can be minted now
    if (playback?.error && [401, 403].includes(playback.error.status)) reload();
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
// ?recording=<id> plays that recording until something else is picked in the sidebar.
const linkedRecording = params.get("recording") || null;
const realtime = linkedRecording !== null && params.get("realtime") === "1";
let recordingId = realtime ? linkedRecording : null; // the stream is this recording's replay
// Only a viewer opened without ?session= or ?recording= follows the newest session by itself.
let userChose = params.has("session") || linkedRecording !== null;
let replaying = false; // the stream is a recording's, not a live session's
// The recording player, while one is shown: {id, rewound, phase: "loading" | "ready" |
// "error", loaded (bytes), error, view (a Playback once ready)}.
let playback = null;
let playbackModule = null; // the player chunk, once imported
// Viewer tokens by "session:<id>" / "recording:<id>": a viewer link's #token=, or one
// minted with the API key. The fragment never reaches a server's logs.
const tokens = new Map();
const linkToken = new URLSearchParams(location.hash.slice(1)).get("token");
if (linkToken) {
  const linked = linkedRecording !== null ? `recording:${linkedRecording}` : `session:${params.get("session") ?? ""}`;
  tokens.set(linked, linkToken);
}

installTestHook(() => ({ stream, player, mode: mode(), playback, takeover }));
reconnectButton.addEventListener("click", () => stream?.reconnect());
rewindButton.addEventListener("click", () => rewind());
addEventListener("pagehide", () => {
  stream?.close();
  closePlayback();
});

/** What the page shows: none, live, realtime (a recording over the WebSocket), recording, rewound. */
function mode() {
  if (playback) return playback.rewound ? "rewound" : "recording";
  if (stream) return replaying ? "realtime" : "live";
  return "none";
}

function choose(id) {
  userChose = true;
  recordingId = null;
  const info = known.get(id);
  if (playback?.rewound && stream?.sessionId === id) {
    backToLive();
    return;
  }
  // An ended session is its recording: play it, with a timeline.
  if (info && !isLive(info) && info.record !== false) {
    play(id);
    return;
  }
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
  if (!playback && watching?.id === id && watching.recording === (recordingId !== null)) return;
  closePlayback();
  watching = id ? { id, recording: recordingId !== null } : null;
  stream?.close();
  stream = null;
  takeover.reset();
  player.clear();
  replaying = recordingId !== null;
  stats.reset({ replay: replaying });
  setUrl(recordingId === null ? "session" : "recording", id);
  sessions.select(recordingId === null ? id : null);
  recordings.select(recordingId);
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
    current.addEventListener("state", mine(({ state }) => {
      if (state !== "open") takeover.reset(); // a new socket holds nothing; it is told anew
      render();
    }));
    current.addEventListener("frame", mine(({ frame, events, live }) => stats.onFrame(frame, events, current.counters, live)));
    current.addEventListener("message", mine((msg) => {
      takeover.onMessage(msg);
      stats.onMessage(msg);
      if (msg.type === "end" || msg.type === "error") render();
    }));
    stream = current;
    current.start();
  }
  render();
}

/**
 * Plays the recording `id` from its events, with the timeline; from `moment` (ms from its
 * start, paused there) when given, as a search hit or a link's `t=` asks.
 */
function play(id, { moment = null } = {}) {
  if (playback && !playback.rewound && playback.id === id && playback.view && moment !== null) {
    playback.view.seekToMoment(moment); // the recording shown already: only go there
    return;
  }
  userChose = true;
  recordingId = null;
  watching = null;
  stream?.close();
  stream = null;
  takeover.reset();
  player.clear();
  replaying = false;
  stats.reset({ replay: true });
  setUrl("recording", id);
  sessions.select(id); // a recording's id is its session's
  recordings.select(id);
  showPlayback(id, { rewound: false, moment });
}

/** A live session goes back into what it recorded so far; its stream goes on meanwhile. */
function rewind() {
  if (!stream || replaying || playback) return;
  showPlayback(stream.sessionId, { rewound: true });
}

function backToLive() {
  if (!playback?.rewound) return;
  closePlayback();
  render();
}

function reload() {
  if (!playback) return;
  const { id, rewound, moment } = playback;
  showPlayback(id, { rewound, moment });
}

async function showPlayback(id, { rewound, moment = null }) {
  closePlayback();
  const ticket = { id, rewound, moment, phase: "loading", loaded: 0, error: null, view: null };
  playback = ticket;
  render();
  const token = tokens.get(`recording:${id}`) ?? tokens.get(`session:${id}`) ?? null;
  try {
    const [module, events] = await Promise.all([
      playbackModule ??= import("./playback.js"),
      recordingEvents(id, { token, onProgress: (bytes) => {
        if (playback !== ticket) return;
        ticket.loaded = bytes;
        render();
      } }),
    ]);
    if (playback !== ticket) return; // something else was picked meanwhile
    if (events.length < 2) {
      throw new ApiError(200, rewound ? "nothing of this session is stored yet; try again in a few seconds"
        : "the recording holds no page yet");
    }
    replayStage.hidden = false;
    const view = new module.Playback(replayStage, timelineRoot, events, {
      onBackToLive: rewound ? backToLive : null,
      note: rewound ? "recorded so far" : "",
      onChange: render,
      onSearch: (kind, query) => searchRecording(id, { kind, query }),
    });
    ticket.view = view;
    if (moment !== null) {
      view.seekToMoment(moment); // paused there: the moment the link points at
    } else {
      if (rewound) view.player.seek(Math.max(0, view.player.totalTime - REWIND_MS));
      view.player.play();
    }
    ticket.phase = "ready";
  } catch (error) {
    if (playback !== ticket) return;
    replayStage.hidden = true;
    ticket.phase = "error";
    ticket.error = error instanceof ApiError ? error : new ApiError(0, error.message);
    console.warn("rrstream: cannot play the recording", error);
  }
  render();
}

function closePlayback() {
  const current = playback;
  playback = null;
  replayStage.hidden = true;
  if (current?.view) {
    try {
      current.view.destroy();
    } catch (error) {
      console.warn("rrstream: closing the player failed", error);
    }
  }
  timelineRoot.replaceChildren();
}

function onSessionsLoaded(list, error) {
  listFailed = list === null;
  keyForm.show(error?.status === 401);
  if (list) {
    known = new Map(list.map((session) => [session.id, session]));
    if (!watching && !playback && !userChose) {
      const next = pickSession(list);
      if (next) watch(next.id);
    }
  }
  render();
}

function setUrl(kind, id) {
  const url = new URL(location.href);
  const key = `${kind}:${id}`;
  if (tokens.get(key) !== linkToken) url.hash = ""; // the link's token is for another stream
  const other = kind === "session" ? "recording" : "session";
  url.searchParams.delete(other);
  if (id) url.searchParams.set(kind, id);
  else url.searchParams.delete(kind);
  if (kind === "recording" && recordingId !== null) url.searchParams.set("realtime", "1");
  else url.searchParams.delete("realtime");
  url.searchParams.delete("t"); // a moment is where a player opened, not where it is
  history.replaceState(history.state, "", url);
}

function render() {
  const current = mode();
  const showingPlayback = current === "recording" || current === "rewound";
  liveStage.classList.toggle("player-stage--behind", showingPlayback);
  statsRoot.hidden = current === "recording";
  renderBadge(current);
  renderHeader(current);
  renderControls(current);
  showMessage(...(showingPlayback ? playbackMessage() : messageFor()));
}

function renderBadge(current) {
  reconnectButton.disabled = !stream || current === "recording";
  if (current === "recording") {
    const state = { loading: "connecting", ready: "ended", error: "closed" }[playback.phase];
    badge.dataset.state = state;
    badge.textContent = { loading: "loading", ready: "recorded", error: "not loaded" }[playback.phase];
    badge.title = playback.error?.message ?? "";
    stats.onConnection("–", null);
    return;
  }
  const state = stream?.connection.state ?? "none";
  const retrying = stream?.connection.reconnecting ?? false;
  badge.dataset.state = retrying ? "retrying" : state;
  badge.textContent = !stream ? "no session" : retrying ? "reconnecting" : state;
  badge.title = stream?.connection.detail ?? "";
  stats.onConnection(!stream ? "–" : retrying ? "reconnecting" : state, stream?.counters ?? null);
}

function renderHeader(current) {
  const id = playback?.id ?? stream?.sessionId ?? null;
  const session = id ? known.get(id) : null;
  const recording = id ? recordings.get(id) : null;
  const title = recording ? recordingTitle(recording) : session ? sessionTitle(session) : "";
  const tag = { realtime: "recording", recording: "recording", rewound: "rewound" }[current];
  sessionLabel.replaceChildren(
    tag ? h("span", { class: `header-recording header-recording--${current}`, text: tag }) : "",
    title ? h("span", { class: "header-session-title", text: title }) : "",
    id ? h("code", { text: id }) : "",
  );
}

function renderControls(current) {
  const session = stream ? known.get(stream.sessionId) : null;
  const canRewind = current === "live" && player.hasContent && session?.record !== false;
  liveControls.hidden = !canRewind;
  rewindButton.disabled = !canRewind;
  const timeline = playback?.phase === "ready";
  playbackBar.hidden = !canRewind && !timeline;
  timelineRoot.hidden = !timeline;
}

function playbackMessage() {
  const { phase, loaded, error, rewound } = playback;
  if (phase === "loading") {
    const size = loaded ? `${(loaded / 1e6).toLocaleString(undefined, { maximumFractionDigits: 1 })} MB so far` : "";
    return [rewound ? "Loading what was recorded so far…" : "Loading the recording…", size, "center"];
  }
  if (phase === "error") {
    const what = rewound ? "Cannot rewind this session" : "Cannot play this recording";
    if (error.status === 401 || error.status === 403) {
      return [what, `${error.message}. Open a viewer link of this recording, or enter an API key.`, "center"];
    }
    if (error.status === 404) return [what, `${error.message}. It may have been deleted, or the session was not recorded.`, "center"];
    return [what, error.message, "center"];
  }
  const view = playback.view;
  if (view?.player.state === "finished") {
    return rewound ? ["End of what was recorded", "Back to live shows the session as it is now.", "corner"]
      : ["End of the recording", "", "corner"];
  }
  return [];
}

function messageFor() {
  const state = stream?.connection.state ?? "none";
  const detail = stream?.connection.detail ?? "";
  const retrying = stream?.connection.reconnecting ?? false;
  if (!stream) {
    const hint = listFailed ? "The session list is unavailable right now." : "Start a session or the demo from the sidebar, or pick a recording.";
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
recordings.start();
if (linkedRecording !== null && !realtime) play(linkedRecording, { moment: Number.isFinite(momentParam) ? momentParam : null });
else watch(recordingId ?? (params.get("session") || null));
