// The account API of the gateway (POST /api/register, /api/login,
// /api/logout, GET /api/me). The session itself is an HttpOnly cookie that
// scripts never see; these calls only say who is signed in.

// me resolves to {name, admin, auth} when signed in, null when not.
export async function me() {
  const res = await fetch("/api/me", { cache: "no-store" });
  if (res.status === 401) return null;
  if (!res.ok) throw new Error(await problem(res));
  return res.json();
}

export const signIn = (name, password) => post("/api/login", { name, password });
export const signUp = (name, password) => post("/api/register", { name, password });
export const signOut = () => post("/api/logout", {});

// post sends a JSON body and resolves to the answer, or rejects with an
// Error whose message a person can act on.
async function post(path, body) {
  const res = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  if (!res.ok) throw new Error(await problem(res));
  return res.json();
}

// problem turns a refusal into a sentence.
async function problem(res) {
  let body = {};
  try { body = await res.json(); } catch { /* not JSON: the status says it */ }
  switch (body.code) {
    case "unauthorized": return "Wrong name or password.";
    case "name_taken": return "That name is taken: sign in if it is yours, or pick another.";
    case "wrong_password": return "The current password is wrong.";
    case "rate_limited": {
      const wait = Number(res.headers.get("Retry-After")) || 60;
      return `Too many tries: wait ${wait < 120 ? `${wait} seconds` : `${Math.ceil(wait / 60)} minutes`} and try again.`;
    }
    case "unavailable": return "Signing in is unavailable right now: try again in a moment.";
  }
  return body.error || `${res.status} ${res.statusText}`;
}

// access asks the gateway whether this page may open the room's
// WebSocket, and if not why: the WebSocket URL without an upgrade answers
// 426 (it may) or the refusal with its reason.
export async function access(wsPath) {
  try {
    const res = await fetch(wsPath, { cache: "no-store" });
    if (res.status === 426) return { ok: true };
    return { ok: false, status: res.status, reason: (await res.text()).trim() };
  } catch {
    return { ok: true, offline: true }; // unreachable: the reconnect loop goes on
  }
}
