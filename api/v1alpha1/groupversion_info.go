// Package v1alpha1 holds the APIConnector API. The same types are the runtime's configuration
// schema: the controller renders a connector into a file and the runtime loads it back, so this
// package must never import client-go or controller-runtime.
//
// +kubebuilder:object:generate=true
// +groupName=apiconnector.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the group and version of this API.
var GroupVersion = schema.GroupVersion{Group: "apiconnector.dev", Version: "v1alpha1"}

// AddToScheme registers the API's types with a scheme.
func AddToScheme(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &APIConnector{}, &APIConnectorList{}, &EntraTenant{}, &EntraTenantList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
