package main

// Browser tests of accounts: signing up, in and out from the pages, a
// registered name refused to a browser without its session, guests shown
// apart, and what was typed kept across a sign-in.

import (
	"context"
	"fmt"
	"testing"

	"github.com/chromedp/chromedp"
)

const browserPassword = "correct horse battery"

// signUp registers name from the landing page and enters room.
func signUp(t *testing.T, tab context.Context, base, name, room string) {
	t.Helper()
	fillLanding(t, tab, base, name, browserPassword, room)
	act(t, tab, chromedp.Click("#signup", chromedp.ByID))
	eventually(t, tab, "in the room, signed in", fmt.Sprintf(`location.pathname === "/chat/%s/%s" && document.getElementById("status").dataset.state === "online" && !document.getElementById("signout").hidden`, room, name))
}

// fillLanding opens the landing page and fills its form.
func fillLanding(t *testing.T, tab context.Context, base, name, password, room string) {
	t.Helper()
	act(t, tab,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible("#user", chromedp.ByID),
		chromedp.Evaluate(`document.getElementById("user").value = ""; document.getElementById("password").value = ""; document.getElementById("room").value = ""`, nil),
		chromedp.SendKeys("#user", name, chromedp.ByID),
		chromedp.SendKeys("#room", room, chromedp.ByID),
	)
	if password != "" {
		act(t, tab, chromedp.SendKeys("#password", password, chromedp.ByID))
	}
}

// landingError is a JS expression: the landing page's error says text.
func landingError(text string) string {
	return fmt.Sprintf(`!document.getElementById("error").hidden && document.getElementById("error").textContent.includes(%q)`, text)
}

// TestBrowserSignUpSignOutSignIn: sign up from the landing page, chat with
// the name in the header, sign out, then on a second page open the room URL
// of the name and sign in there.
func TestBrowserSignUpSignOutSignIn(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	first := b.tab()
	signUp(t, first, bs.base, "alice", "lobby")
	eventually(t, first, "her name in the header", `document.getElementById("me").textContent === "alice"`)
	say(t, first, "hello as alice")
	eventually(t, first, "her message", countText("hello as alice")+" === 1")
	eventually(t, first, "no guest badge on it", `!document.querySelector("#messages .msg[data-seq] .badge")`)

	act(t, first, chromedp.Click("#signout", chromedp.ByID))
	eventually(t, first, "back on the landing page, signed out", `location.pathname === "/" && document.getElementById("whoami").hidden && !document.getElementById("signin").hidden`)

	second := b.tab()
	act(t, second, chromedp.Navigate(bs.base+"/chat/lobby/alice"))
	eventually(t, second, "sign-in offered with the reason", `!document.getElementById("signin").hidden && document.getElementById("signin-reason").textContent.includes("registered")`)
	act(t, second, chromedp.SendKeys("#text", "typed before signing in", chromedp.ByID))
	act(t, second,
		chromedp.SendKeys("#signin-password", "not the password", chromedp.ByID),
		chromedp.Click("#signin button[type=submit]", chromedp.ByQuery),
	)
	eventually(t, second, "wrong password said", `!document.getElementById("signin-error").hidden && document.getElementById("signin-error").textContent === "Wrong name or password."`)
	act(t, second,
		chromedp.Evaluate(`document.getElementById("signin-password").value = ""`, nil),
		chromedp.SendKeys("#signin-password", browserPassword, chromedp.ByID),
		chromedp.Click("#signin button[type=submit]", chromedp.ByQuery),
	)
	eventually(t, second, "online as alice", `document.getElementById("status").dataset.state === "online" && document.getElementById("signin").hidden && document.getElementById("me").textContent === "alice"`)
	eventually(t, second, "the typed message kept", `document.getElementById("text").value === "typed before signing in"`)
	act(t, second, pressEnter())
	eventually(t, second, "sent after signing in", countText("typed before signing in")+" === 1 && "+countText("hello as alice")+" === 1")
	b.checkNoProblems()
}

// TestBrowserRegisteredNameNeedsSession: a second browser, without the
// session, cannot use the registered name; it can chat as a guest, and the
// guest is shown as one.
func TestBrowserRegisteredNameNeedsSession(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b, other := startBrowser(t), startBrowser(t)
	bob := b.tab()
	signUp(t, bob, bs.base, "bob", "lobby")

	intruder := other.tab()
	act(t, intruder, chromedp.Navigate(bs.base+"/chat/lobby/bob"))
	eventually(t, intruder, "refused, sign-in offered", `!document.getElementById("signin").hidden && document.getElementById("signin-reason").textContent.includes("bob is a registered name") && document.getElementById("status").dataset.state !== "online"`)
	fillLanding(t, intruder, bs.base, "BOB", "", "lobby")
	act(t, intruder, chromedp.Click("#guest", chromedp.ByID))
	eventually(t, intruder, "the landing page says the name is taken", landingError("bob is a registered name"))

	fillLanding(t, intruder, bs.base, "carol", "", "lobby")
	act(t, intruder, chromedp.Click("#guest", chromedp.ByID))
	eventually(t, intruder, "in as the guest carol", `location.pathname === "/chat/lobby/carol" && document.getElementById("status").dataset.state === "online" && document.querySelector("#me .badge")?.textContent === "guest"`)
	say(t, intruder, "hi, I am a guest")
	eventually(t, bob, "bob sees the guest badge on her message", `[...document.querySelectorAll("#messages .msg[data-seq]")].some(m => m.querySelector(".text").textContent === "hi, I am a guest" && m.querySelector(".head .badge")?.textContent === "guest")`)
	eventually(t, bob, "and in the member list", `[...document.querySelectorAll("#member-list li")].map(li => li.textContent).join(",") === "bob,carol guest"`)
	b.checkNoProblems()
	other.checkNoProblems()
}

// TestBrowserSessionEndedKeepsDraft: a session that ends (here from another
// tab) asks to sign in again; what was typed survives, even a reload.
func TestBrowserSessionEndedKeepsDraft(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	tab := b.tab()
	signUp(t, tab, bs.base, "dana", "lobby")
	act(t, tab, chromedp.SendKeys("#text", "half a thought", chromedp.ByID))
	other := b.tab()
	act(t, other, chromedp.Navigate(bs.base+"/"), chromedp.Evaluate(`fetch("/api/logout", {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}).then(r => r.status)`, nil))
	eventually(t, tab, "asked to sign in again", `!document.getElementById("signin").hidden && document.getElementById("signin-reason").textContent.includes("session ended")`)
	act(t, tab, chromedp.Reload())
	eventually(t, tab, "after a reload, sign-in again and the draft", `!document.getElementById("signin").hidden && document.getElementById("text").value === "half a thought"`)
	act(t, tab,
		chromedp.SendKeys("#signin-password", browserPassword, chromedp.ByID),
		chromedp.Click("#signin button[type=submit]", chromedp.ByQuery),
	)
	eventually(t, tab, "online again", `document.getElementById("status").dataset.state === "online" && document.getElementById("text").value === "half a thought"`)
	b.checkNoProblems()
}

// TestBrowserSignInErrors: the landing page says what went wrong: a taken
// name, a wrong password, too many tries.
func TestBrowserSignInErrors(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	tab := b.tab()
	signUp(t, tab, bs.base, "erin", "lobby")
	act(t, tab, chromedp.Click("#signout", chromedp.ByID))
	eventually(t, tab, "signed out", `location.pathname === "/" && !document.getElementById("signin").hidden`)

	fillLanding(t, tab, bs.base, "Erin", browserPassword, "lobby")
	act(t, tab, chromedp.Click("#signup", chromedp.ByID))
	eventually(t, tab, "name taken", landingError("That name is taken"))
	fillLanding(t, tab, bs.base, "erin", "", "lobby")
	act(t, tab, chromedp.Click("#signin", chromedp.ByID))
	eventually(t, tab, "a password is asked for", landingError("Enter your password"))
	// The stack allows 5 failed sign-ins per name.
	for i := range 5 {
		fillLanding(t, tab, bs.base, "erin", fmt.Sprintf("wrong password %d", i), "lobby")
		act(t, tab, chromedp.Click("#signin", chromedp.ByID))
		eventually(t, tab, "wrong password", landingError("Wrong name or password."))
	}
	fillLanding(t, tab, bs.base, "erin", browserPassword, "lobby")
	act(t, tab, chromedp.Click("#signin", chromedp.ByID))
	eventually(t, tab, "too many tries", landingError("Too many tries: wait"))
	b.checkNoProblems()
}
