// Package argocd runs the Argo CD health check shipped in health.lua the way Argo CD does (with
// gopher-lua, its Lua interpreter), so tests can check it against real status objects.
package argocd

import (
	_ "embed"
	"fmt"

	lua "github.com/yuin/gopher-lua"
)

//go:embed health.lua
var Script string

// Health is what Argo CD shows for a resource.
type Health struct {
	Status  string
	Message string
}

// Evaluate runs health.lua on obj (an unstructured object, as Argo CD passes it).
func Evaluate(obj map[string]any) (Health, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(Script); err != nil {
		return Health{}, fmt.Errorf("run health.lua: %w", err)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("health.lua returned %s, want a table", L.Get(-1).Type())
	}
	return Health{Status: lua.LVAsString(ret.RawGetString("status")), Message: lua.LVAsString(ret.RawGetString("message"))}, nil
}

// toLua converts JSON-like Go values the way Argo CD's object conversion does: maps and lists to
// tables, numbers to Lua numbers.
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int64:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case []any:
		t := L.NewTable()
		for _, e := range x {
			t.Append(toLua(L, e))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, e := range x {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	default:
		return lua.LString(fmt.Sprint(x))
	}
}
