package server

import (
	"mime"
	"strings"
	"testing"
)

// isJSON's shortcut for the common content types agrees with the general parse.
func TestIsJSONAgreesWithParseMediaType(t *testing.T) {
	slow := func(ct string) bool {
		mt, params, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return false
		}
		cs, ok := params["charset"]
		return !ok || strings.EqualFold(cs, "utf-8") || strings.EqualFold(cs, "utf8")
	}
	for _, ct := range []string{
		"application/json", "APPLICATION/JSON", "Application/Json; Charset=UTF-8", "application/json; charset=utf-8",
		"application/json;charset=utf-8", "application/json; charset=utf8", "application/json ; charset=utf-8",
		"application/json; charset=latin1", "application/jsonx", "application/json; charset=utf-8x", "",
		"text/plain", "application/json; charset=\"utf-8\"", "application/json; foo=bar",
	} {
		if got, want := isJSON(ct), slow(ct); got != want {
			t.Errorf("isJSON(%q) = %v, want %v", ct, got, want)
		}
	}
}
