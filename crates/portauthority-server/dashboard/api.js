// The public HTTP API, as the dashboard uses it. Every failure becomes a Problem carrying
// the server's RFC 9457 document (title, detail, errors), or one made up here when the
// server could not be reached or did not answer with one.

export class Problem extends Error {
  constructor(doc) {
    super(doc.detail || doc.title || "request failed");
    this.status = doc.status || 0;
    this.title = doc.title || "Error";
    this.detail = doc.detail || "";
    this.errors = Array.isArray(doc.errors) ? doc.errors : [];
    this.requestId = doc.request_id || null;
  }
}

// Sent on every 401, so that the page can ask for a key.
export const UNAUTHORIZED = "pa:unauthorized";

async function problemOf(res) {
  let doc = null;
  try {
    doc = await res.json();
  } catch {
    // Not JSON: fall through to a document made from the status line.
  }
  if (!doc || typeof doc !== "object") {
    doc = { title: res.statusText || `HTTP ${res.status}`, detail: `The server answered ${res.status}.` };
  }
  doc.status = doc.status || res.status;
  return new Problem(doc);
}

// Calls the API; resolves with the parsed JSON (null for an empty answer), rejects with a
// Problem.
export async function call(method, path, body) {
  const init = { method, headers: { accept: "application/json" }, credentials: "same-origin" };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new Problem({ title: "Server unreachable", detail: `${method} ${path} did not get an answer (${e.message}).` });
  }
  if (!res.ok) {
    const p = await problemOf(res);
    if (res.status === 401) document.dispatchEvent(new CustomEvent(UNAUTHORIZED, { detail: p }));
    throw p;
  }
  if (res.status === 204) return null;
  const text = await res.text();
  return text ? JSON.parse(text) : null;
}

export const get = (path) => call("GET", path);
export const put = (path, body) => call("PUT", path, body);

// A query string from [name, value] pairs, leaving out empty values.
export function query(pairs) {
  const q = new URLSearchParams();
  for (const [k, v] of pairs) if (v !== undefined && v !== null && v !== "") q.append(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const jobPath = (id) => `/v1/jobs/${encodeURIComponent(id)}`;

// Sign-in: the key goes to the server once and comes back as an HttpOnly cookie, which
// also authorizes the event streams. The page cannot read that cookie, so it remembers
// that it signed in, to offer signing out.
const SIGNED_IN = "portauthority.signed_in";

export async function signIn(token) {
  await call("POST", "/session", { token });
  localStorage.setItem(SIGNED_IN, "1");
}

export async function signOut() {
  try {
    await call("DELETE", "/session");
  } finally {
    localStorage.removeItem(SIGNED_IN);
  }
}

export const signedIn = () => localStorage.getItem(SIGNED_IN) === "1";
export const forgetSignIn = () => localStorage.removeItem(SIGNED_IN);
