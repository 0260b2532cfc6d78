package rules_test

import (
	"strings"
	"testing"

	"github.com/apiconnector/operator/api/v1alpha1"
	"github.com/apiconnector/operator/runtime/rules"
)

// The controller reports what the runtime would refuse: client certificates need a constraint,
// and the bearer signing keys come over https only.
func TestAuthenticationHardeningChecks(t *testing.T) {
	cert := func(cc v1alpha1.ClientCertificateAuth) *v1alpha1.APIConnector {
		c := parse(t, "  step: PostAttributeCollection\n")
		cc.SecretRef.Name = "entra-ca"
		c.Spec.Authentication = v1alpha1.Authentication{ClientCertificate: &cc}
		return c
	}
	const path = "spec.authentication.clientCertificate"
	wantFieldError(t, rules.Validate(cert(v1alpha1.ClientCertificateAuth{})), path, "set allowedFingerprints or allowedSubjects")
	wantFieldError(t, rules.Validate(cert(v1alpha1.ClientCertificateAuth{AllowedFingerprints: []string{"ab:cd"}})), path+".allowedFingerprints[0]", "SHA-256")
	wantFieldError(t, rules.Validate(cert(v1alpha1.ClientCertificateAuth{AllowedSubjects: []string{""}})), path+".allowedSubjects[0]", "1 to 253")
	for _, ok := range []v1alpha1.ClientCertificateAuth{
		{AllowedSubjects: []string{"entra.contoso.example"}},
		{AllowedFingerprints: []string{strings.Repeat("aB", 32)}},
		{AllowedFingerprints: []string{strings.TrimSuffix(strings.Repeat("AB:", 32), ":")}},
	} {
		if err := rules.Validate(cert(ok)); err != nil {
			t.Errorf("%+v refused: %v", ok, err)
		}
	}

	for field, set := range map[string]func(*v1alpha1.BearerAuth){
		"issuer": func(b *v1alpha1.BearerAuth) { b.Issuer = "http://login.example.com/t/v2.0" },
		"openIDConfigurationURL": func(b *v1alpha1.BearerAuth) {
			b.OpenIDConfigurationURL = "http://login.example.com/.well-known/openid-configuration"
		},
	} {
		c := parseExt(t, "  step: OnTokenIssuanceStart\n")
		set(c.Spec.Authentication.Bearer)
		wantFieldError(t, rules.Validate(c), "spec.authentication.bearer."+field, "absolute https URL")
	}
}
