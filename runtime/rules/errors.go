package rules

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a connector, located by the field path a user would look at
// (spec.rules[2].when, spec.claims.givenName, ...).
type FieldError struct {
	Path    string
	Message string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// CompileErrors lists every problem Compile or Validate found, so a user fixes them in one go
// instead of one per reconcile.
type CompileErrors []FieldError

func (es CompileErrors) Error() string {
	if len(es) == 1 {
		return es[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d problems:", len(es))
	for _, e := range es {
		b.WriteString("\n  ")
		b.WriteString(e.Error())
	}
	return b.String()
}

// errs collects FieldErrors; its zero value is ready to use.
type errs struct{ list CompileErrors }

func (c *errs) add(path, format string, args ...any) {
	c.list = append(c.list, FieldError{Path: path, Message: fmt.Sprintf(format, args...)})
}

func (c *errs) err() error {
	if len(c.list) == 0 {
		return nil
	}
	return c.list
}
