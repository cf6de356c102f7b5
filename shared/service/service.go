// Package service is the skeleton every binary of the chat runs in: it
// reads the configuration from the environment (-h lists it), validates all
// of it before anything starts, builds the logger, runs until SIGINT or
// SIGTERM, and turns the outcome into the exit code.
//
// A service's own shutdown (draining NATS within its ShutdownTimeout,
// stopping its admin server) is the service's Run; this package gives it
// the context that ends on the signal.
package service

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

	"github.com/natschat/chat/shared/config"
)

// Config is a configuration the skeleton loads and checks.
type Config interface {
	// Validate reports every problem at once, each naming its variable
	// (see config.Checker).
	Validate() error
	// Logger builds the logger the configuration describes (config.Log).
	Logger(io.Writer) (*slog.Logger, error)
}

// Env is one configuration of a program with the prefix of its variables.
type Env struct {
	Prefix string
	Config Config // a pointer to the struct to fill
}

// Program is a binary: the configurations it reads and what it runs.
type Program struct {
	// Name is the binary's name, for messages on stderr.
	Name string
	// About is printed by -h before the variables; empty for none.
	About string
	// Configs are loaded and validated in this order; the first one's
	// logger is the program's.
	Configs []Env
	// Run runs until ctx is done. It is called only with valid
	// configurations; an error it returns is logged and exits 1.
	Run func(ctx context.Context, log *slog.Logger) error
}

// Main runs p as the process and exits: 0 when Run returns nil (also after
// SIGINT or SIGTERM, once it has shut down), 1 when it fails, 2 when the
// configuration or the command line is wrong.
func (p Program) Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal a second one ends the process at once,
	// instead of waiting for the shutdown to finish.
	context.AfterFunc(ctx, stop)
	err := p.Exec(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case err == nil:
		os.Exit(0)
	case IsConfigError(err):
		// There may be no logger: say it plainly, one problem a line.
		fmt.Fprintf(os.Stderr, "%s: %s\n", p.Name, strings.ReplaceAll(err.Error(), "\n", "\n  "))
		os.Exit(2)
	default:
		os.Exit(1) // Exec has logged it
	}
}

// Exec is Main without the process: it reads args (only -h is known),
// loads and validates every configuration, builds the logger on stderr,
// and runs. The error of a bad configuration reports all its problems.
func (p Program) Exec(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	help, err := config.ParseArgs(args)
	if err != nil {
		return configError{err}
	}
	if help {
		return p.usage(stdout)
	}
	var errs []error
	for _, e := range p.Configs {
		if err := config.Load(e.Prefix, e.Config, nil, nil); err != nil {
			errs = append(errs, fmt.Errorf("%s_*: %w", e.Prefix, err))
			continue
		}
		if err := e.Config.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return configError{fmt.Errorf("invalid configuration:\n%w", errors.Join(errs...))}
	}
	log, err := p.Configs[0].Config.Logger(stderr)
	if err != nil {
		return configError{err}
	}
	if err := p.Run(ctx, log); err != nil {
		log.Error("stopped", "err", err)
		return err
	}
	return nil
}

// usage prints the variables of every configuration: one table for a
// single service, one section per prefix for a program that has several.
func (p Program) usage(w io.Writer) error {
	if p.About != "" {
		fmt.Fprint(w, p.About)
	}
	if len(p.Configs) == 1 {
		return config.Usage(p.Configs[0].Prefix, p.Configs[0].Config, w)
	}
	for _, e := range p.Configs {
		fmt.Fprintf(w, "\n%s_* variables:\n", e.Prefix)
		if err := config.Table(e.Prefix, e.Config, w); err != nil {
			return err
		}
	}
	return nil
}

// configPtr is a pointer to a service's configuration struct C, whose
// methods Validate and Logger have value receivers.
type configPtr[C any] interface {
	*C
	Config
}

// Main is the main function of a binary that runs one service: its
// configuration comes from the variables <prefix>_*.
func Main[C any, P configPtr[C]](name, prefix string, run func(context.Context, C, *slog.Logger) error) {
	one[C, P](name, prefix, run).Main()
}

// Run is Main without the process, for tests.
func Run[C any, P configPtr[C]](ctx context.Context, prefix string, args []string, stdout, stderr io.Writer, run func(context.Context, C, *slog.Logger) error) error {
	return one[C, P]("", prefix, run).Exec(ctx, args, stdout, stderr)
}

func one[C any, P configPtr[C]](name, prefix string, run func(context.Context, C, *slog.Logger) error) Program {
	cfg := new(C)
	return Program{
		Name:    name,
		Configs: []Env{{Prefix: prefix, Config: P(cfg)}},
		Run:     func(ctx context.Context, log *slog.Logger) error { return run(ctx, *cfg, log) },
	}
}

// IsConfigError reports whether err is a configuration or command-line
// problem (exit code 2) rather than a failure of the program.
func IsConfigError(err error) bool {
	var cfgErr configError
	return errors.As(err, &cfgErr)
}

// configError marks a configuration problem, as opposed to a failure.
type configError struct{ error }

func (e configError) Unwrap() error { return e.error }
