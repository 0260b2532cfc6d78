package rules_test

import (
	"testing"

	"github.com/apiconnector/operator/runtime/rules"
)

const passwordStep = "  step: OnPasswordSubmit\n  passwordDecryption: {keys: [{name: jit-keys, key: current.pem}]}\n"

// The password answers are only for OnPasswordSubmit, which needs its decryption keys; the
// decrypted credentials are for calls only.
func TestPasswordSubmitCompileErrors(t *testing.T) {
	if _, err := rules.Compile(parseExt(t, passwordStep+`  calls:
  - {name: verify, url: 'https://legacy.example/verify', body: "{'u': credentials.username, 'p': credentials.password}"}
  rules:
  - {name: ok, when: 'calls.verify.body.valid == true', migratePassword: {}}
  - {name: weak, when: 'calls.verify.body.weak == true', updatePassword: {}}
  - {name: wrong, when: 'calls.verify.body.valid == false', retry: {}}
  - {name: locked, when: 'calls.verify.body.locked == true', block: {message: Locked.}}
`), rules.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ spec, path, reason string }{
		{"  step: OnPasswordSubmit\n", "spec.passwordDecryption", "required at step OnPasswordSubmit"},
		{"  step: OnTokenIssuanceStart\n  passwordDecryption: {keys: [{name: k, key: k}]}\n", "spec.passwordDecryption", "not allowed elsewhere"},
		{passwordStep + "  rules:\n  - {name: r, when: \"credentials.password == 'x'\", migratePassword: {}}\n", "spec.rules[0].when", "undeclared reference to 'credentials'"},
		{passwordStep + "  rules:\n  - {name: r, when: 'true', migratePassword: {}, retry: {}}\n", "spec.rules[0]", "exactly one of block, validationError, migratePassword, updatePassword or retry"},
		{passwordStep + "  rules:\n  - {name: r, when: 'true', validationError: {message: m}}\n", "spec.rules[0].validationError", "only allowed at steps PostAttributeCollection"},
		{passwordStep + "  claims: {c: \"'x'\"}\n", "spec.claims", "not allowed at step OnPasswordSubmit"},
		{passwordStep + "  events:\n  - {name: e, sink: {url: 'https://s.example'}, data: '{\"p\": credentials.password}'}\n", "spec.events[0].data", "undeclared reference to 'credentials'"},
		{"  step: OnAttributeCollectionSubmit\n  rules:\n  - {name: r, when: 'true', retry: {}}\n", "spec.rules[0]", "only allowed at step OnPasswordSubmit"},
		{"  step: OnOtpSend\n  calls:\n  - {name: c, url: 'https://s.example', body: '{\"p\": credentials.password}'}\n", "spec.calls[0].body", "credentials is not available at step OnOtpSend"},
		{"  step: OnPasswordSubmit\n  passwordDecryption: {keys: [{name: Bad_Name, key: k}]}\n", "spec.passwordDecryption.keys[0].name", "must be a Secret name"},
	} {
		_, err := rules.Compile(parseExt(t, tt.spec), rules.Options{})
		wantFieldError(t, err, tt.path, tt.reason)
	}
}
