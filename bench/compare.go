package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// runFile is what -json writes: one run of chatbench against one peer.
type runFile struct {
	Peer    string   `json:"peer"`
	Results []record `json:"results"`
}

// record is one scenario's row, as numbers: durations in milliseconds or
// seconds, memory in MB or KB.
type record struct {
	Scenario    string  `json:"scenario"`
	Status      string  `json:"status"`
	Sent        int64   `json:"sent"`
	Delivered   int64   `json:"delivered"`
	Expected    int64   `json:"expected"`
	Lost        int64   `json:"lost"`
	Dups        int64   `json:"dups"`
	PerSec      float64 `json:"per_sec"`
	P50ms       float64 `json:"p50_ms"`
	P95ms       float64 `json:"p95_ms"`
	P99ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
	ToolCPUs    float64 `json:"tool_cpu_s"`
	ToolBusy    float64 `json:"tool_busy"`
	ServerCPUs  float64 `json:"server_cpu_s"`
	ServerRSSMB float64 `json:"server_peak_rss_mb"`
	HeldRate    float64 `json:"held_rate,omitempty"`
	KBPerConn   float64 `json:"kb_per_conn,omitempty"`
	// PresenceBPS is S9's presence bytes per stable member per second.
	PresenceBPS float64 `json:"presence_b_per_member_s,omitempty"`
	Figure      string  `json:"figure,omitempty"`
}

func toRecord(r *result) record {
	msOf := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	return record{
		Scenario: r.Name, Status: r.status(),
		Sent: r.Sent, Delivered: r.Delivered, Expected: r.Expected, Lost: r.Lost, Dups: r.Dups,
		PerSec: r.PerSec,
		P50ms:  msOf(r.Lat.quantile(0.50)), P95ms: msOf(r.Lat.quantile(0.95)), P99ms: msOf(r.Lat.quantile(0.99)), MaxMs: msOf(r.Lat.max),
		ToolCPUs: r.ToolCPU.Seconds(), ToolBusy: r.ToolBusy,
		ServerCPUs: r.ServerCPU.Seconds(), ServerRSSMB: float64(r.ServerPeakRSS) / (1 << 20),
		HeldRate: r.HeldRate, KBPerConn: r.KBPerConn, PresenceBPS: r.PresencePerMember, Figure: r.Figure,
	}
}

func writeRun(path, peer string, results []*result) error {
	f := runFile{Peer: peer}
	for _, r := range results {
		f.Results = append(f.Results, toRecord(r))
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// figure is one line of the comparison: a number taken from a scenario's
// record, when it applies to that scenario.
type figure struct {
	name   string
	better string // "lower" or "higher"
	of     func(r record) (float64, bool)
}

func traffic4(r record) bool {
	return r.Scenario != "S5" && r.Scenario != "S6" && r.Delivered > 0
}

var figures = []figure{
	{"held msg/s", "higher", func(r record) (float64, bool) { return r.HeldRate, r.Scenario == "S4" && r.HeldRate > 0 }},
	{"KB/conn", "lower", func(r record) (float64, bool) { return r.KBPerConn, r.Scenario == "S5" && r.KBPerConn != 0 }},
	{"presence B/member/s", "lower", func(r record) (float64, bool) { return r.PresenceBPS, r.PresenceBPS > 0 }},
	{"p50 ms", "lower", func(r record) (float64, bool) { return r.P50ms, traffic4(r) }},
	{"p99 ms", "lower", func(r record) (float64, bool) { return r.P99ms, traffic4(r) }},
	{"max ms", "lower", func(r record) (float64, bool) { return r.MaxMs, traffic4(r) }},
	{"deliv/s", "higher", func(r record) (float64, bool) { return r.PerSec, traffic4(r) }},
	{"conns/s", "higher", func(r record) (float64, bool) { return r.PerSec, r.Scenario == "S5" }},
	{"srv us/deliv", "lower", func(r record) (float64, bool) {
		return 1e6 * r.ServerCPUs / float64(r.Delivered), traffic4(r) && r.ServerCPUs > 0
	}},
	{"srv peak MB", "lower", func(r record) (float64, bool) { return r.ServerRSSMB, r.ServerRSSMB > 0 }},
	{"lost+dup", "lower", func(r record) (float64, bool) { return float64(r.Lost + r.Dups), r.Expected > 0 }},
	{"tool busy %", "lower", func(r record) (float64, bool) { return 100 * r.ToolBusy, r.ToolCPUs > 0 }},
}

// runCompare reads the -json files of one or more runs per peer and prints
// one table: per scenario and figure, each peer's median [min-max] over its
// runs, and the ratio of the first peer's median to the second's.
func runCompare(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("chatbench compare", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: chatbench compare <file.json>... (files written by chatbench -json; the first peer named is the ratio's numerator)")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return errors.New("compare: no files")
	}
	var runs []runFile
	for _, path := range fs.Args() {
		b, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("compare: %w", err)
		}
		var f runFile
		if err := json.Unmarshal(b, &f); err != nil {
			return fmt.Errorf("compare: %s: %w", path, err)
		}
		runs = append(runs, f)
	}
	printComparison(stdout, runs)
	return nil
}

func printComparison(w io.Writer, runs []runFile) {
	var peers, scenarios []string
	// byKey[peer][scenario] holds that scenario's record of every run.
	byKey := map[string]map[string][]record{}
	for _, f := range runs {
		if !slices.Contains(peers, f.Peer) {
			peers = append(peers, f.Peer)
			byKey[f.Peer] = map[string][]record{}
		}
		for _, r := range f.Results {
			if !slices.Contains(scenarios, r.Scenario) {
				scenarios = append(scenarios, r.Scenario)
			}
			byKey[f.Peer][r.Scenario] = append(byKey[f.Peer][r.Scenario], r)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := []string{"scenario", "figure"}
	for _, p := range peers {
		header = append(header, fmt.Sprintf("%s (runs: %d)", p, countRuns(runs, p)))
	}
	ratio := len(peers) == 2
	if ratio {
		header = append(header, peers[0]+"/"+peers[1], "better")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
	for _, sc := range scenarios {
		row := []string{sc, "status"}
		for _, p := range peers {
			row = append(row, statusCell(byKey[p][sc]))
		}
		if ratio {
			row = append(row, "", "")
		}
		fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		for _, fig := range figures {
			var medians []float64
			row := []string{"", fig.name}
			any := false
			for _, p := range peers {
				vals := valuesOf(byKey[p][sc], fig)
				if len(vals) > 0 {
					any = true
				}
				med, cell := spread(vals)
				medians = append(medians, med)
				row = append(row, cell)
			}
			if !any {
				continue
			}
			if ratio {
				row = append(row, ratioCell(medians[0], medians[1]), fig.better)
			}
			fmt.Fprintln(tw, strings.Join(row, "\t")+"\t")
		}
	}
	tw.Flush()
	fmt.Fprintln(w, "cells: median [min-max] over the runs; rows marked UNTRUSTED had chatbench's CPU saturated, FAIL lost or refused messages")
}

func countRuns(runs []runFile, peer string) int {
	n := 0
	for _, f := range runs {
		if f.Peer == peer {
			n++
		}
	}
	return n
}

// valuesOf takes figure fig from the records that are neither failed nor
// skipped: a failed run's latency is not the peer's.
func valuesOf(rs []record, fig figure) []float64 {
	var vals []float64
	for _, r := range rs {
		if r.Status == "FAIL" || r.Status == "skipped" {
			continue
		}
		if v, ok := fig.of(r); ok {
			vals = append(vals, v)
		}
	}
	return vals
}

// statusCell counts the runs' verdicts: "ok", "ok 2, UNTRUSTED 1", "-".
func statusCell(rs []record) string {
	if len(rs) == 0 {
		return "-"
	}
	var order []string
	counts := map[string]int{}
	for _, r := range rs {
		if counts[r.Status] == 0 {
			order = append(order, r.Status)
		}
		counts[r.Status]++
	}
	if len(order) == 1 {
		return order[0]
	}
	parts := make([]string, len(order))
	for i, s := range order {
		parts[i] = fmt.Sprintf("%s %d", s, counts[s])
	}
	return strings.Join(parts, ", ")
}

// spread returns the median of vals and its cell: the value, or the
// median [min-max] of several (the lower middle one of an even count).
func spread(vals []float64) (float64, string) {
	if len(vals) == 0 {
		return 0, "-"
	}
	s := slices.Clone(vals)
	slices.Sort(s)
	med := s[(len(s)-1)/2]
	if len(s) == 1 {
		return med, num(med)
	}
	return med, fmt.Sprintf("%s [%s-%s]", num(med), num(s[0]), num(s[len(s)-1]))
}

func ratioCell(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// num prints about three significant digits; from 100 on, whole numbers.
func num(v float64) string {
	switch a := max(v, -v); {
	case a == 0:
		return "0"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.3f", v)
}
