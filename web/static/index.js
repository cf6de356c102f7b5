import { nameProblem } from "./names.js";
import { ago } from "./format.js";

const form = document.getElementById("join");
const user = document.getElementById("user");
const room = document.getElementById("room");
const error = document.getElementById("error");

user.value = localStorage.getItem("chat.user") || "";
(user.value ? room : user).focus();

form.addEventListener("submit", (e) => {
  e.preventDefault();
  const problem = nameProblem("user", user.value) || nameProblem("room", room.value);
  if (problem) {
    error.textContent = problem;
    error.hidden = false;
    return;
  }
  localStorage.setItem("chat.user", user.value);
  location.href = `/chat/${encodeURIComponent(room.value)}/${encodeURIComponent(user.value)}`;
});

async function loadRooms() {
  const list = document.getElementById("rooms");
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
      b.addEventListener("click", () => { room.value = r.name; user.focus(); });
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
