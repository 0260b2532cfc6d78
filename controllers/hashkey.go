package controllers

import (
	"context"
	"crypto/rand"
	"fmt"

	"github.com/apiconnector/operator/controllers/children"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// DefaultHashKeySecret is the name of the Secret, in the operator's namespace, that holds the key
// of the config hash.
const DefaultHashKeySecret = "apiconnector-operator-hash-key"

// HashKeyDataKey is the key of that Secret's data.
const HashKeyDataKey = "key"

// EnsureHashKey returns the key the config hash (status.configHash and the pod template's
// apiconnector.dev/config-hash) is keyed with, creating its Secret with random bytes the first time
// the operator starts. Only the operator (and whoever may read Secrets in its namespace) holds it,
// so the published hash cannot be used to test guesses of a Secret's value. The Secret is
// immutable; deleting it makes the next operator start create a new key, which rolls every
// connector's pods once. Several replicas starting at once agree: the one that loses the create
// reads the winner's key.
func EnsureHashKey(ctx context.Context, c client.Client, reader client.Reader, key client.ObjectKey) ([]byte, error) {
	for range 3 {
		s := &corev1.Secret{}
		err := reader.Get(ctx, key, s)
		if err == nil {
			k := s.Data[HashKeyDataKey]
			if len(k) < children.HashKeySize {
				return nil, fmt.Errorf("hash key Secret %s: key %q holds %d bytes, want at least %d; delete the Secret to have a new key generated",
					key, HashKeyDataKey, len(k), children.HashKeySize)
			}
			return k, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read hash key Secret %s: %w", key, err)
		}
		k := make([]byte, children.HashKeySize)
		if _, err := rand.Read(k); err != nil {
			return nil, fmt.Errorf("generate hash key: %w", err)
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{
				Namespace: key.Namespace, Name: key.Name,
				Labels: map[string]string{"app.kubernetes.io/managed-by": children.ManagedBy},
			},
			Type:      corev1.SecretTypeOpaque,
			Immutable: ptr.To(true),
			Data:      map[string][]byte{HashKeyDataKey: k},
		}
		err = c.Create(ctx, s)
		if err == nil {
			return k, nil
		}
		if !apierrors.IsAlreadyExists(err) {
			return nil, fmt.Errorf("create hash key Secret %s: %w", key, err)
		}
		// Another replica created it first: read its key.
	}
	return nil, fmt.Errorf("hash key Secret %s: created and deleted concurrently; restart the operator", key)
}
