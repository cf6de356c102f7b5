// Package config reads a service's configuration from the environment the
// same way in every binary: the variables (listed by -h), the checks that
// report every problem at once, and the logging settings. Running a binary
// with it is package service.
package config

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// ErrHelp is returned by Load when the usage was printed because of -h.
var ErrHelp = errors.New("help requested")

// ParseArgs reports whether args ask for the usage (-h, -help or --help).
// Any other argument is an error: configuration comes only from the
// environment.
func ParseArgs(args []string) (help bool, err error) {
	for _, arg := range args {
		switch arg {
		case "-h", "-help", "--help":
			help = true
		default:
			return false, fmt.Errorf("unexpected argument %q: configuration comes from environment variables, see -h", arg)
		}
	}
	return help, nil
}

// Load fills spec from environment variables with prefix (see envconfig).
// With -h, -help or --help in args it prints every variable to stdout and
// returns ErrHelp; any other argument is an error.
func Load(prefix string, spec any, args []string, stdout io.Writer) error {
	help, err := ParseArgs(args)
	if err != nil {
		return err
	}
	if help {
		if err := Usage(prefix, spec, stdout); err != nil {
			return err
		}
		return ErrHelp
	}
	if err := envconfig.Process(prefix, spec); err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	return nil
}

// Usage prints the variables spec reads, with defaults and descriptions.
func Usage(prefix string, spec any, w io.Writer) error {
	fmt.Fprintln(w, "Configuration is read from these environment variables:")
	fmt.Fprintln(w)
	return Table(prefix, spec, w)
}

// Table prints the table of Usage without its heading.
func Table(prefix string, spec any, w io.Writer) error {
	tw := tabwriter.NewWriter(w, 1, 0, 2, ' ', 0)
	if err := envconfig.Usagef(prefix, spec, tw, usageFormat); err != nil {
		return fmt.Errorf("print usage: %w", err)
	}
	return tw.Flush()
}

const usageFormat = `VARIABLE	DEFAULT	DESCRIPTION
{{range .}}{{usage_key .}}	{{usage_default .}}	{{usage_description .}}{{if .Alt}} (or {{.Alt}}){{end}}
{{end}}`

// Checker collects the problems of a configuration read with one prefix,
// so that all of them are reported at once, each naming its variable:
//
//	c := config.NewChecker("GATEWAY")
//	c.Check(cfg.SendQueue >= 1, "SEND_QUEUE", "must be at least 1 (got %d)", cfg.SendQueue)
//	return c.Err()
type Checker struct {
	prefix string
	errs   []error
}

// NewChecker checks the variables <prefix>_*.
func NewChecker(prefix string) *Checker { return &Checker{prefix: prefix} }

// Check records "<prefix>_<name> <message>" unless ok.
func (c *Checker) Check(ok bool, name, format string, args ...any) {
	if !ok {
		c.errs = append(c.errs, fmt.Errorf("%s_%s %s", c.prefix, name, fmt.Sprintf(format, args...)))
	}
}

// CheckShared is Check for a variable that falls back to its unprefixed
// name (NATS_URL, LOG_LEVEL, ...): the message names both.
func (c *Checker) CheckShared(ok bool, name, format string, args ...any) {
	if !ok {
		c.errs = append(c.errs, fmt.Errorf("%s_%s (or %s) %s", c.prefix, name, name, fmt.Sprintf(format, args...)))
	}
}

// Err is nil without problems, else all of them, one per line.
func (c *Checker) Err() error { return errors.Join(c.errs...) }

// Log is the logging part of every service's configuration.
type Log struct {
	Level  string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	Format string `envconfig:"LOG_FORMAT" default:"auto" desc:"text, json, or auto (text on a terminal, json otherwise)"`
}

// Check records what is wrong with the logging variables.
func (cfg Log) Check(c *Checker) {
	var level slog.Level
	c.CheckShared(level.UnmarshalText([]byte(cfg.Level)) == nil, "LOG_LEVEL", "must be debug, info, warn or error (got %q)", cfg.Level)
	switch strings.ToLower(cfg.Format) {
	case "text", "json", "auto":
	default:
		c.CheckShared(false, "LOG_FORMAT", "must be text, json or auto (got %q)", cfg.Format)
	}
}

// Logger builds the slog logger cfg describes, writing to w.
func (cfg Log) Logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(cfg.Level)); err != nil {
		return nil, fmt.Errorf("LOG_LEVEL %q: %w", cfg.Level, err)
	}
	opts := &slog.HandlerOptions{Level: level}
	format := strings.ToLower(cfg.Format)
	if format == "auto" {
		format = "json"
		if f, ok := w.(*os.File); ok && isTerminal(f) {
			format = "text"
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("LOG_FORMAT %q: want text, json or auto", cfg.Format)
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
