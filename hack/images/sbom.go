package main

import (
	"bytes"
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	spdxjson "github.com/spdx/tools-golang/json"
	"github.com/spdx/tools-golang/spdx/v2/common"
	spdx "github.com/spdx/tools-golang/spdx/v2/v2_3"
)

// caBundleModule ships the root store the CA bundle layer is made of.
const caBundleModule = "golang.org/x/crypto/x509roots/fallback"

// sbom is the SPDX 2.3 JSON document of im's image for p around bin, from the build info Go
// embeds in every binary (what `go version -m` prints).
func sbom(im image, bin []byte, p v1.Platform, s stamp) ([]byte, error) {
	bi, err := buildinfo.Read(bytes.NewReader(bin))
	if err != nil {
		return nil, fmt.Errorf("read the build info of %s: %w", im.binary, err)
	}
	sum := sha256.Sum256(bin)
	return sbomFromBuildInfo(im, bi, sum[:], p, s)
}

// sbomFromBuildInfo describes the image (SPDXRef-Image), which contains the binary
// (SPDXRef-Binary, the main module at s.version) and, for images with one, the CA bundle; the
// binary depends on the Go standard library and on every module it was built from, each with the
// version it was built with (after replace directives), named by its package URL.
func sbomFromBuildInfo(im image, bi *debug.BuildInfo, binarySHA256 []byte, p v1.Platform, s stamp) ([]byte, error) {
	const (
		imageID  common.ElementID = "Image"
		binaryID common.ElementID = "Binary"
	)
	doc := &spdx.Document{
		SPDXVersion:    spdx.Version,
		DataLicense:    spdx.DataLicense,
		SPDXIdentifier: "DOCUMENT",
		DocumentName:   fmt.Sprintf("%s %s %s/%s", im.name, s.version, p.OS, p.Architecture),
		// Unique per document, as SPDX requires: a different binary is a different document.
		DocumentNamespace: fmt.Sprintf("%s/spdx/%s/%s/%s-%s/%s", sourceURL, im.name, s.version, p.OS, p.Architecture, hex.EncodeToString(binarySHA256)),
		CreationInfo: &spdx.CreationInfo{
			Creators: []common.Creator{{CreatorType: "Organization", Creator: "apiconnector"}, {CreatorType: "Tool", Creator: "apiconnector-hack-images"}},
			Created:  s.created.Format(time.RFC3339),
		},
	}
	own := &common.Supplier{SupplierType: "Organization", Supplier: "apiconnector"}
	doc.Packages = append(doc.Packages, &spdx.Package{
		PackageName:             im.name,
		PackageSPDXIdentifier:   imageID,
		PackageVersion:          s.version,
		PackageSupplier:         own,
		PackageDownloadLocation: "NOASSERTION",
		PackageLicenseDeclared:  license,
		PackageLicenseConcluded: "NOASSERTION",
		PackageDescription:      im.description,
		PackageComment:          fmt.Sprintf("OCI image for %s/%s; the SBOM is attached to its image manifest as an OCI referrer.", p.OS, p.Architecture),
		PrimaryPackagePurpose:   "CONTAINER",
	}, &spdx.Package{
		PackageName:             bi.Path,
		PackageSPDXIdentifier:   binaryID,
		PackageVersion:          s.version,
		PackageFileName:         "/" + im.binary,
		PackageSupplier:         own,
		PackageDownloadLocation: "git+" + sourceURL + "@" + s.revision,
		PackageChecksums:        []common.Checksum{{Algorithm: common.SHA256, Value: hex.EncodeToString(binarySHA256)}},
		PackageHomePage:         sourceURL,
		PackageLicenseDeclared:  license,
		PackageLicenseConcluded: "NOASSERTION",
		PackageComment:          buildSettings(bi),
		PackageExternalReferences: []*spdx.PackageExternalReference{
			purl(bi.Main.Path, s.version, strings.TrimPrefix(strings.TrimPrefix(bi.Path, bi.Main.Path), "/")),
		},
		PrimaryPackagePurpose: "APPLICATION",
	})
	rel := func(a common.ElementID, kind string, b common.ElementID) {
		doc.Relationships = append(doc.Relationships, &spdx.Relationship{
			RefA: common.MakeDocElementID("", string(a)), RefB: common.MakeDocElementID("", string(b)), Relationship: kind,
		})
	}
	rel("DOCUMENT", common.TypeRelationshipDescribe, imageID)
	rel(imageID, common.TypeRelationshipContains, binaryID)
	if im.caBundle {
		pemData, err := caBundle()
		if err != nil {
			return nil, err
		}
		version := "NOASSERTION"
		if self, ok := debug.ReadBuildInfo(); ok {
			for _, d := range self.Deps {
				if d.Path == caBundleModule {
					version = d.Version
				}
			}
		}
		sum := sha256.Sum256(pemData)
		doc.Packages = append(doc.Packages, &spdx.Package{
			PackageName:             caBundleModule,
			PackageSPDXIdentifier:   "CABundle",
			PackageVersion:          version,
			PackageFileName:         CABundlePath,
			PackageDownloadLocation: "NOASSERTION",
			PackageChecksums:        []common.Checksum{{Algorithm: common.SHA256, Value: hex.EncodeToString(sum[:])}},
			PackageLicenseConcluded: "NOASSERTION",
			PackageComment:          "Mozilla's root store (NSS) as PEM, from this Go module.",
			PackageExternalReferences: []*spdx.PackageExternalReference{
				purl(caBundleModule, version, ""),
			},
			PrimaryPackagePurpose: "FILE",
		})
		rel(imageID, common.TypeRelationshipContains, "CABundle")
	}
	goVersion := strings.TrimPrefix(bi.GoVersion, "go")
	doc.Packages = append(doc.Packages, &spdx.Package{
		PackageName:               "stdlib",
		PackageSPDXIdentifier:     "Go-stdlib",
		PackageVersion:            bi.GoVersion,
		PackageDownloadLocation:   "NOASSERTION",
		PackageLicenseDeclared:    "BSD-3-Clause",
		PackageLicenseConcluded:   "NOASSERTION",
		PackageComment:            "The Go standard library and runtime, linked into the binary.",
		PackageExternalReferences: []*spdx.PackageExternalReference{purl("stdlib", goVersion, "")},
		PrimaryPackagePurpose:     "LIBRARY",
	})
	rel(binaryID, common.TypeRelationshipDependsOn, "Go-stdlib")
	ids := map[common.ElementID]bool{}
	for _, d := range bi.Deps {
		m, comment := d, ""
		if d.Replace != nil {
			m, comment = d.Replace, fmt.Sprintf("Replaces %s %s.", d.Path, d.Version)
		}
		id := common.ElementID("Go-module-" + idUnsafe.ReplaceAllString(m.Path, "-"))
		for n := 2; ids[id]; n++ {
			id = common.ElementID(fmt.Sprintf("Go-module-%s-%d", idUnsafe.ReplaceAllString(m.Path, "-"), n))
		}
		ids[id] = true
		doc.Packages = append(doc.Packages, &spdx.Package{
			PackageName:               m.Path,
			PackageSPDXIdentifier:     id,
			PackageVersion:            m.Version,
			PackageDownloadLocation:   "NOASSERTION",
			PackageLicenseConcluded:   "NOASSERTION",
			PackageComment:            comment,
			PackageExternalReferences: []*spdx.PackageExternalReference{purl(m.Path, m.Version, "")},
			PrimaryPackagePurpose:     "LIBRARY",
		})
		rel(binaryID, common.TypeRelationshipDependsOn, id)
	}
	var b bytes.Buffer
	if err := spdxjson.Write(doc, &b, spdxjson.Indent(" ")); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// idUnsafe matches what an SPDX element ID may not contain (letters, digits, '.' and '-').
var idUnsafe = regexp.MustCompile(`[^A-Za-z0-9.-]+`)

// purl is the package URL of a Go module (pkg:golang/<path>@<version>[#<subpath>]).
func purl(path, version, subpath string) *spdx.PackageExternalReference {
	l := "pkg:golang/" + path + "@" + version
	if subpath != "" {
		l += "#" + subpath
	}
	return &spdx.PackageExternalReference{Category: common.CategoryPackageManager, RefType: common.TypePackageManagerPURL, Locator: l}
}

// buildSettings is the Go release and the build settings Go recorded (GOOS, GOARCH, CGO_ENABLED,
// -ldflags, ...), sorted.
func buildSettings(bi *debug.BuildInfo) string {
	var kv []string
	for _, s := range bi.Settings {
		kv = append(kv, s.Key+"="+s.Value)
	}
	slices.Sort(kv)
	return "Built with " + bi.GoVersion + ": " + strings.Join(kv, " ")
}
