package controllers

import (
	"fmt"
	"strings"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
)

// Whoever may create an APIConnector decides which image runs with the connector's Secrets
// mounted when spec.runtime.image is honoured, so it is honoured only for images the platform
// team allows (--allowed-runtime-images). The same rule is enforced at admission by the
// ValidatingAdmissionPolicy in config/admission, whose CEL has no glob matcher: the pattern
// language is kept to what both implement identically (config/admission_test.go compares them on
// the real API server).
//
// A pattern is either an exact image reference, or a reference prefix followed by one trailing
// "*", which matches any characters except "/". The "/" exception keeps "apiconnector-runtime:*"
// from matching "apiconnector-runtime:5000/other", which the container runtime reads as the
// repository "other" on the registry host "apiconnector-runtime:5000".

// ParseImagePatterns reads a comma-separated --allowed-runtime-images value; blank entries are
// skipped, so "" means no patterns (the default).
func ParseImagePatterns(v string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(v, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if i := strings.IndexAny(p, "?[]\\"); i >= 0 {
			return nil, fmt.Errorf("pattern %q: %q is not supported (only a trailing * is)", p, p[i])
		}
		if i := strings.Index(p, "*"); i >= 0 && i != len(p)-1 {
			return nil, fmt.Errorf("pattern %q: * is only supported at the end", p)
		}
		out = append(out, p)
	}
	return out, nil
}

// ImagePatterns are the patterns in force: allowed (--allowed-runtime-images) when there are any,
// else those allowing the images of runtimeImage's repository, whatever their tag or digest.
func ImagePatterns(runtimeImage string, allowed []string) []string {
	if len(allowed) > 0 {
		return allowed
	}
	repo := imageRepository(runtimeImage)
	return []string{repo, repo + ":*", repo + "@*"}
}

// ImageAllowed reports whether ref matches one of patterns (see above).
func ImageAllowed(ref string, patterns []string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok {
			if rest, ok := strings.CutPrefix(ref, prefix); ok && !strings.Contains(rest, "/") {
				return true
			}
		} else if ref == p {
			return true
		}
	}
	return false
}

// imageRepository is an image reference without its tag or digest.
func imageRepository(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

// ImageProblem is why image may not run, "" when it may (or is empty: the default image).
func ImageProblem(image string, patterns []string) string {
	if image == "" || ImageAllowed(image, patterns) {
		return ""
	}
	return fmt.Sprintf("spec.runtime.image %q is not allowed (allowed: %s); remove it to run the default runtime image", image, strings.Join(patterns, ", "))
}

// imageProblem is why the connector's runtime image may not run, "" when it may.
func (r *Reconciler) imageProblem(conn *apiv1.APIConnector) string {
	return ImageProblem(conn.Spec.Runtime.Image, ImagePatterns(r.Options.RuntimeImage, r.Options.AllowedRuntimeImages))
}
