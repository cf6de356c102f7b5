package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// result is one row of the final table.
type result struct {
	Name string
	// Figure is the scenario's headline number beyond the common columns
	// (the S4 ceiling, S5 memory per connection, S6 lag, S8 fill time, S9
	// presence bytes).
	Figure string
	// Target is the performance target and whether it was met; missing a
	// target is reported, not a failure of the run.
	Target string

	Conns       int
	ConnectErrs int
	Dropped     int // connections the server closed while the scenario ran

	Sent      int64
	Rejected  int64 // error frames, rate_limited ones included
	Expected  int64
	Delivered int64
	Lost      int64
	Dups      int64
	PerSec    float64 // deliveries per second
	Behind    bool    // publishers sent under 95% of the asked rate
	Lat       histogram

	ToolCPU time.Duration
	// ToolBusy is ToolCPU over the wall time and the CPUs the tool may use.
	ToolBusy      float64
	ToolSaturated bool
	// ToolBound: the tool was saturated while measuring this row (for S4,
	// at a missed step too): the figures may be its limits, not the
	// server's, and the row is marked untrusted.
	ToolBound     bool
	ServerKnown   bool
	ServerCPU     time.Duration
	ServerPeakRSS int64

	// HeldRate is S4's ceiling (msg/s, all publishers); KBPerConn S5's
	// memory per idle connection; PresencePerMember S9's presence bytes
	// per stable member per second.
	HeldRate          float64
	KBPerConn         float64
	PresencePerMember float64
	// Skipped: the peer has no such feature (S6 on Centrifugo).
	Skipped bool

	// Problems are correctness failures (loss, duplicates, errors): any
	// makes the run fail.
	Problems []string
	// Notes explain the figures (why a ramp stopped, hints).
	Notes []string
}

func (r *result) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func (r *result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func (r *result) failed() bool { return len(r.Problems) > 0 }

// status is the table's verdict on a row: FAIL (lost, duplicated or
// refused messages, connection errors), UNTRUSTED (the tool was
// saturated), skipped, or ok.
func (r *result) status() string {
	switch {
	case r.failed():
		return "FAIL"
	case r.Skipped:
		return "skipped"
	case r.ToolBound:
		return "UNTRUSTED"
	}
	return "ok"
}

// printTable writes one row per scenario, then the notes and problems.
func printTable(w io.Writer, results []*result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tconns\tconn_err\tsent\tdelivered\texpected\tlost\tdup\tdeliv/s\tp50\tp95\tp99\tmax\ttool_cpu\tsrv_cpu\tsrv_peak_rss\tfigure\ttarget\tstatus\t")
	for _, r := range results {
		status := r.status()
		toolCPU := fmt.Sprintf("%.2fs %.0f%%", r.ToolCPU.Seconds(), 100*r.ToolBusy)
		if r.ToolSaturated {
			toolCPU += " SAT"
		}
		srvCPU, srvRSS := "-", "-"
		if r.ServerKnown {
			srvCPU = fmt.Sprintf("%.2fs", r.ServerCPU.Seconds())
			srvRSS = fmt.Sprintf("%.1fMB", float64(r.ServerPeakRSS)/(1<<20))
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.Name, r.Conns, r.ConnectErrs, r.Sent, r.Delivered, r.Expected, r.Lost, r.Dups,
			count(r.PerSec), ms(r.Lat.quantile(0.50)), ms(r.Lat.quantile(0.95)), ms(r.Lat.quantile(0.99)), ms(r.Lat.max),
			toolCPU, srvCPU, srvRSS, dash(r.Figure), dash(r.Target), status)
	}
	tw.Flush()
	for _, r := range results {
		for _, n := range r.Notes {
			fmt.Fprintf(w, "%s: %s\n", r.Name, n)
		}
		for _, p := range r.Problems {
			fmt.Fprintf(w, "%s: FAIL: %s\n", r.Name, p)
		}
	}
}

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + "ms"
}

func count(v float64) string {
	if v == 0 {
		return "-"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

func dash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
