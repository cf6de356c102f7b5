package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/natschat/chat/shared/chat"
	"github.com/natschat/chat/web"
)

// contentSecurityPolicy forbids inline scripts and any origin but our own:
// user text is rendered as text, and this is the second line of defence.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'"

func (g *Gateway) routes() {
	static, err := fs.Sub(web.Files, "static")
	if err != nil {
		panic("gateway: web files: " + err.Error())
	}
	g.mux = http.NewServeMux()
	g.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	g.mux.HandleFunc("GET /{$}", g.page("index.html"))
	g.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	g.mux.HandleFunc("GET /readyz", g.serveReady)
	g.mux.Handle("GET /metrics", promhttp.HandlerFor(g.metrics.registry, promhttp.HandlerOpts{}))
	g.mux.HandleFunc("GET /api/rooms", g.serveRooms)
	g.mux.HandleFunc("GET /api/rooms/{room}/messages", g.serveMessages)
	g.accountRoutes()
	if g.cfg.Pprof {
		g.mux.HandleFunc("/debug/pprof/", pprof.Index)
		g.mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		g.mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		g.mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		g.mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
}

// ServeHTTP routes requests. Room URLs are matched before the mux, which
// would otherwise redirect an empty name (/chat//bob) instead of refusing it.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	switch path := r.URL.Path; {
	case strings.HasPrefix(path, "/ws/chat/"):
		g.serveWS(w, r)
	case strings.HasPrefix(path, "/chat/"):
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			writeText(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		if _, _, ok := roomAndUser(w, r, "/chat/"); ok {
			g.page("room.html")(w, r)
		}
	default:
		g.mux.ServeHTTP(w, r)
	}
}

// roomAndUser reads /<prefix><room>/<user>, answering 400 with the reason
// when either name is not valid.
func roomAndUser(w http.ResponseWriter, r *http.Request, prefix string) (room, user string, ok bool) {
	rest := strings.TrimPrefix(r.URL.Path, prefix)
	parts := strings.Split(rest, "/")
	if len(parts) != 2 {
		writeText(w, http.StatusBadRequest, fmt.Sprintf("bad path: want %s<room>/<user>", prefix))
		return "", "", false
	}
	room, user = parts[0], parts[1]
	for _, check := range []error{chat.ValidateName("room", room), chat.ValidateName("user", user)} {
		if check != nil {
			writeText(w, http.StatusBadRequest, check.Error())
			return "", "", false
		}
	}
	return room, user, true
}

func (g *Gateway) page(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(web.Files, "static/"+name)
		if err != nil {
			writeText(w, http.StatusInternalServerError, "page missing")
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(b)
	}
}

func (g *Gateway) serveReady(w http.ResponseWriter, _ *http.Request) {
	if !g.nc.IsConnected() {
		writeText(w, http.StatusServiceUnavailable, "not ready: nats "+g.nc.Status().String())
		return
	}
	if since, full := g.store.full(); full {
		// Still ready: joins, history and presence work; sending does not.
		writeText(w, http.StatusOK, "ready; degraded: JetStream storage is full since "+since.UTC().Format(time.RFC3339)+", messages are refused")
		return
	}
	writeText(w, http.StatusOK, "ready")
}

// serveRooms lists rooms, answered by the history service over NATS.
func (g *Gateway) serveRooms(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Limit int `json:"limit,omitempty"`
	}
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			writeJSONError(w, http.StatusBadRequest, "limit must be a positive integer")
			return
		}
		req.Limit = n
	}
	g.proxyHistory(w, r, chat.HistoryRooms, req)
}

// serveMessages pages through a room's stored messages.
func (g *Gateway) serveMessages(w http.ResponseWriter, r *http.Request) {
	room := r.PathValue("room")
	if err := chat.ValidateName("room", room); err != nil {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	var req chat.HistoryRequest
	q := r.URL.Query()
	for _, p := range []struct {
		name string
		dst  *uint64
	}{{"before", &req.Before}, {"after", &req.After}} {
		if s := q.Get(p.name); s != "" {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				writeJSONError(w, http.StatusBadRequest, p.name+" must be a non-negative integer (a message seq)")
				return
			}
			*p.dst = n
		}
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > g.cfg.PageMax {
			writeJSONError(w, http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 1 to %d", g.cfg.PageMax))
			return
		}
		req.Limit = n
	}
	if req.Before != 0 && req.After >= req.Before {
		writeJSONError(w, http.StatusBadRequest, "after must be less than before")
		return
	}
	g.proxyHistory(w, r, chat.HistorySubject(room), req)
}

func (g *Gateway) proxyHistory(w http.ResponseWriter, r *http.Request, subject string, req any) {
	data, _ := json.Marshal(req)
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.HistoryTimeout)
	defer cancel()
	msg, err := g.nc.RequestWithContext(ctx, subject, data)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		writeJSONError(w, http.StatusServiceUnavailable, "history service unavailable: no instance is running")
		return
	case err != nil:
		g.log.Warn("history request failed", "subject", subject, "err", err)
		writeJSONError(w, http.StatusServiceUnavailable, "history service unavailable: "+err.Error())
		return
	}
	var check struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &check); err != nil {
		writeJSONError(w, http.StatusBadGateway, "history service sent a malformed reply")
		return
	}
	if check.Error != "" {
		writeJSONError(w, http.StatusBadGateway, "history service: "+check.Error)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(msg.Data)
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintln(w, text)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
