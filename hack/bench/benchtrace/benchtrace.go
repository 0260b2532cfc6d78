// Package benchtrace lets the runtime benchmark (go run ./hack/bench/runtime -trace) take an
// execution trace of a server process for exactly the phase it chooses: SIGUSR1 starts
// tracing, SIGUSR2 ends it, and the finished trace appears under the name given in the
// environment variable EnvVar (written as NAME.part, renamed when complete). The runtime links
// it only when built with -tags benchtrace; without the tag SIGUSR1 would end the process.
package benchtrace

import (
	"fmt"
	"os"
	"os/signal"
	"runtime/trace"
	"syscall"
)

// EnvVar names the file the trace is written to. Unset: nothing is installed.
const EnvVar = "APICONNECTOR_BENCH_TRACE"

// FromEnv installs the signal handlers when EnvVar is set.
func FromEnv() {
	path := os.Getenv(EnvVar)
	if path == "" {
		return
	}
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var f *os.File
		for s := range sig {
			var err error
			switch {
			case s == syscall.SIGUSR1 && f == nil:
				f, err = start(path + ".part")
			case s == syscall.SIGUSR2 && f != nil:
				trace.Stop()
				err = f.Close()
				if err == nil {
					err = os.Rename(f.Name(), path)
				}
				f = nil
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "benchtrace:", err)
			}
		}
	}()
}

func start(path string) (*os.File, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
