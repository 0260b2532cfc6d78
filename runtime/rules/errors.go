package rules

import (
	"fmt"
	"strings"

	"github.com/apiconnector/operator/api/v1alpha1"
)

// FieldError is one problem in a connector, located by the field path a user would look at
// (spec.rules[2].when, spec.claims.givenName, ...).
type FieldError struct {
	Path string
	// Item names the rule, call, event or list the path is in, as the user wrote it
	// (`rule "postal-code"`), so a message can be acted on without counting list entries.
	Item    string
	Message string
}

func (e FieldError) Error() string {
	if e.Item != "" {
		return e.Path + " (" + e.Item + "): " + e.Message
	}
	return e.Path + ": " + e.Message
}

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

// err returns the problems found in spec, each named after its item, or nil.
func (c *errs) err(spec *v1alpha1.APIConnectorSpec) error {
	if len(c.list) == 0 {
		return nil
	}
	items := map[string]string{}
	name := func(kind, list string, i int, n string) {
		if n != "" {
			items[fmt.Sprintf("spec.%s[%d]", list, i)] = fmt.Sprintf("%s %q", kind, n)
		}
	}
	for i, r := range spec.Rules {
		name("rule", "rules", i, r.Name)
	}
	for i, x := range spec.Calls {
		name("call", "calls", i, x.Name)
	}
	for i, x := range spec.Events {
		name("event", "events", i, x.Name)
	}
	for i, x := range spec.Lists {
		name("list", "lists", i, x.Name)
	}
	for i, e := range c.list {
		item, _, _ := strings.Cut(e.Path, "].")
		if !strings.HasSuffix(item, "]") {
			item += "]"
		}
		c.list[i].Item = items[item]
	}
	return c.list
}
