package main

// Browser tests: the real page in headless Chromium against a real stack
// (embedded nats-server, gateway, bot, sms-worker, history when present).

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/kelseyhightower/envconfig"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/natschat/chat/services/accounts"
	"github.com/natschat/chat/services/bot"
	"github.com/natschat/chat/services/gateway"
	"github.com/natschat/chat/services/history"
	"github.com/natschat/chat/services/smsworker"
	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/shared/stream"
	"github.com/natschat/chat/shared/testkit"
	"github.com/natschat/chat/shared/testkit/natstest"
)

// browserStack runs the services in-process with a gateway that a test can
// stop and start again on the same address.
type browserStack struct {
	t    *testing.T
	ns   *server.Server
	addr string
	base string

	mu     sync.Mutex
	stopGW func()
}

func startBrowserStack(t *testing.T) *browserStack {
	t.Helper()
	ns := natstest.Start(t)
	bs := &browserStack{t: t, ns: ns}
	var botCfg bot.Config
	var smsCfg smsworker.Config
	var histCfg history.Config
	for prefix, spec := range map[string]any{"BROWSER_TEST_BOT": &botCfg, "BROWSER_TEST_SMS": &smsCfg, "BROWSER_TEST_HISTORY": &histCfg} {
		if err := envconfig.Process(prefix, spec); err != nil {
			t.Fatal(err)
		}
	}
	botCfg.URL, smsCfg.URL, histCfg.URL = ns.ClientURL(), ns.ClientURL(), ns.ClientURL()
	histCfg.SQLitePath = filepath.Join(t.TempDir(), "chat.db")
	// One after the other, each ready before the next: every service
	// updates the streams it uses as it starts, and nats-server (v2.15.2)
	// races, under the race detector, between a stream update and a
	// consumer being created on that stream.
	log := testkit.Logger(t)
	nc := natstest.Connect(t, ns)
	testkit.Start(t, "bot", func(ctx context.Context) error { return bot.Run(ctx, botCfg, log) })
	waitBot(t, nc)
	testkit.Start(t, "sms-worker", func(ctx context.Context) error { return smsworker.Run(ctx, smsCfg, log) })
	js := natstest.JetStream(t, nc)
	testkit.WaitFor(t, "sms-worker pulling", func() bool {
		c, err := js.Consumer(context.Background(), stream.SMS, smsCfg.Consumer)
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumWaiting > 0
	})
	testkit.Start(t, "history", func(ctx context.Context) error { return history.Run(ctx, histCfg, log) })
	testkit.WaitFor(t, "history answering", func() bool {
		m, err := nc.Request(chat.HistoryRooms, nil, time.Second)
		return err == nil && !strings.Contains(string(m.Data), `"error"`)
	})
	var accCfg accounts.Config
	if err := envconfig.Process("BROWSER_TEST_ACCOUNTS", &accCfg); err != nil {
		t.Fatal(err)
	}
	accCfg.URL, accCfg.DatabaseURL, accCfg.SQLitePath = ns.ClientURL(), "", filepath.Join(t.TempDir(), "accounts.db")
	accCfg.LoginNameLimit = 5 // TestBrowserSignInErrors reaches it
	testkit.Start(t, "accounts", func(ctx context.Context) error { return accounts.Run(ctx, accCfg, log) })
	testkit.WaitFor(t, "accounts answering", func() bool {
		m, err := nc.Request(chat.AuthSession, []byte(`{}`), time.Second)
		return err == nil && strings.Contains(string(m.Data), `"unauthorized"`)
	})

	ln := testkit.Listen(t)
	bs.addr = ln.Addr().String()
	bs.base = "http://" + bs.addr
	bs.startGateway(ln)
	return bs
}

// startGateway serves the gateway on ln, or on the stack's address if ln is nil.
func (bs *browserStack) startGateway(ln net.Listener) {
	t := bs.t
	t.Helper()
	if ln == nil {
		testkit.WaitFor(t, "gateway address free", func() bool {
			var err error
			ln, err = net.Listen("tcp", bs.addr)
			return err == nil
		})
	}
	var cfg gateway.Config
	if err := envconfig.Process("BROWSER_TEST_GATEWAY", &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.URL = bs.ns.ClientURL()
	cfg.ShutdownTimeout = 3 * time.Second
	cfg.PresenceInterval = 500 * time.Millisecond
	nc, err := nats.Connect(cfg.URL)
	if err != nil {
		t.Fatal(err)
	}
	log := testkit.Logger(t)
	stop := testkit.Start(t, "gateway", func(ctx context.Context) error {
		defer nc.Close()
		return gateway.Serve(ctx, cfg, nc, ln, log)
	})
	bs.mu.Lock()
	bs.stopGW = stop
	bs.mu.Unlock()
	testkit.WaitReady(t, bs.base)
}

func (bs *browserStack) stopGateway() {
	bs.mu.Lock()
	stop := bs.stopGW
	bs.mu.Unlock()
	stop()
}

// browser starts headless Chromium; each tab() is a separate page in it.
type browser struct {
	t        *testing.T
	ctx      context.Context
	mu       sync.Mutex
	problems []string
}

func startBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(cancelCtx)
	if err := chromedp.Run(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx}
}

func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testkit.Missing(t, "Chromium", "apt-get install -y chromium")
	return ""
}

// tab opens a new page. Script errors, console errors and alert dialogs are
// recorded as problems that fail the test.
func (b *browser) tab() context.Context {
	ctx, cancel := chromedp.NewContext(b.ctx)
	b.t.Cleanup(cancel)
	chromedp.ListenTarget(ctx, func(ev any) {
		switch ev := ev.(type) {
		case *runtime.EventExceptionThrown:
			b.problem("uncaught exception: " + ev.ExceptionDetails.Error())
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.APITypeError {
				b.problem(fmt.Sprintf("console error: %v", ev.Args))
			}
		case *page.EventJavascriptDialogOpening:
			b.problem("a dialog opened: " + ev.Message)
			go chromedp.Run(ctx, page.HandleJavaScriptDialog(false))
		}
	})
	if err := chromedp.Run(ctx); err != nil {
		b.t.Fatal(err)
	}
	return ctx
}

func (b *browser) problem(p string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.problems = append(b.problems, p)
}

func (b *browser) checkNoProblems() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.problems {
		b.t.Error(p)
	}
}

// act runs chromedp actions with a deadline.
func act(t *testing.T, ctx context.Context, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, testkit.Deadline)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		t.Fatalf("browser: %v", err)
	}
}

// eventually polls a JavaScript boolean expression until it is true.
func eventually(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	testkit.WaitForState(t, testkit.Deadline, fmt.Sprintf("%s (%s)", what, expr), func() (bool, string) {
		var ok bool
		if err := chromedp.Run(ctx, chromedp.Evaluate(expr, &ok)); err == nil && ok {
			return true, ""
		}
		var text string
		chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById("messages")?.innerText ?? document.body.innerText`, &text))
		return false, "page shows:\n" + text
	})
}

func openRoom(t *testing.T, ctx context.Context, base, room, user string) {
	t.Helper()
	act(t, ctx, chromedp.Navigate(fmt.Sprintf("%s/chat/%s/%s", base, room, user)))
	eventually(t, ctx, "online", `document.getElementById("status").dataset.state === "online"`)
}

func say(t *testing.T, ctx context.Context, text string) {
	t.Helper()
	act(t, ctx,
		chromedp.WaitVisible("#text", chromedp.ByID),
		chromedp.SendKeys("#text", text, chromedp.ByID),
		pressEnter(),
	)
}

// pressEnter presses Enter as a keyboard does. SendKeys("\r") would also
// send a separate character event, which no real keyboard sends after a
// cancelled keydown, leaving a stray newline in the box.
func pressEnter() chromedp.Action {
	return chromedp.ActionFunc(func(ctx context.Context) error {
		down := input.DispatchKeyEvent(input.KeyRawDown).WithKey("Enter").WithCode("Enter").WithWindowsVirtualKeyCode(13)
		if err := down.Do(ctx); err != nil {
			return err
		}
		return input.DispatchKeyEvent(input.KeyUp).WithKey("Enter").WithCode("Enter").WithWindowsVirtualKeyCode(13).Do(ctx)
	})
}

// afterPaint waits until the page has painted twice: the layout after a
// resize has settled.
func afterPaint() chromedp.Action {
	return chromedp.Evaluate(`new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))`, nil,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })
}

// countText is a JS expression counting stored messages with exactly text.
func countText(text string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#messages .msg[data-seq] .text")].filter(e => e.textContent === %q).length`, text)
}

func screenshot(t *testing.T, ctx context.Context, name string, width, height int64) {
	t.Helper()
	var png []byte
	act(t, ctx,
		page.BringToFront(), // a background tab never paints
		chromedp.EmulateViewport(width, height),
		afterPaint(),
		chromedp.CaptureScreenshot(&png),
	)
	if len(png) < 1000 {
		t.Fatalf("screenshot %s is empty", name)
	}
	// The images in docs/ are refreshed on demand only, so that a test run
	// does not change the tree.
	dir := t.TempDir()
	if os.Getenv("UPDATE_SCREENSHOTS") != "" {
		dir = filepath.Join("..", "..", "docs", "screenshots")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	defer t.Logf("screenshot %s saved in %s", name, dir)
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestBrowserChat(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	alice, bob, carol := b.tab(), b.tab(), b.tab()
	openRoom(t, alice, bs.base, "team-a", "alice")
	openRoom(t, bob, bs.base, "team-a", "bob")
	openRoom(t, carol, bs.base, "team_b", "carol")

	say(t, alice, "hello bob")
	eventually(t, bob, "bob sees alice's message", countText("hello bob")+" === 1")
	say(t, bob, "hi alice, see https://example.com/x?y=1")
	eventually(t, alice, "alice sees bob's reply", `[...document.querySelectorAll("#messages .msg[data-seq] .text")].some(e => e.textContent.startsWith("hi alice"))`)
	eventually(t, alice, "the URL is a safe link",
		`(() => { const a = document.querySelector("#messages .msg a"); return !!a && a.href === "https://example.com/x?y=1" && a.rel === "noopener noreferrer"; })()`)
	eventually(t, alice, "own message marked", `document.querySelector("#messages .msg.own .text")?.textContent === "hello bob"`)

	// Carol's own message comes after anything misrouted to her room.
	say(t, carol, "barrier")
	eventually(t, carol, "carol's own message", countText("barrier")+" === 1")
	var n int
	act(t, carol, chromedp.Evaluate(`document.querySelectorAll("#messages .msg").length`, &n))
	if n != 1 {
		t.Errorf("carol in another room sees %d messages, want only her own", n)
	}
	b.checkNoProblems()
}

func TestBrowserRendersMarkupAsText(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	alice := b.tab()
	openRoom(t, alice, bs.base, "lobby", "alice")
	const evil = `<img src=x onerror=alert(1)>`
	say(t, alice, evil)
	eventually(t, alice, "markup shown as text", countText(evil)+" === 1")
	var imgs int
	act(t, alice, chromedp.Evaluate(`document.querySelectorAll("#messages img").length`, &imgs))
	if imgs != 0 {
		t.Errorf("the message created %d img elements", imgs)
	}
	// Markup in a user name never gets to the page: the name is refused.
	var body string
	act(t, alice, chromedp.Navigate(bs.base+"/chat/lobby/%3Cb%3Ex%3C%2Fb%3E"), chromedp.Text("body", &body))
	if !strings.Contains(body, "invalid name") && !strings.Contains(body, "bad path") {
		t.Errorf("user name with markup: page says %q", body)
	}
	b.checkNoProblems() // includes: no alert dialog opened
}

func TestBrowserHistoryAndPaging(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	nc := natstest.Connect(t, bs.ns)
	for i := range 120 {
		if err := nc.Publish("chat.room.lobby", []byte(fmt.Sprintf(`{"user":"old","text":"m%03d"}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	b := startBrowser(t)
	alice := b.tab()
	openRoom(t, alice, bs.base, "lobby", "alice")
	eventually(t, alice, "the newest 50 on open", `document.querySelectorAll("#messages .msg[data-seq]").length === 50`)
	say(t, alice, "after the history")
	eventually(t, alice, "own message", countText("after the history")+" === 1")

	act(t, alice, chromedp.Reload())
	eventually(t, alice, "online after reload", `document.getElementById("status").dataset.state === "online"`)
	eventually(t, alice, "history after reload", countText("after the history")+" === 1 && "+countText("m119")+" === 1")

	// Scroll up until the start of the room.
	eventually(t, alice, "the start of the room, by scrolling up",
		`(() => { const log = document.getElementById("log"); log.scrollTop = 0; log.dispatchEvent(new Event("scroll")); return !document.getElementById("start").hidden; })()`)
	eventually(t, alice, "all 121 messages, the first one first",
		`document.querySelectorAll("#messages .msg[data-seq]").length === 121 && document.querySelector("#messages .msg[data-seq] .text").textContent === "m000"`)
	b.checkNoProblems()
}

func TestBrowserSurvivesGatewayRestart(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	alice := b.tab()
	openRoom(t, alice, bs.base, "lobby", "alice")
	say(t, alice, "before")
	eventually(t, alice, "before", countText("before")+" === 1")

	bs.stopGateway()
	eventually(t, alice, "offline shown", `document.getElementById("status").dataset.state !== "online"`)
	nc := natstest.Connect(t, bs.ns)
	for i := range 5 {
		nc.Publish("chat.room.lobby", []byte(fmt.Sprintf(`{"user":"ops","text":"while down %d"}`, i)))
	}
	nc.Flush()
	bs.startGateway(nil)
	eventually(t, alice, "reconnected", `document.getElementById("status").dataset.state === "online"`)
	for i := range 5 {
		eventually(t, alice, "message sent while down", countText(fmt.Sprintf("while down %d", i))+" === 1")
	}
	say(t, alice, "after")
	eventually(t, alice, "after", countText("after")+" === 1")
	var before int
	act(t, alice, chromedp.Evaluate(countText("before"), &before))
	if before != 1 {
		t.Errorf("message from before the restart shown %d times", before)
	}
	b.checkNoProblems()
}

func TestBrowserMembers(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	alice := b.tab()
	openRoom(t, alice, bs.base, "lobby", "alice")
	// The names, without the guest badges.
	members := `[...document.querySelectorAll("#member-list li")].map(e => e.firstChild.textContent).join(",")`
	eventually(t, alice, "alice online", members+` === "alice"`)

	bob := b.tab()
	openRoom(t, bob, bs.base, "lobby", "bob")
	eventually(t, alice, "bob joins the list", members+` === "alice,bob"`)
	eventually(t, alice, "join notice", `[...document.querySelectorAll(".note")].some(e => e.textContent === "bob joined")`)
	act(t, bob, chromedp.Navigate(bs.base+"/"))
	eventually(t, alice, "bob leaves the list", members+` === "alice"`)
	eventually(t, alice, "leave notice", `[...document.querySelectorAll(".note")].some(e => e.textContent === "bob left")`)
	b.checkNoProblems()
}

func TestBrowserCommands(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	alice, bob := b.tab(), b.tab()
	openRoom(t, alice, bs.base, "lobby", "alice")
	openRoom(t, bob, bs.base, "lobby", "bob")

	// Typing "/" offers the bot's own command list.
	act(t, alice, chromedp.SendKeys("#text", "/", chromedp.ByID))
	eventually(t, alice, "command menu", `!document.getElementById("commands").hidden && [...document.querySelectorAll("#commands code")].map(e => e.textContent).join(",") === "/help,/now,/sms <user>"`)
	act(t, alice, chromedp.Evaluate(`document.getElementById("text").value = ""`, nil))

	say(t, alice, "/now")
	eventually(t, bob, "bob sees the time", `[...document.querySelectorAll("#messages .msg.kind-bot .text")].some(e => e.textContent.startsWith("alice asked for the time"))`)
	say(t, alice, "/sms bob")
	eventually(t, alice, "queued, privately", `[...document.querySelectorAll(".note.notice")].some(e => e.textContent === "SMS to bob queued")`)
	eventually(t, bob, "SMS confirmation", `[...document.querySelectorAll("#messages .msg.kind-bot .text")].some(e => e.textContent.startsWith("An SMS has been sent to bob"))`)
	say(t, alice, "/nope")
	eventually(t, alice, "private error", `[...document.querySelectorAll(".note.error")].some(e => e.textContent.includes("unknown command /nope"))`)

	// Alice's next message reaches bob after anything her commands could
	// have sent him.
	say(t, alice, "barrier")
	eventually(t, bob, "alice's message after the commands", countText("barrier")+" === 1")
	var leaked bool
	act(t, bob, chromedp.Evaluate(`[...document.querySelectorAll(".note")].some(e => e.textContent.includes("/nope") || e.textContent.includes("queued"))`, &leaked))
	if leaked {
		t.Error("bob sees alice's private answers")
	}
	var commandShown bool
	act(t, bob, chromedp.Evaluate(`[...document.querySelectorAll("#messages .text")].some(e => e.textContent.startsWith("/"))`, &commandShown))
	if commandShown {
		t.Error("a command line was broadcast")
	}
	b.checkNoProblems()
}

func TestBrowserScreenshots(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	nc := natstest.Connect(t, bs.ns)
	for _, m := range []string{
		`{"user":"alice","text":"Morning! Is the deploy still on for today?","auth":"account"}`,
		`{"user":"alice","text":"The checklist is at https://example.com/deploy","auth":"account"}`,
		`{"user":"bob","text":"Yes, after lunch. I'll post when it starts.","auth":"account"}`,
		`{"user":"bot","kind":"bot","text":"bob asked for the time: it is Tue, 24 Nov 2026 12:02:11 UTC"}`,
		`{"user":"carol","text":"<b>this stays text</b> and so does this","auth":"guest"}`,
	} {
		nc.Publish("chat.room.team-a", []byte(m))
	}
	nc.Flush()
	b := startBrowser(t)
	bob := b.tab()
	act(t, bob, chromedp.Navigate(bs.base+"/"))
	eventually(t, bob, "room list", `document.querySelectorAll("#rooms button").length >= 1`)
	screenshot(t, bob, "landing.png", 1280, 800)
	signUp(t, bob, bs.base, "bob", "team-a")
	// Other browsers: no shared cookies.
	b2, b3 := startBrowser(t), startBrowser(t)
	carol := b2.tab() // a guest
	openRoom(t, carol, bs.base, "team-a", "carol")
	alice := b3.tab()
	signUp(t, alice, bs.base, "alice", "team-a")
	say(t, alice, "Great, thanks bob!")
	eventually(t, bob, "messages shown", countText("Great, thanks bob!")+" === 1")
	eventually(t, bob, "members", `document.querySelectorAll("#member-list li").length === 3`)
	screenshot(t, bob, "room-desktop.png", 1280, 800)
	screenshot(t, bob, "room-phone.png", 390, 844)
	act(t, carol, chromedp.Navigate(bs.base+"/chat/team-a/alice"))
	eventually(t, carol, "sign-in offered", `!document.getElementById("signin").hidden`)
	act(t, carol, chromedp.SendKeys("#text", "I was typing this", chromedp.ByID))
	screenshot(t, carol, "room-signin.png", 1280, 800)
	for _, b := range []*browser{b, b2, b3} {
		b.checkNoProblems()
	}
}

func TestBrowserLanding(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	tab := b.tab()
	act(t, tab, chromedp.Navigate(bs.base+"/"))
	act(t, tab,
		chromedp.WaitVisible("#user", chromedp.ByID),
		chromedp.SendKeys("#user", "a.b", chromedp.ByID),
		chromedp.Click("button[type=submit]", chromedp.ByQuery),
	)
	eventually(t, tab, "the rule explained", `document.getElementById("error").textContent.includes("letters A-Z, digits")`)
	act(t, tab,
		chromedp.Evaluate(`document.getElementById("user").value = ""`, nil),
		chromedp.SendKeys("#user", "dana", chromedp.ByID),
		chromedp.Evaluate(`document.getElementById("room").value = "q-and_a"`, nil),
		chromedp.Click("#guest", chromedp.ByID),
	)
	eventually(t, tab, "in the room", `location.pathname === "/chat/q-and_a/dana" && document.getElementById("status").dataset.state === "online"`)
	act(t, tab, chromedp.Navigate(bs.base+"/"))
	eventually(t, tab, "name remembered", `document.getElementById("user").value === "dana"`)
	b.checkNoProblems()
}

func TestBrowserDarkMode(t *testing.T) {
	t.Parallel()
	bs := startBrowserStack(t)
	b := startBrowser(t)
	tab := b.tab()
	background := `getComputedStyle(document.body).backgroundColor`
	var light, dark string
	openRoom(t, tab, bs.base, "lobby", "dana")
	act(t, tab, chromedp.Evaluate(background, &light))
	act(t, tab, emulation.SetEmulatedMedia().WithFeatures([]*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}}))
	act(t, tab, chromedp.Evaluate(background, &dark))
	if light == dark {
		t.Errorf("background %s in both light and dark mode", light)
	}
	say(t, tab, "dark mode works")
	eventually(t, tab, "message", countText("dark mode works")+" === 1")
	screenshot(t, tab, "room-dark.png", 1280, 800)
	b.checkNoProblems()
}
