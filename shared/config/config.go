// Package config loads a service's configuration from the environment the
// same way in every binary, and builds its logger.
package config

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/kelseyhightower/envconfig"
)

// ErrHelp is returned by Load when the usage was printed because of -h.
var ErrHelp = errors.New("help requested")

// Load fills spec from environment variables with prefix (see envconfig).
// With -h, -help or --help in args it prints every variable to stdout and
// returns ErrHelp; any other argument is an error, since configuration comes
// only from the environment.
func Load(prefix string, spec any, args []string, stdout io.Writer) error {
	for _, arg := range args {
		switch arg {
		case "-h", "-help", "--help":
			if err := Usage(prefix, spec, stdout); err != nil {
				return err
			}
			return ErrHelp
		default:
			return fmt.Errorf("unexpected argument %q: configuration comes from environment variables, see -h", arg)
		}
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

// Log is the logging part of every service's configuration.
type Log struct {
	Level  string `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	Format string `envconfig:"LOG_FORMAT" default:"auto" desc:"text, json, or auto (text on a terminal, json otherwise)"`
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

// Main is the whole main function of a service binary: it loads prefix's
// configuration from the environment (-h prints it), builds the logger,
// and runs run until SIGINT or SIGTERM. It exits 2 on a configuration
// error and 1 when run fails.
func Main[C interface {
	Logger(io.Writer) (*slog.Logger, error)
}](name, prefix string, run func(context.Context, C, *slog.Logger) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, prefix, os.Args[1:], os.Stdout, os.Stderr, run); err != nil {
		stop()
		var cfgErr configError
		if errors.As(err, &cfgErr) {
			// There may be no logger: say it plainly.
			fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
			os.Exit(2)
		}
		os.Exit(1) // Run has logged it
	}
}

// Run is Main without the process: testable, and usable by a binary that
// composes several services.
func Run[C interface {
	Logger(io.Writer) (*slog.Logger, error)
}](ctx context.Context, prefix string, args []string, stdout, stderr io.Writer, run func(context.Context, C, *slog.Logger) error) error {
	var cfg C
	if err := Load(prefix, &cfg, args, stdout); err != nil {
		if errors.Is(err, ErrHelp) {
			return nil
		}
		return configError{err}
	}
	log, err := cfg.Logger(stderr)
	if err != nil {
		return configError{err}
	}
	if err := run(ctx, cfg, log); err != nil {
		log.Error("stopped", "err", err)
		return err
	}
	return nil
}

// configError marks a configuration problem, as opposed to a failure.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }
