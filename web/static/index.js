import { nameProblem } from "./names.js";
import { ago } from "./format.js";
import { me, signIn, signUp, signOut, access } from "./account.js";

const $ = (id) => document.getElementById(id);
const form = $("join");
const user = $("user");
const password = $("password");
const room = $("room");
const error = $("error");

// ?next=/chat/<room>/<user> comes from a room page that needs a sign-in,
// with ?reason= saying why.
const params = new URLSearchParams(location.search);
const next = /^\/chat\/[^/]+\/[^/]+$/.test(params.get("next") || "") ? params.get("next") : "";
if (next) {
  const [, , r, u] = next.split("/").map(decodeURIComponent);
  room.value = r;
  user.value = u;
} else {
  user.value = localStorage.getItem("chat.user") || "";
}
if (params.get("reason")) showError(params.get("reason"));
(user.value ? (next ? password : room) : user).focus();

let signedIn = null;

me().then((m) => {
  signedIn = m;
  if (!m) return;
  $("me-name").textContent = m.name;
  $("whoami").hidden = false;
  user.value = m.name;
  user.readOnly = true;
  $("password-row").hidden = true;
  $("account-actions").hidden = true;
  $("join-actions").hidden = false;
  $("hint").textContent = "You chat under your own name.";
}).catch(() => { /* the account service is down: guests may still join */ });

$("signout").addEventListener("click", async () => {
  try {
    await signOut();
    location.reload();
  } catch (err) {
    showError(err.message);
  }
});

form.addEventListener("submit", async (e) => {
  e.preventDefault();
  error.hidden = true;
  const action = signedIn ? "join" : e.submitter?.value || "login";
  const problem = nameProblem("user", user.value) || nameProblem("room", room.value);
  if (problem) return showError(problem);
  if ((action === "login" || action === "register") && !password.value) {
    password.focus();
    return showError(action === "login" ? "Enter your password to sign in, or continue as guest." : "Choose a password of at least 8 characters.");
  }
  if (action === "register" && [...password.value].length < 8) return showError("A password needs at least 8 characters.");
  const busy = form.querySelectorAll("button");
  busy.forEach((b) => { b.disabled = true; });
  try {
    let name = user.value;
    if (action === "login") name = (await signIn(user.value, password.value)).name;
    if (action === "register") name = (await signUp(user.value, password.value)).name;
    const path = `/chat/${encodeURIComponent(room.value)}/${encodeURIComponent(name)}`;
    if (action === "guest") {
      // Say now, not in the room, that a name is taken.
      const a = await access(`/ws${path}`);
      if (!a.ok) return showError(a.reason);
    }
    localStorage.setItem("chat.user", name);
    location.href = path;
  } catch (err) {
    showError(err.message);
  } finally {
    busy.forEach((b) => { b.disabled = false; });
  }
});

function showError(text) {
  error.textContent = text;
  error.hidden = false;
}

async function loadRooms() {
  const list = $("rooms");
  try {
    const res = await fetch("/api/rooms");
    if (!res.ok) throw new Error((await res.json()).error || res.statusText);
    const { rooms } = await res.json();
    list.replaceChildren();
    if (!rooms.length) {
      list.append(item("No rooms yet: be the first.", "muted"));
      return;
    }
    for (const r of rooms) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "link";
      b.textContent = `#${r.name}`;
      b.addEventListener("click", () => { room.value = r.name; (signedIn ? $("join-room") : user).focus(); });
      const meta = document.createElement("span");
      meta.className = "muted";
      meta.textContent = `${r.messages} message${r.messages === 1 ? "" : "s"}, last ${ago(new Date(r.last_message_at))}`;
      li.append(b, meta);
      list.append(li);
    }
  } catch (err) {
    list.replaceChildren(item(`Room list unavailable (${err.message}).`, "muted"));
  }
}

function item(text, cls) {
  const li = document.createElement("li");
  li.className = cls;
  li.textContent = text;
  return li;
}

loadRooms();
