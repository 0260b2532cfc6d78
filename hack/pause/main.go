// Command pause is the e2e cluster's pod sandbox ("pause") container: it holds the pod's
// namespaces and does nothing until it is told to stop with SIGTERM or SIGINT.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
