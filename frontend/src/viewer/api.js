// The gateway's REST API: sessions, the demo, viewer links. Errors carry the server's
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
  let response;
  try {
    const headers = body === undefined ? {} : { "content-type": "application/json" };
    const key = apiKey();
    if (key) headers.authorization = `Bearer ${key}`;
    response = await fetchImpl(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (error) {
    throw new ApiError(0, `network error: ${error.message}`);
  }
  const text = await response.text();
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
