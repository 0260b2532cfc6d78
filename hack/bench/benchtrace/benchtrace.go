// Package benchtrace lets the runtime benchmark (go run ./hack/bench/runtime -trace) take an
// execution trace and a CPU profile of a server process for exactly the phase it chooses:
// SIGUSR1 starts both, SIGUSR2 ends them, and the finished trace appears under the name given
// in the environment variable EnvVar (written as NAME.part, renamed when complete; the profile
// is NAME.cpu, complete before the trace appears). The runtime links
// it only when built with -tags benchtrace; without the tag SIGUSR1 would end the process.
package benchtrace

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
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
		var f, prof *os.File
		for s := range sig {
			var err error
			switch {
			case s == syscall.SIGUSR1 && f == nil:
				f, prof, err = start(path)
			case s == syscall.SIGUSR2 && f != nil:
				pprof.StopCPUProfile()
				trace.Stop()
				err = errors.Join(prof.Close(), f.Close())
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

func start(path string) (tf, prof *os.File, err error) {
	if prof, err = os.Create(path + ".cpu"); err != nil {
		return nil, nil, err
	}
	if tf, err = os.Create(path + ".part"); err != nil {
		prof.Close()
		return nil, nil, err
	}
	if err = pprof.StartCPUProfile(prof); err == nil {
		if err = trace.Start(tf); err != nil {
			pprof.StopCPUProfile()
		}
	}
	if err != nil {
		prof.Close()
		tf.Close()
		return nil, nil, err
	}
	return tf, prof, nil
}
