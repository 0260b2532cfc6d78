package main

import (
	"archive/tar"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The runtime and the operator call HTTPS servers, so their image tarballs must carry a CA bundle
// at the path Go's crypto/x509 reads, made of certificates that parse, readable by the image user.
func TestImagesCarryCABundle(t *testing.T) {
	for _, tag := range []string{"apiconnector-runtime", "apiconnector-operator"} {
		t.Run(tag, func(t *testing.T) {
			im := lookup(t, tag)
			files := imageFiles(t, im)
			if got := string(files["/"+im.binary].data); got != "binary of "+tag {
				t.Fatalf("/%s = %q, want the binary", im.binary, got)
			}
			f, ok := files[CABundlePath]
			if !ok {
				t.Fatalf("%s has no %s; files: %v", tag, CABundlePath, keys(files))
			}
			if f.mode&0o444 != 0o444 || f.uid != 0 {
				t.Errorf("%s: mode %o uid %d, want world-readable and owned by root", CABundlePath, f.mode, f.uid)
			}
			certs := parsePEM(t, f.data)
			// Mozilla's store has well over 100 roots; a handful would mean a broken bundle.
			if len(certs) < 100 {
				t.Fatalf("%d certificates in %s, want Mozilla's root store (>100)", len(certs), CABundlePath)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(f.data) {
				t.Fatal("x509.CertPool.AppendCertsFromPEM took nothing from the bundle")
			}
			var isrg bool
			for _, c := range certs {
				if !c.IsCA {
					t.Errorf("%s is not a CA certificate", c.Subject)
				}
				isrg = isrg || c.Subject.CommonName == "ISRG Root X1"
			}
			if !isrg {
				t.Error("ISRG Root X1 (Let's Encrypt) is missing from the bundle")
			}
		})
	}
}

// Images that call no HTTPS server stay a single binary.
func TestImagesWithoutCABundle(t *testing.T) {
	im := lookup(t, "apiconnector-pause")
	files := imageFiles(t, im)
	if _, ok := files[CABundlePath]; ok || len(files) != 1 {
		t.Fatalf("pause image files %v, want only /%s", keys(files), im.binary)
	}
}

func lookup(t *testing.T, name string) image {
	t.Helper()
	for _, im := range images {
		if im.name == name {
			return im
		}
	}
	t.Fatalf("no image %s", name)
	return image{}
}

// testStamp is a release stamp as stampFromGit makes them.
var testStamp = stamp{version: "v1.2.3", revision: "0123456789abcdef0123456789abcdef01234567", created: time.Unix(1700000000, 0).UTC()}

type file struct {
	mode int64
	uid  int
	data []byte
}

// imageFiles assembles im around a stand-in binary, writes it as the tarball `make images`
// writes, reads that back and returns the files of its flattened filesystem.
func imageFiles(t *testing.T, im image) map[string]file {
	t.Helper()
	img, err := assemble(im, []byte("binary of "+im.name), v1.Platform{OS: "linux", Architecture: runtime.GOARCH}, testStamp, false)
	if err != nil {
		t.Fatal(err)
	}
	path, _, err := write(t.TempDir(), im, img)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(im.name + ":dev")
	if err != nil {
		t.Fatal(err)
	}
	read, err := tarball.ImageFromPath(path, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := read.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != user {
		t.Fatalf("user %q, want %q", cf.Config.User, user)
	}
	if cf.Architecture != runtime.GOARCH || cf.Config.Labels["org.opencontainers.image.version"] != testStamp.version {
		t.Fatalf("architecture %q, labels %v", cf.Architecture, cf.Config.Labels)
	}
	rc := mutate.Extract(read)
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files["/"+h.Name] = file{mode: h.Mode, uid: h.Uid, data: data}
	}
	return files
}

func parsePEM(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	var certs []*x509.Certificate
	for rest := bytes.TrimSpace(data); len(rest) > 0; rest = bytes.TrimSpace(rest) {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			t.Fatalf("not PEM after %d certificates: %.40q", len(certs), rest)
		}
		if block.Type != "CERTIFICATE" {
			t.Fatalf("PEM block %q, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("certificate %d: %v", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	return certs
}

func keys(m map[string]file) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// -extra-ca (test clusters) appends its certificates to the bundle; bad input is refused.
func TestExtraCA(t *testing.T) {
	im := lookup(t, "apiconnector-runtime")
	base := parsePEM(t, imageFiles(t, im)[CABundlePath].data)

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "images-test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	if extraRoots, err = certificatesPEM(append([]byte("\n"), caPEM...)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { extraRoots = nil })
	got := parsePEM(t, imageFiles(t, im)[CABundlePath].data)
	if len(got) != len(base)+1 || got[len(got)-1].Subject.CommonName != "images-test-ca" {
		t.Fatalf("%d certificates, last %s; want the %d of the bundle then images-test-ca", len(got), got[len(got)-1].Subject, len(base))
	}

	kder, _ := x509.MarshalECPrivateKey(key)
	for name, bad := range map[string][]byte{
		"empty":       nil,
		"not PEM":     []byte("hello"),
		"private key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
		"bad DER":     pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}}),
		"trailing":    append(append([]byte{}, caPEM...), "junk"...),
	} {
		if _, err := certificatesPEM(bad); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A test cluster's extra CA never goes into a release's SBOM files: -extra-ca with -sbom is
// refused before anything is built.
func TestExtraCARefusedWithSBOM(t *testing.T) {
	if testing.Short() {
		t.Skip("go run")
	}
	dir := t.TempDir()
	cmd := exec.Command("go", "run", ".", "-oci", dir, "-sbom", dir, "-extra-ca", "does-not-matter.pem")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "-extra-ca is for test clusters, not for released images (-sbom)") {
		t.Fatalf("%v: %s", err, out)
	}
}
