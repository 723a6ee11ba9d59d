// The sidebar's session list: polled from GET /sessions, click to watch, Stop per session.
import { listSessions, stopSession } from "./api.js";
import { h } from "./dom.js";

const ENDED_STATES = new Set(["stopping", "stopped", "failed"]);

export function isLive(session) {
  return !ENDED_STATES.has(session.state);
}

function createdAt(session) {
  const t = Number(session.created_at) || 0;
  return t > 1e12 ? t / 1000 : t; // seconds, whichever unit the server used
}

/** The session to show when the URL names none: the newest running one, else the newest live one. */
export function pickSession(sessions) {
  const newest = [...sessions].sort((a, b) => createdAt(b) - createdAt(a));
  return newest.find((s) => s.state === "running") ?? newest.find(isLive) ?? null;
}

export function sessionTitle(session) {
  if (session.name) return session.name;
  try {
    const url = new URL(session.start_url);
    return url.host + (url.pathname === "/" ? "" : url.pathname);
  } catch {
    return session.id;
  }
}

export function formatAge(session, nowS = Date.now() / 1000) {
  const s = Math.max(0, nowS - createdAt(session));
  if (!createdAt(session)) return "";
  if (s < 60) return `${Math.floor(s)} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function plural(n, word) {
  return `${(n ?? 0).toLocaleString()} ${word}${n === 1 ? "" : "s"}`;
}

export class SessionList {
  #list;
  #error;
  #empty;
  #onSelect;
  #onLoad;
  #refreshMs;
  #items = new Map(); // id -> {li, title, url, state, meta, stop}
  #selected = null;
  #timer = null;

  /**
   * @param {HTMLElement} root an empty element the list fills
   * @param {object} options
   * @param {(id: string) => void} options.onSelect the user picked a session
   * @param {(sessions: object[]) => void} [options.onLoad] after each successful refresh
   */
  constructor(root, { onSelect, onLoad = () => {}, refreshMs = 2000 }) {
    this.#onSelect = onSelect;
    this.#onLoad = onLoad;
    this.#refreshMs = refreshMs;
    this.#error = h("p", { class: "inline-error", role: "alert", hidden: true });
    this.#list = h("ul", { class: "session-list" });
    this.#empty = h("p", { class: "muted", text: "No sessions yet.", hidden: true });
    root.replaceChildren(this.#error, this.#list, this.#empty);
  }

  start() {
    this.refresh();
  }

  /** Loads the list now; the next poll follows `refreshMs` after it. */
  async refresh() {
    clearTimeout(this.#timer);
    try {
      const sessions = await listSessions();
      this.#showError("");
      this.#render(sessions);
      this.#onLoad(sessions);
    } catch (error) {
      this.#showError(error.status === 401 ? "" : `Could not load sessions: ${error.message}`);
      this.#onLoad(null, error);
    } finally {
      clearTimeout(this.#timer);
      this.#timer = setTimeout(() => this.refresh(), this.#refreshMs);
    }
  }

  /** Highlights the session being watched. */
  select(id) {
    this.#selected = id;
    for (const [itemId, item] of this.#items) item.li.classList.toggle("selected", itemId === id);
  }

  #render(sessions) {
    const sorted = [...sessions].sort((a, b) => createdAt(b) - createdAt(a));
    const seen = new Set();
    sorted.forEach((session, index) => {
      seen.add(session.id);
      const item = this.#items.get(session.id) ?? this.#createItem(session.id);
      this.#update(item, session);
      // Keyed, in-place updates: a click between two polls is never lost to a re-render.
      if (this.#list.children[index] !== item.li) this.#list.insertBefore(item.li, this.#list.children[index] ?? null);
    });
    for (const [id, item] of this.#items) {
      if (!seen.has(id)) {
        item.li.remove();
        this.#items.delete(id);
      }
    }
    this.#empty.hidden = sorted.length > 0;
  }

  #createItem(id) {
    const item = {
      title: h("span", { class: "session-title" }),
      url: h("span", { class: "session-url" }),
      state: h("span", { class: "state-pill" }),
      meta: h("span", { class: "session-meta-text" }),
    };
    item.stop = h("button", { type: "button", class: "button button--small button--danger", onclick: () => this.#stop(id, item.stop) }, "Stop");
    const main = h(
      "button",
      { type: "button", class: "session-main", onclick: () => this.#onSelect(id) },
      item.title,
      item.url,
      h("span", { class: "session-meta" }, item.state, item.meta),
    );
    item.li = h("li", { class: "session", dataset: { id } }, main, item.stop);
    this.#items.set(id, item);
    return item;
  }

  #update(item, session) {
    const url = session.url || session.start_url || "";
    setText(item.title, sessionTitle(session));
    setText(item.url, url);
    item.url.title = url;
    setText(item.state, session.state);
    item.state.dataset.state = session.state;
    const parts = [plural(session.events, "event"), plural(session.viewers, "viewer"), formatAge(session)];
    if (session.error) parts.push(`error: ${session.error}`);
    setText(item.meta, parts.filter(Boolean).join(" · "));
    item.stop.hidden = !isLive(session);
    item.li.classList.toggle("selected", session.id === this.#selected);
    item.li.classList.toggle("ended", !isLive(session));
  }

  async #stop(id, button) {
    button.disabled = true;
    try {
      await stopSession(id);
      this.#showError("");
    } catch (error) {
      this.#showError(`Could not stop ${id}: ${error.message}`);
    } finally {
      button.disabled = false;
      this.refresh();
    }
  }

  #showError(message) {
    this.#error.textContent = message;
    this.#error.hidden = !message;
  }
}

function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}
