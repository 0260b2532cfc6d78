// Command images builds the container images of the e2e cluster without Docker or a registry.
//
// Each image is a single static (CGO_ENABLED=0) Go binary as one layer on an empty base, run as
// the numeric non-root user 65532, written as a docker-archive tarball to OUT/<name>.tar for
// `ctr -n k8s.io images import`. The layer and config are deterministic (zero timestamps), so an
// unchanged binary gives the same image ID and re-importing it is a no-op.
//
//	go run . [-root DIR] [-out DIR] [IMAGE...]   (from hack/images; default: every image)
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// image is one image: the Go package to build (relative to the repository root) and its tag.
type image struct {
	tag    string
	pkg    string
	binary string
}

var images = []image{
	{tag: "apiconnector-runtime:dev", pkg: "./runtime/cmd/apiconnector-runtime", binary: "apiconnector-runtime"},
	{tag: "apiconnector-operator:dev", pkg: ".", binary: "manager"},
	{tag: "apiconnector-pause:dev", pkg: "./hack/pause", binary: "pause"},
	{tag: "apiconnector-e2e-services:dev", pkg: "./hack/e2e/services", binary: "e2e-services"},
}

// user is the numeric user and group every image runs as (the runtime pods' runAsUser).
const user = "65532:65532"

func main() {
	root := flag.String("root", "../..", "repository root (the root Go module)")
	out := flag.String("out", "../../bin/images", "output directory for <name>.tar")
	flag.Parse()
	want := map[string]bool{}
	for _, a := range flag.Args() {
		want[a] = true
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fail(err)
	}
	for _, im := range images {
		if len(want) > 0 && !want[im.tag] && !want[im.binary] {
			continue
		}
		start := time.Now()
		file, id, err := build(*root, *out, im)
		if err != nil {
			fail(fmt.Errorf("%s: %w", im.tag, err))
		}
		fmt.Printf("%-32s %s %s (%s)\n", im.tag, file, id, time.Since(start).Round(time.Millisecond))
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "images:", err)
	os.Exit(1)
}

func build(root, out string, im image) (string, string, error) {
	tmp, err := os.MkdirTemp("", "image-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, im.binary)
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, im.pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("go build %s: %w", im.pkg, err)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return "", "", err
	}
	layerTar, err := singleFileTar("/"+im.binary, data)
	if err != nil {
		return "", "", err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return "", "", err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return "", "", err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return "", "", err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.Entrypoint = []string{"/" + im.binary}
	cf.Config.User = user
	cf.Config.WorkingDir = "/"
	cf.Config.Env = []string{"PATH=/"}
	cf.Created = v1.Time{}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return "", "", err
	}
	tag, err := name.NewTag(im.tag)
	if err != nil {
		return "", "", err
	}
	id, err := img.ConfigName()
	if err != nil {
		return "", "", err
	}
	file := filepath.Join(out, im.binary+".tar")
	if err := tarball.WriteToFile(file+".tmp", tag, img); err != nil {
		return "", "", err
	}
	return file, id.String(), os.Rename(file+".tmp", file)
}

// singleFileTar is a layer holding one executable owned by root (readable by the image user).
func singleFileTar(path string, data []byte) ([]byte, error) {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{
		Name:     path[1:],
		Mode:     0o755,
		Size:     int64(len(data)),
		Typeflag: tar.TypeReg,
		Format:   tar.FormatPAX,
	}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(data); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
