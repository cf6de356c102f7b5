// The room page. One WebSocket to the gateway; messages are kept by seq so
// that history pages, live messages and resumes merge without duplicates.
// Everything a user wrote is put in the page as text, never as HTML.
import { linkify, dayLabel, timeLabel } from "./format.js";
import { me as whoAmI, signIn, signOut, access } from "./account.js";

const [, , roomName, userName] = location.pathname.split("/").map(decodeURIComponent);
// An embedding app's token (?token=) goes on to the WebSocket.
const token = new URLSearchParams(location.search).get("token") || "";
const wsPath = `/ws/chat/${encodeURIComponent(roomName)}/${encodeURIComponent(userName)}`;

const $ = (id) => document.getElementById(id);
const log = $("log");
const list = $("messages");
const older = $("older");
const start = $("start");
const status = $("status");
const form = $("send");
const input = $("text");
const jump = $("jump");
const palette = $("commands");
const memberList = $("member-list");
const membersPanel = $("members");
const membersToggle = $("members-toggle");
const signinForm = $("signin");
$("title").textContent = `#${roomName}`;
document.title = `#${roomName} · Chat`;

const messages = new Map(); // seq -> message
const unacked = new Map();  // client_id -> {text, li}: sent, not yet stored
const online = new Map();   // user -> true if a guest: the whole list, then deltas
let lastSeq = 0;            // newest seq received: where a reconnect resumes
let epoch = "";             // the stream's epoch that lastSeq belongs to
let oldestSeq = 0;
let hasMore = false;
let loadingOlder = false;
let ws = null;
let retry = 0;
let commands = [];
let helpId = "";
let account = null;         // {name, admin} when signed in
let ownName = userName;     // the account's own spelling once signed in as it

// What is typed is kept per room and name for this tab, so that signing in
// again (or a reload) does not lose it.
const draftKey = `chat.draft.${roomName}.${userName.toLowerCase()}`;

// --- connection -----------------------------------------------------------

function connect() {
  setStatus("connecting", "connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  // batch=1: under load the server may put several frames, one per line,
  // in one WebSocket message.
  const since = lastSeq ? `&since=${lastSeq}&epoch=${encodeURIComponent(epoch)}` : "";
  let opened = false;
  ws = new WebSocket(`${scheme}://${location.host}${wsPath}?batch=1${since}${tokenQuery("&")}`);
  ws.addEventListener("open", () => {
    opened = true;
    retry = 0;
    setStatus("online", "online");
    // What was typed while offline goes now, with its client_id: the
    // server stores it once even if an earlier attempt got through.
    for (const [clientId, m] of unacked) send({ type: "message", text: m.text, client_id: clientId });
    if (!commands.length) {
      helpId = `help-${crypto.randomUUID()}`;
      send({ type: "message", text: "/help", client_id: helpId });
    }
  });
  ws.addEventListener("message", (e) => {
    for (const line of e.data.split("\n")) onFrame(JSON.parse(line));
  });
  ws.addEventListener("close", async (e) => {
    if (leaving) return;
    if (e.code === 4401 || e.code === 4403) return needSignIn(e.reason);
    if (!opened) {
      // Refused, or unreachable: a browser does not tell which, the
      // same URL without an upgrade does.
      const a = await access(wsPath + tokenQuery("?"));
      if (!a.ok && (a.status === 401 || a.status === 403)) return needSignIn(a.reason, a.status);
    }
    const delay = Math.min(15000, 500 * 2 ** retry++) * (0.75 + Math.random() / 2);
    const why = e.reason ? ` (${e.reason})` : "";
    setStatus("offline", `offline${why}, reconnecting in ${Math.ceil(delay / 1000)}s`);
    setTimeout(connect, delay);
  });
}

// Leaving the page closes the socket at once, so the others see us leave
// (and a page kept in the back-forward cache does not hold it open).
let leaving = false;
window.addEventListener("pagehide", () => {
  leaving = true;
  if (ws) ws.close(1000, "page closed");
});
window.addEventListener("pageshow", (e) => {
  if (e.persisted) {
    leaving = false;
    connect();
  }
});

function tokenQuery(sep) {
  return token ? `${sep}token=${encodeURIComponent(token)}` : "";
}

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
  document.body.dataset.connection = state;
}

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
}

function onFrame(f) {
  switch (f.type) {
    case "message":
      addMessages([f]);
      break;
    case "history":
      onHistory(f);
      break;
    case "presence":
      onPresence(f);
      break;
    case "notice":
      if (f.commands) commands = f.commands;
      if (f.client_id && f.client_id === helpId) return; // asked for by the page itself
      addNote(f.text, "notice");
      break;
    case "error":
      if (f.client_id === helpId) return;
      if (f.code === "unconfirmed" && unacked.has(f.client_id)) {
        // It may have been stored: keep it pending and send it again
        // with the same client_id, which the server stores at most once.
        const id = f.client_id;
        setTimeout(() => {
          if (unacked.has(id)) send({ type: "message", text: unacked.get(id).text, client_id: id });
        }, 3000);
        return;
      }
      if (f.client_id && unacked.has(f.client_id)) {
        unacked.get(f.client_id).li.remove();
        unacked.delete(f.client_id);
      }
      addNote(f.message, "error");
      break;
  }
}

function onHistory(f) {
  if (f.epoch) epoch = f.epoch;
  if (f.reset) {
    lastSeq = 0;
    messages.clear();
    list.querySelectorAll(".msg:not(.pending), .day").forEach((el) => el.remove());
    oldestSeq = 0;
  }
  const isPage = loadingOlder;
  loadingOlder = false;
  const before = log.scrollHeight - log.scrollTop;
  addMessages(f.messages, !isPage);
  if (f.messages.length && (!oldestSeq || f.messages[0].seq < oldestSeq || f.reset)) {
    oldestSeq = f.messages[0].seq;
    hasMore = f.has_more;
  } else if (!oldestSeq) {
    hasMore = f.has_more;
  }
  if (isPage) log.scrollTop = log.scrollHeight - before; // keep the view where it was
  older.hidden = !hasMore;
  start.hidden = hasMore || messages.size === 0;
}

// --- messages -------------------------------------------------------------

function addMessages(batch, follow = true) {
  const pinned = atBottom();
  let added = 0;
  // Live messages only extend the list; anything older makes it re-render.
  const appendOnly = batch.every((m) => m.seq > lastSeq);
  for (const m of batch) {
    if (messages.has(m.seq)) continue;
    messages.set(m.seq, m);
    lastSeq = Math.max(lastSeq, m.seq);
    if (m.client_id && m.user === ownName && unacked.has(m.client_id)) {
      unacked.get(m.client_id).li.remove();
      unacked.delete(m.client_id);
    }
    added++;
  }
  if (!added) return;
  if (appendOnly && list.querySelector(".msg[data-seq]")) appendRendered(batch);
  else render();
  if (!follow) return;
  if (pinned) scrollToBottom();
  else jump.hidden = false;
}

let lastRendered = null;

function appendRendered(batch) {
  const anchor = list.querySelector(".pending");
  for (const m of batch) {
    for (const el of itemsFor(m, lastRendered)) list.insertBefore(el, anchor);
    lastRendered = m;
  }
}

// itemsFor renders m after prev: a day header when the day changes, and no
// author header when prev is by the same author less than 5 minutes before.
function itemsFor(m, prev) {
  const ts = new Date(m.ts);
  const out = [];
  if (!prev || dayLabel(new Date(prev.ts)) !== dayLabel(ts)) {
    const day = document.createElement("li");
    day.className = "day";
    day.textContent = dayLabel(ts);
    out.push(day);
    prev = null;
  }
  const grouped = prev && prev.user === m.user && prev.kind === m.kind && ts - new Date(prev.ts) < 5 * 60 * 1000;
  out.push(renderMessage(m, grouped));
  return out;
}

// render rebuilds the list from the messages in seq order: grouped by day,
// and consecutive messages of one author within five minutes share a header.
function render() {
  const pending = [...list.querySelectorAll(".pending, .note")];
  const out = [];
  let prev = null;
  for (const m of [...messages.values()].sort((a, b) => a.seq - b.seq)) {
    out.push(...itemsFor(m, prev));
    prev = m;
  }
  lastRendered = prev;
  list.replaceChildren(...out, ...pending);
}

function renderMessage(m, grouped) {
  const li = document.createElement("li");
  li.className = `msg kind-${m.kind}${m.user === ownName ? " own" : ""}${grouped ? " grouped" : ""}`;
  if (m.seq) li.dataset.seq = m.seq;
  const ts = new Date(m.ts);
  const head = document.createElement("div");
  head.className = "head";
  const who = document.createElement("span");
  who.className = "user";
  who.textContent = m.user;
  const when = document.createElement("time");
  when.dateTime = ts.toISOString();
  when.textContent = timeLabel(ts);
  when.title = ts.toLocaleString();
  head.append(who);
  if (m.auth === "guest") head.append(guestBadge());
  head.append(when);
  const body = document.createElement("div");
  body.className = "text";
  body.append(...linkify(m.text));
  li.append(head, body);
  return li;
}

function addNote(text, cls) {
  const pinned = atBottom();
  const li = document.createElement("li");
  li.className = `note ${cls}`;
  li.setAttribute("role", cls === "error" ? "alert" : "status");
  li.textContent = text;
  list.append(li);
  if (pinned) scrollToBottom();
}

function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 48;
}

function scrollToBottom() {
  log.scrollTop = log.scrollHeight;
  jump.hidden = true;
}

function loadOlder() {
  if (!hasMore || loadingOlder) return;
  loadingOlder = true;
  send({ type: "history", before: oldestSeq, limit: 50 });
}

log.addEventListener("scroll", () => {
  if (log.scrollTop < 40) loadOlder();
  if (atBottom()) jump.hidden = true;
});
older.addEventListener("click", loadOlder);
jump.addEventListener("click", () => { scrollToBottom(); input.focus(); });

// --- members --------------------------------------------------------------

// The first presence frame of a connection is the whole list; the later
// ones say only who joined, who left and whose guest status changed.
function onPresence(f) {
  const guests = new Set(f.guests || []);
  if (!f.delta) {
    online.clear();
    for (const u of f.users || []) online.set(u, guests.has(u));
  } else {
    for (const u of f.joined || []) online.set(u, guests.has(u));
    for (const u of f.left || []) online.delete(u);
    for (const u of guests) if (online.has(u)) online.set(u, true);
    for (const u of f.signed_in || []) if (online.has(u)) online.set(u, false);
  }
  const users = [...online.keys()].sort();
  memberList.replaceChildren(...users.map((u) => {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.textContent = u;
    li.append(name);
    if (online.get(u)) li.append(" ", guestBadge());
    if (u === ownName) li.className = "me";
    return li;
  }));
  $("member-count").textContent = users.length;
  for (const u of f.joined || []) if (u !== ownName) addNote(`${u} joined`, "presence");
  for (const u of f.left || []) if (u !== ownName) addNote(`${u} left`, "presence");
}

function guestBadge() {
  const b = document.createElement("span");
  b.className = "badge guest";
  b.textContent = "guest";
  b.title = "not signed in: anyone may use this name";
  return b;
}

membersToggle.addEventListener("click", () => {
  const open = membersPanel.classList.toggle("open");
  membersToggle.setAttribute("aria-expanded", String(open));
});

// --- composing ------------------------------------------------------------

function submit() {
  // Line breaks around the text are never meant to be sent.
  const text = input.value.replace(/^[\r\n]+|[\r\n]+$/g, "");
  if (!text.trim()) return;
  const clientId = crypto.randomUUID();
  if (!text.startsWith("/")) {
    // Shown at once, dimmed, until the server's copy acknowledges it.
    const li = renderMessage({ user: ownName, text, kind: "user", ts: new Date().toISOString() }, false);
    li.classList.add("pending");
    list.append(li);
    unacked.set(clientId, { text, li });
    scrollToBottom();
  }
  send({ type: "message", text, client_id: clientId });
  input.value = "";
  sessionStorage.removeItem(draftKey);
  input.style.height = "auto";
  hidePalette();
}

form.addEventListener("submit", (e) => { e.preventDefault(); submit(); });

input.addEventListener("keydown", (e) => {
  if (!palette.hidden && (e.key === "ArrowDown" || e.key === "ArrowUp")) {
    e.preventDefault();
    movePalette(e.key === "ArrowDown" ? 1 : -1);
    return;
  }
  if (!palette.hidden && (e.key === "Tab" || (e.key === "Enter" && paletteChoice()))) {
    e.preventDefault();
    choose(paletteChoice() || palette.firstElementChild);
    return;
  }
  if (e.key === "Escape") hidePalette();
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    submit();
  }
});

input.addEventListener("input", () => {
  sessionStorage.setItem(draftKey, input.value);
  input.style.height = "auto";
  input.style.height = `${input.scrollHeight}px`;
  const t = input.value;
  if (!t.startsWith("/") || t.includes(" ")) return hidePalette();
  const matches = commands.filter((c) => `/${c.name}`.startsWith(t.toLowerCase()));
  if (!matches.length) return hidePalette();
  palette.replaceChildren(...matches.map((c) => {
    const li = document.createElement("li");
    li.setAttribute("role", "option");
    li.dataset.name = c.name;
    const usage = document.createElement("code");
    usage.textContent = c.usage;
    const help = document.createElement("span");
    help.textContent = ` ${c.help}`;
    li.append(usage, help);
    li.addEventListener("mousedown", (e) => { e.preventDefault(); choose(li); });
    return li;
  }));
  palette.hidden = false;
});

function paletteChoice() {
  return palette.querySelector("[aria-selected=true]");
}

function movePalette(step) {
  const items = [...palette.children];
  const i = items.indexOf(paletteChoice());
  items.forEach((el) => el.removeAttribute("aria-selected"));
  items[(i + step + items.length) % items.length].setAttribute("aria-selected", "true");
}

function choose(li) {
  const c = commands.find((c) => c.name === li.dataset.name);
  input.value = `/${c.name}${c.usage.includes(" ") ? " " : ""}`;
  hidePalette();
  input.focus();
}

function hidePalette() {
  palette.hidden = true;
}

// --- identity ---------------------------------------------------------------

// showIdentity puts who this page speaks as in the header.
function showIdentity() {
  const mine = account && account.name.toLowerCase() === userName.toLowerCase();
  const label = $("me");
  label.replaceChildren(mine ? ownName : userName);
  if (!mine && !token) label.append(" ", guestBadge());
  label.title = mine ? "signed in" : token ? "signed in by the embedding site" : "guest: not signed in";
  $("signout").hidden = !mine || !!token;
  const link = $("signin-link");
  link.hidden = mine || !!token;
  link.href = `/?next=${encodeURIComponent(location.pathname)}`;
}

// needSignIn stops reconnecting and shows why; for a registered name (or a
// gateway without guests) it offers to sign in right here, keeping what
// was typed.
function needSignIn(reason, status) {
  setStatus("offline", status === 401 ? "not admitted" : "signed out");
  $("signin-reason").textContent = reason || "Sign in to chat under this name.";
  const canSignIn = !token && !/reserved/i.test(reason || "");
  $("signin-fields").hidden = !canSignIn;
  $("signin-name").textContent = userName;
  $("signin-user").value = userName;
  $("me").replaceChildren("not signed in");
  $("signin-link").hidden = true;
  $("signout").hidden = true;
  signinForm.hidden = false;
  if (canSignIn) $("signin-password").focus();
}

signinForm.addEventListener("submit", async (e) => {
  e.preventDefault();
  const err = $("signin-error");
  err.hidden = true;
  const button = signinForm.querySelector("button");
  button.disabled = true;
  try {
    account = await signIn(userName, $("signin-password").value);
    ownName = account.name;
    $("signin-password").value = "";
    signinForm.hidden = true;
    showIdentity();
    connect();
    input.focus();
  } catch (x) {
    err.textContent = x.message;
    err.hidden = false;
  } finally {
    button.disabled = false;
  }
});

$("signout").addEventListener("click", async () => {
  leaving = true;
  try {
    await signOut();
    location.href = "/";
  } catch (x) {
    leaving = false;
    addNote(x.message, "error");
  }
});

input.value = sessionStorage.getItem(draftKey) || "";

try {
  account = await whoAmI();
  if (account && account.name.toLowerCase() === userName.toLowerCase()) ownName = account.name;
} catch {
  // The accounts service is away: a guest may still chat.
}
showIdentity();
connect();
