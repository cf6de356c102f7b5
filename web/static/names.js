// The name rule of the server (shared/chat/name.go), for early feedback only:
// the server checks again.
export const namePattern = /^[A-Za-z0-9_-]{1,64}$/;

export function nameProblem(what, name) {
  if (name === "") return `Enter a ${what} name.`;
  if (name.length > 64) return `The ${what} name is longer than 64 characters.`;
  if (!namePattern.test(name)) return `The ${what} name may only use letters A-Z, digits, "-" and "_".`;
  return "";
}
