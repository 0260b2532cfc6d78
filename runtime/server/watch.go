package server

import (
	"context"
	"crypto/sha256"
	"os"
	"time"
)

// fingerprint hashes the contents of files; a missing or unreadable file hashes as its error text.
//
// Polling contents rather than using fsnotify: Kubernetes updates Secret and ConfigMap volumes by
// swapping the ..data symlink, which inotify reports on the directory and not on the file a reader
// follows; hashing a few small files every couple of seconds is cheap and sees every kind of swap.
func fingerprint(paths ...string) [sha256.Size]byte {
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			h.Write([]byte("\x00error:" + err.Error()))
		} else {
			h.Write(b)
		}
		h.Write([]byte{0}) // separator, so moving bytes between files changes the hash
	}
	var sum [sha256.Size]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

// watch calls onChange whenever the fingerprint of paths differs from last, until ctx is done.
// last is the fingerprint of what was already loaded.
func watch(ctx context.Context, every time.Duration, last [sha256.Size]byte, paths []string, onChange func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if fp := fingerprint(paths...); fp != last {
				last = fp
				onChange()
			}
		}
	}
}
