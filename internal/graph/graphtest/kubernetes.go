package graphtest

import (
	"context"
	"encoding/json"
	"fmt"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TrustServiceAccount adds a federated credential to the application clientID for a Kubernetes
// ServiceAccount, as an administrator does for workload identity federation: the issuer is the
// API server's service account issuer (read off a token it issues), the subject
// system:serviceaccount:<namespace>:<name>, and tokens are checked against the API server's own
// signing keys (its /openid/v1/jwks).
func (s *Server) TrustServiceAccount(ctx context.Context, cfg *rest.Config, clientID, audience, namespace, name string) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{audience}}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("request a token to read the service account issuer: %w", err)
	}
	tok, err := jwt.ParseSigned(tr.Status.Token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		return err
	}
	var claims jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&claims); err != nil {
		return err
	}
	s.AddFederatedCredential(clientID, claims.Issuer, "system:serviceaccount:"+namespace+":"+name, audience,
		func(ctx context.Context) (jose.JSONWebKeySet, error) {
			var set jose.JSONWebKeySet
			raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(ctx)
			if err != nil {
				return set, fmt.Errorf("read the API server's signing keys: %w", err)
			}
			return set, json.Unmarshal(raw, &set)
		})
	return nil
}
