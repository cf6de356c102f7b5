// The room page: one WebSocket to the gateway, messages kept by seq so that
// history, live messages and resumes merge without duplicates.
const [, , roomName, userName] = location.pathname.split("/").map(decodeURIComponent);

const log = document.getElementById("log");
const list = document.getElementById("messages");
const older = document.getElementById("older");
const status = document.getElementById("status");
const form = document.getElementById("send");
const input = document.getElementById("text");
document.getElementById("title").textContent = `#${roomName}`;
document.title = `#${roomName} · Chat`;

const bySeq = new Map();       // seq -> <li>
const unacked = new Map();     // client_id -> {text, li}
let lastSeq = 0;               // newest seq received: the resume point
let oldestSeq = 0;
let hasMore = false;
let ws = null;
let retry = 0;

function connect() {
  setStatus("connecting", "connecting…");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const since = lastSeq ? `?since=${lastSeq}` : "";
  ws = new WebSocket(`${scheme}://${location.host}/ws/chat/${encodeURIComponent(roomName)}/${encodeURIComponent(userName)}${since}`);
  ws.addEventListener("open", () => {
    retry = 0;
    setStatus("online", "online");
    for (const [clientId, m] of unacked) send({ type: "message", text: m.text, client_id: clientId });
  });
  ws.addEventListener("message", (e) => onFrame(JSON.parse(e.data)));
  ws.addEventListener("close", (e) => {
    const delay = Math.min(30000, 500 * 2 ** retry++) * (0.5 + Math.random() / 2);
    setStatus("offline", `offline${e.reason ? ` (${e.reason})` : ""}, retrying in ${Math.round(delay / 1000)}s`);
    setTimeout(connect, delay);
  });
}

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

function send(frame) {
  if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(frame));
}

function onFrame(f) {
  switch (f.type) {
    case "message":
      addMessage(f);
      break;
    case "history":
      if (f.reset) { bySeq.clear(); list.replaceChildren(); oldestSeq = 0; }
      for (const m of f.messages) addMessage(m);
      if (!oldestSeq || f.messages.length && f.messages[0].seq <= oldestSeq) {
        hasMore = f.has_more;
        if (f.messages.length) oldestSeq = f.messages[0].seq;
      }
      older.hidden = !hasMore;
      break;
    case "error":
      if (f.client_id && unacked.has(f.client_id)) {
        const u = unacked.get(f.client_id);
        u.li.remove();
        unacked.delete(f.client_id);
      }
      addNote(`${f.message}`, "error");
      break;
    case "notice":
      addNote(f.text, "notice");
      break;
  }
}

function addMessage(m) {
  if (bySeq.has(m.seq)) return;
  const pinned = atBottom();
  if (m.client_id && m.user === userName && unacked.has(m.client_id)) {
    unacked.get(m.client_id).li.remove();
    unacked.delete(m.client_id);
  }
  const li = renderMessage(m);
  li.dataset.seq = m.seq;
  bySeq.set(m.seq, li);
  lastSeq = Math.max(lastSeq, m.seq);
  // Insert in seq order: history pages arrive before or after live messages.
  let next = null;
  for (const el of list.children) {
    if (el.dataset.seq && Number(el.dataset.seq) > m.seq) { next = el; break; }
    if (!el.dataset.seq && !next) { next = el; break; }
  }
  list.insertBefore(li, next);
  if (pinned) log.scrollTop = log.scrollHeight;
}

function renderMessage(m) {
  const li = document.createElement("li");
  li.className = `msg kind-${m.kind}${m.user === userName ? " own" : ""}`;
  const head = document.createElement("div");
  head.className = "head";
  const who = document.createElement("span");
  who.className = "user";
  who.textContent = m.user;
  const when = document.createElement("time");
  const ts = new Date(m.ts);
  when.dateTime = ts.toISOString();
  when.textContent = ts.toLocaleString([], { hour: "2-digit", minute: "2-digit", day: "numeric", month: "short" });
  head.append(who, when);
  const body = document.createElement("div");
  body.className = "text";
  body.append(...linkify(m.text));
  li.append(head, body);
  return li;
}

// linkify turns http(s) URLs into links and everything else into text nodes:
// nothing the user wrote is ever parsed as HTML.
function linkify(text) {
  const out = [];
  const re = /\bhttps?:\/\/[^\s<>"]+/g;
  let at = 0;
  for (const match of text.matchAll(re)) {
    out.push(document.createTextNode(text.slice(at, match.index)));
    const a = document.createElement("a");
    a.href = match[0];
    a.textContent = match[0];
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    out.push(a);
    at = match.index + match[0].length;
  }
  out.push(document.createTextNode(text.slice(at)));
  return out;
}

function addNote(text, cls) {
  const pinned = atBottom();
  const li = document.createElement("li");
  li.className = `note ${cls}`;
  li.textContent = text;
  list.append(li);
  if (pinned) log.scrollTop = log.scrollHeight;
}

function atBottom() {
  return log.scrollHeight - log.scrollTop - log.clientHeight < 40;
}

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const text = input.value;
  if (!text.trim()) return;
  const clientId = crypto.randomUUID();
  if (!text.startsWith("/")) {
    const li = renderMessage({ user: userName, text, kind: "user", ts: new Date().toISOString() });
    li.classList.add("pending");
    list.append(li);
    log.scrollTop = log.scrollHeight;
    unacked.set(clientId, { text, li });
  }
  send({ type: "message", text, client_id: clientId });
  input.value = "";
});

older.addEventListener("click", () => send({ type: "history", before: oldestSeq, limit: 50 }));
log.addEventListener("scroll", () => {
  if (log.scrollTop === 0 && hasMore) send({ type: "history", before: oldestSeq, limit: 50 });
});

connect();
