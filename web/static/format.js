// Formatting helpers of the room page. linkify is the only place where user
// text becomes DOM nodes: text nodes, and links for http(s) URLs only.

const urlPattern = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/g;

export function linkify(text) {
  const out = [];
  let at = 0;
  for (const match of text.matchAll(urlPattern)) {
    let url;
    try {
      url = new URL(match[0]);
    } catch {
      continue;
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") continue;
    out.push(document.createTextNode(text.slice(at, match.index)));
    const a = document.createElement("a");
    a.href = url.href;
    a.textContent = match[0];
    a.target = "_blank";
    a.rel = "noopener noreferrer";
    out.push(a);
    at = match.index + match[0].length;
  }
  out.push(document.createTextNode(text.slice(at)));
  return out;
}

export function dayLabel(d) {
  const today = new Date();
  const yesterday = new Date(today);
  yesterday.setDate(today.getDate() - 1);
  if (d.toDateString() === today.toDateString()) return "Today";
  if (d.toDateString() === yesterday.toDateString()) return "Yesterday";
  return d.toLocaleDateString([], { weekday: "long", year: "numeric", month: "long", day: "numeric" });
}

export function timeLabel(d) {
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

export function ago(d) {
  const s = Math.round((Date.now() - d) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return d.toLocaleDateString();
}
