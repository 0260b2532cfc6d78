package server

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The credential registered in Entra (registered/ in the secrets directory) is accepted next to
// the connector's own, so a rotated Basic Secret never refuses Entra while Entra is being updated.

const (
	regUser = "entra-old"
	regPass = "the-registered-password"
)

// writeRegistered writes the registered pair; an empty value leaves that file out.
func writeRegistered(t *testing.T, dir, user, pass string) {
	t.Helper()
	reg := filepath.Join(dir, RegisteredDir)
	must(t, os.MkdirAll(reg, 0o700))
	if user != "" {
		writeFile(t, filepath.Join(reg, UsernameFile), user)
	}
	if pass != "" {
		writeFile(t, filepath.Join(reg, PasswordFile), pass)
	}
}

func TestLoadBasicRegisteredPair(t *testing.T) {
	type try struct {
		user, pass string
		ok         bool
	}
	mainOK, regOK := try{testUser, testPass, true}, try{regUser, regPass, true}
	for _, tc := range []struct {
		name    string
		setup   func(t *testing.T, dir string)
		wantErr string // "" loads
		tries   []try
	}{
		{
			name:  "only the main pair",
			setup: func(t *testing.T, dir string) {},
			tries: []try{mainOK, {regUser, regPass, false}, {testUser, "nope", false}},
		},
		{
			name:  "both pairs",
			setup: func(t *testing.T, dir string) { writeRegistered(t, dir, regUser, regPass) },
			tries: []try{
				mainOK, regOK,
				// A pair is matched as a whole: one pair's username with the other's password is refused.
				{testUser, regPass, false}, {regUser, testPass, false},
				{"other", "nope", false}, {"", "", false},
			},
		},
		{
			name:  "same username, old and new password",
			setup: func(t *testing.T, dir string) { writeRegistered(t, dir, testUser, regPass) },
			tries: []try{mainOK, {testUser, regPass, true}, {testUser, "nope", false}, {regUser, regPass, false}},
		},
		{
			name:  "empty registered directory",
			setup: func(t *testing.T, dir string) { must(t, os.MkdirAll(filepath.Join(dir, RegisteredDir), 0o700)) },
			tries: []try{mainOK, {regUser, regPass, false}},
		},
		{
			name:    "registered password missing",
			setup:   func(t *testing.T, dir string) { writeRegistered(t, dir, regUser, "") },
			wantErr: "registered in Entra",
		},
		{
			name:    "registered username missing",
			setup:   func(t *testing.T, dir string) { writeRegistered(t, dir, "", regPass) },
			wantErr: "registered in Entra",
		},
		{
			name:    "registered password empty",
			setup:   func(t *testing.T, dir string) { writeRegistered(t, dir, regUser, "\n") },
			wantErr: "must not be empty",
		},
		{
			name:    "registered username with colon",
			setup:   func(t *testing.T, dir string) { writeRegistered(t, dir, "a:b", regPass) },
			wantErr: "must not contain ':'",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := basicSecrets(t, testUser, testPass)
			tc.setup(t, dir)
			b, err := loadBasic(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				if b != nil {
					t.Error("credentials returned with the error")
				}
				if strings.Contains(err.Error(), regPass) {
					t.Error("the error holds the password")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, tr := range tc.tries {
				if got := b.match(tr.user, tr.pass); got != tr.ok {
					t.Errorf("match(%q, %q) = %v, want %v", tr.user, tr.pass, got, tr.ok)
				}
			}
		})
	}

	t.Run("main pair missing", func(t *testing.T) {
		dir := t.TempDir()
		writeRegistered(t, dir, regUser, regPass)
		if _, err := loadBasic(dir); err == nil {
			t.Error("a registered pair alone loaded: the connector's own Secret is required")
		}
	})
}

// The server picks up the registered pair, its change and its removal as it does the main pair's
// files, without a restart; a broken registered pair refuses everyone and says why in /readyz.
func TestRegisteredCredentialReload(t *testing.T) {
	dir := basicSecrets(t, testUser, testPass)
	ts := start(t, newServer(t, basicConnector(pac), continueEval, Options{SecretsDir: dir}))
	post := func(user, pass string) int {
		return do(t, ts.client, http.MethodPost, ts.url, "application/json", `{}`, basicHeader(user, pass)).code
	}
	if c := post(testUser, testPass); c != 200 {
		t.Fatalf("main pair: %d", c)
	}
	if c := post(regUser, regPass); c != 401 {
		t.Fatalf("registered pair before it exists: %d", c)
	}

	// The operator's Secret appears (rotation started): both pairs accepted.
	writeRegistered(t, dir, regUser, regPass)
	eventually(t, "registered pair accepted", func() bool { return post(regUser, regPass) == 200 })
	if c := post(testUser, testPass); c != 200 {
		t.Errorf("main pair while the registered one is present: %d", c)
	}

	// Entra now holds the new credential and the operator copies it: the old one goes.
	writeRegistered(t, dir, testUser, testPass)
	eventually(t, "old registered pair refused", func() bool { return post(regUser, regPass) == 401 })
	if c := post(testUser, testPass); c != 200 {
		t.Errorf("main pair after the registered one caught up: %d", c)
	}

	// A broken registered pair fails closed, like a broken main pair.
	writeRegistered(t, dir, regUser, "")
	must(t, os.Remove(filepath.Join(dir, RegisteredDir, PasswordFile)))
	eventually(t, "incomplete registered pair refuses everyone", func() bool { return post(testUser, testPass) == 401 })
	if res := ts.get(t, "/readyz"); res.code != http.StatusServiceUnavailable || !strings.Contains(res.body, "registered in Entra") {
		t.Errorf("/readyz = %d %q", res.code, res.body)
	}

	// Gone altogether (spec.entra removed): the main pair alone again.
	must(t, os.RemoveAll(filepath.Join(dir, RegisteredDir)))
	eventually(t, "main pair alone", func() bool { return post(testUser, testPass) == 200 })
	if c := post(regUser, regPass); c != 401 {
		t.Errorf("registered pair after its removal: %d", c)
	}
	if res := ts.get(t, "/readyz"); res.code != 200 {
		t.Errorf("/readyz = %d %q", res.code, res.body)
	}
}
