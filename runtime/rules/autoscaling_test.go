package rules_test

import (
	"testing"

	"github.com/apiconnector/operator/runtime/rules"
)

// A connector file gets the CRD's autoscaling defaults and bounds, so the local runner refuses
// what the API server would.
func TestAutoscalingDefaultsAndBounds(t *testing.T) {
	c := parse(t, "  step: PostAttributeCollection\n  runtime:\n    autoscaling: {maxReplicas: 6}\n")
	if a := c.Spec.Runtime.Autoscaling; a.MinReplicas != 2 || a.TargetCPUUtilizationPercentage != 70 {
		t.Fatalf("defaults: got min %d target %d, want 2 and 70", a.MinReplicas, a.TargetCPUUtilizationPercentage)
	}
	if err := rules.Validate(c); err != nil {
		t.Fatalf("valid autoscaling refused: %v", err)
	}
	const p = "spec.runtime.autoscaling"
	c.Spec.Runtime.Autoscaling.MinReplicas = 7
	wantFieldError(t, rules.Validate(c), p, "minReplicas must not exceed maxReplicas")
	c = parse(t, "  step: PostAttributeCollection\n  runtime:\n    autoscaling: {minReplicas: 1, maxReplicas: 51, targetCPUUtilizationPercentage: 101}\n")
	wantFieldError(t, rules.Validate(c), p+".maxReplicas", "1 to 50")
	wantFieldError(t, rules.Validate(c), p+".targetCPUUtilizationPercentage", "1 to 100")
	c.Spec.Runtime.Autoscaling.MinReplicas = -1
	wantFieldError(t, rules.Validate(c), p+".minReplicas", "scale to zero is not offered")
}
