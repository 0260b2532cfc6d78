// Package secretfile reads values that Kubernetes mounts from Secrets. It is the one place that
// says how such a value is read, for the runtime (inbound Basic credentials, outbound credentials,
// Secret headers and query parameters) and for the operator's checks of the same values.
package secretfile

import (
	"bytes"
	"os"
)

// Trim removes a single trailing newline (LF or CR LF): `kubectl create secret --from-file` of a
// file written by an editor keeps it, and nobody means it to be part of a password or an API key.
func Trim(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}

// Read reads the file at path and trims it. Errors name the path, never the content.
func Read(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Trim(b), nil
}
