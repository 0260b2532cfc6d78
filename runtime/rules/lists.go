package rules

import "strings"

// ParseListData splits a ConfigMap value into list entries: one per line, surrounding whitespace
// trimmed, blank lines and lines starting with # skipped. The controller uses it to resolve
// configMapRef lists into values, and the local runner does the same with ConfigMap manifests.
func ParseListData(data string) []string {
	out := []string{}
	for line := range strings.Lines(data) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	return out
}
