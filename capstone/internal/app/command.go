package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
)

// ErrInterrupted is what a command's run returns when a signal cut short
// what it was doing, after it closed what it had opened.
var ErrInterrupted = errors.New("interrupted: stopped cleanly")

// Main is the main function of a command: it calls run with a context
// that ends at the first SIGTERM or Ctrl-C (a second one ends the process
// at once), the command-line arguments, stdout and stderr. An error run
// returns is one line on stderr and exit status 1; ErrInterrupted is
// "interrupted: stopped cleanly" and exit status 130.
func Main(run func(ctx context.Context, args []string, stdout, stderr io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	// After the first signal, a second one ends the process at once.
	context.AfterFunc(ctx, stop)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, ErrInterrupted):
		fmt.Fprintln(os.Stderr, ErrInterrupted)
		os.Exit(130)
	case err != nil:
		fmt.Fprintln(os.Stderr, "error:", OneLine(err))
		os.Exit(1)
	}
}

// Command is the run function of a service's command (see Main): it
// reads the flags of service (-h writes the usage to stderr), logs to
// stderr, and runs the service until ctx ends.
func Command(service string) func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return func(ctx context.Context, args []string, _, stderr io.Writer) error {
		cfg, err := ParseFlags(service, args, os.Getenv, stderr)
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		if err != nil {
			return err
		}
		opt := Options{Logger: slog.New(slog.NewTextHandler(stderr, nil))}
		if service == BookingService {
			return RunBookingService(ctx, cfg, opt)
		}
		return RunEventService(ctx, cfg, opt)
	}
}
