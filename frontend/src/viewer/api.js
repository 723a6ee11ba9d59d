// The gateway's REST API: sessions, the demo, viewer links, recordings and their events. Errors carry the server's
// `message`. When the gateway requires an API key, the one the user entered is kept in
// sessionStorage (this tab only) and sent on every call.

const API_KEY = "rrstream.apiKey";

/** The API key entered in this tab, or null. */
export function apiKey(storage = globalThis.sessionStorage) {
  try {
    return storage?.getItem(API_KEY) || null;
  } catch {
    return null; // storage disabled
  }
}

export function setApiKey(key, storage = globalThis.sessionStorage) {
  try {
    if (key) storage?.setItem(API_KEY, key);
    else storage?.removeItem(API_KEY);
  } catch {
    // storage disabled: the key lasts until the page reloads
  }
}

export class ApiError extends Error {
  name = "ApiError";

  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Human-readable text of a FastAPI `detail`: a string, or a list of validation errors. */
export function formatDetail(detail) {
  if (detail == null) return "";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail
      .map((item) => {
        if (!item || typeof item !== "object") return String(item);
        const where = Array.isArray(item.loc) ? item.loc.filter((part) => part !== "body").join(".") : "";
        return where ? `${where}: ${item.msg}` : String(item.msg ?? JSON.stringify(item));
      })
      .join("; ");
  }
  return JSON.stringify(detail);
}

async function request(method, path, body, fetchImpl = fetch) {
  const response = await send(method, path, body, fetchImpl, null);
  return parse(response, await response.text());
}

// A viewer token, when given, is the credential (a viewer link opened without a key);
// otherwise the tab's API key, if any.
async function send(method, path, body, fetchImpl, token) {
  try {
    const headers = body === undefined ? {} : { "content-type": "application/json" };
    const credential = token || apiKey();
    if (credential) headers.authorization = `Bearer ${credential}`;
    return await fetchImpl(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `network error: ${error.message}`);
  }
}

function parse(response, text) {
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    // not JSON (a proxy's error page, say): keep data null
  }
  if (!response.ok) {
    const detail = data?.message || formatDetail(data?.detail);
    throw new ApiError(response.status, detail || `${response.status} ${response.statusText}`.trim());
  }
  return data;
}

/** @returns {Promise<Array<object>>} SessionInfo objects */
export async function listSessions(fetchImpl) {
  const data = await request("GET", "/sessions", undefined, fetchImpl);
  const sessions = Array.isArray(data) ? data : data?.sessions;
  if (!Array.isArray(sessions)) throw new ApiError(200, "GET /sessions did not return a list");
  return sessions;
}

export function startSession(spec, fetchImpl) {
  return request("POST", "/sessions", spec, fetchImpl);
}

export function startDemo(fetchImpl) {
  return request("POST", "/demo/start", undefined, fetchImpl);
}

export function stopSession(id, fetchImpl) {
  return request("DELETE", `/sessions/${encodeURIComponent(id)}`, undefined, fetchImpl);
}

/** A viewer link (`token`, `url`) for a session, or for a recording with `recording`. */
export function viewerLink(id, { recording = false } = {}, fetchImpl) {
  const collection = recording ? "recordings" : "sessions";
  return request("POST", `/${collection}/${encodeURIComponent(id)}/viewer-links`, {}, fetchImpl);
}

/**
 * One page of the recordings list, newest first: `{items, nextCursor}`; `nextCursor`
 * (null on the last page) asks for the next one.
 * @param {{limit?: number, cursor?: string|null, name?: string, url?: string, hasErrors?: boolean}} [query]
 */
export async function listRecordings({ limit = 20, cursor = null, name = "", url = "", hasErrors = false } = {}, fetchImpl) {
  const params = new URLSearchParams({ limit: String(limit) });
  if (cursor) params.set("cursor", cursor);
  if (name) params.set("name", name);
  if (url) params.set("url", url);
  if (hasErrors) params.set("has_errors", "true");
  const data = await request("GET", `/recordings?${params}`, undefined, fetchImpl);
  if (!Array.isArray(data?.items)) throw new ApiError(200, "GET /recordings did not return {items, next_cursor}");
  return { items: data.items, nextCursor: data.next_cursor ?? null };
}

/**
 * A recording's rrweb events (for a live session: what is stored so far).
 * @param {string} id
 * @param {{token?: string|null, onProgress?: (bytes: number) => void}} [options] token: a
 *   viewer token of the recording or its session (else the API key is sent)
 * @returns {Promise<Array<object>>}
 */
export async function recordingEvents(id, { token = null, onProgress = null } = {}, fetchImpl = fetch) {
  const response = await send("GET", `/recordings/${encodeURIComponent(id)}/events`, undefined, fetchImpl, token);
  let text;
  try {
    text = response.ok && onProgress && response.body?.getReader ? await readText(response.body, onProgress) : await response.text();
  } catch (error) {
    throw new ApiError(0, `network error while loading the recording: ${error.message}`);
  }
  if (!response.ok) parse(response, text); // throws, with the server's message
  let events;
  try {
    events = JSON.parse(text);
  } catch (error) {
    throw new ApiError(response.status, `the recording's events are not valid JSON: ${error.message}`);
  }
  if (!Array.isArray(events)) throw new ApiError(response.status, "the recording's events are not a JSON array");
  return events;
}

async function readText(body, onProgress) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parts = [];
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    parts.push(decoder.decode(value, { stream: true }));
    onProgress(bytes);
  }
  parts.push(decoder.decode());
  return parts.join("");
}

/**
 * Moments within one recording where a text appeared, a URL was visited or an element
 * was clicked, in time order: `{hits: [{kind, value, text, offset_ms, ...}], truncated}`.
 * @param {string} id
 * @param {{kind: "text"|"url"|"click", query: string, limit?: number}} search
 */
export function searchRecording(id, search, fetchImpl) {
  return searchAt(`/recordings/${encodeURIComponent(id)}/search`, search, fetchImpl);
}

/**
 * Moments across recordings, newest recordings first: `{hits, truncated}`; each hit names
 * its `recording_id` and its `offset_ms` there.
 * @param {{kind: "text"|"url"|"click", query: string, limit?: number}} search
 */
export function searchRecordings(search, fetchImpl) {
  return searchAt("/search", search, fetchImpl);
}

async function searchAt(path, { kind, query, limit = 50 }, fetchImpl) {
  if (!["text", "url", "click"].includes(kind)) throw new ApiError(0, `cannot search by ${kind}`);
  const params = new URLSearchParams({ [kind]: query, limit: String(limit) });
  const data = await request("GET", `${path}?${params}`, undefined, fetchImpl);
  if (!Array.isArray(data?.hits)) throw new ApiError(200, "the search did not return {hits}");
  return { hits: data.hits, truncated: Boolean(data.truncated) };
}
