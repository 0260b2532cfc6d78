package controllers

import (
	"strings"
	"time"

	apiv1 "github.com/apiconnector/operator/api/v1alpha1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// scope is what one reconcile observed about a connector. The reconcile only records; status()
// turns the record into the connector's conditions, in one place, whatever path the reconcile took,
// so every condition describes this generation and no earlier verdict survives.
type scope struct {
	conn *apiv1.APIConnector

	// problems are what retrying cannot fix: only a change to the connector or to something it
	// references (all watched) can. All of them are reported at once.
	problems []problem
	// err is a failure retrying may fix (an API error); the reconcile is retried with backoff.
	err error
	// scaledToZero: spec.runtime.replicas is 0, a deliberate state that is settled, not pending.
	scaledToZero bool
	// recheck is when to look again at something no watch reports, such as another owner's
	// object of a child's name going away; zero when every input is watched.
	recheck time.Duration
	// entraWarnings are Entra's validation warnings, quoted in EntraRegistered's message.
	entraWarnings string
}

// recheckWithin makes the connector be looked at again within d at the latest.
func (s *scope) recheckWithin(d time.Duration) {
	if d > 0 && (s.recheck == 0 || d < s.recheck) {
		s.recheck = d
	}
}

// problem is one reason the connector cannot be served as specified. blocking problems stop the
// reconcile before anything is applied (the last good children keep serving); others, such as an
// endpoint served over plain HTTP, are reported while the children are kept up to date.
type problem struct {
	reason, message string
	blocking        bool
}

// stall records a problem that keeps the children as they are.
func (s *scope) stall(reason, message string) {
	s.problems = append(s.problems, problem{reason: reason, message: message, blocking: true})
}

// warnStalled records a problem that does not stop the children from being applied.
func (s *scope) warnStalled(reason, message string) {
	s.problems = append(s.problems, problem{reason: reason, message: message})
}

// blocked reports whether a problem keeps the children as they are.
func (s *scope) blocked() bool {
	for _, p := range s.problems {
		if p.blocking {
			return true
		}
	}
	return false
}

// stalledMessage joins every problem's message, so one status read shows all of them.
func (s *scope) stalledMessage() string {
	msgs := make([]string, len(s.problems))
	for i, p := range s.problems {
		msgs[i] = p.message
	}
	return strings.Join(msgs, "; ")
}

// status writes Ready, Reconciling and Stalled from what the reconcile observed:
//   - problems: Stalled=True and Ready=False with the first problem's reason and every message;
//   - an error: Ready=False and Reconciling=True (retried);
//   - replicas 0: Ready=True, reason ScaledToZero, settled (neither reconciling nor stalled);
//   - otherwise the first detail condition that is not True holds Ready and Reconciling, or the
//     connector is Ready.
//
// A settled connector (Ready or Stalled) has Reconciling=False rather than no Reconciling: kstatus
// reads both alike, and `kubectl wait --for=condition=Reconciling=False` then returns as soon as
// the connector is settled either way, where waiting for Ready alone would sit out its timeout on
// a Stalled connector.
func (s *scope) status() {
	c := s.conn
	switch {
	case len(s.problems) > 0:
		msg := s.stalledMessage()
		setCondition(c, ConditionStalled, metav1.ConditionTrue, s.problems[0].reason, msg)
		setCondition(c, ConditionReady, metav1.ConditionFalse, s.problems[0].reason, msg)
		setCondition(c, ConditionReconciling, metav1.ConditionFalse, s.problems[0].reason, "Stalled: only a change to the connector or what it references can fix it.")
		return
	case s.err != nil:
		meta.RemoveStatusCondition(&c.Status.Conditions, ConditionStalled)
		setCondition(c, ConditionReady, metav1.ConditionFalse, ReasonReconcileError, s.err.Error())
		setCondition(c, ConditionReconciling, metav1.ConditionTrue, ReasonReconcileError, s.err.Error())
		return
	}
	meta.RemoveStatusCondition(&c.Status.Conditions, ConditionStalled)
	if s.scaledToZero {
		// True, not False: the connector is exactly as specified, and kstatus (Flux, kubectl
		// wait) reads Ready=False without Stalled as "in progress", which would hang every
		// pipeline waiting on a deliberate scale-down. The reason says nothing serves it.
		setCondition(c, ConditionReady, metav1.ConditionTrue, ReasonScaledToZero,
			"spec.runtime.replicas is 0: nothing serves the endpoint; set replicas to serve it again.")
		setCondition(c, ConditionReconciling, metav1.ConditionFalse, ReasonScaledToZero, "Settled.")
		return
	}
	details := []string{ConditionRulesValid, ConditionDeploymentAvailable, ConditionCertificateReady, ConditionRouteReady}
	if c.Spec.Entra != nil {
		// Ready only once Entra holds the registration (docs/entra-registration.md).
		details = append(details, ConditionEntraRegistered)
	}
	for _, detail := range details {
		cond := meta.FindStatusCondition(c.Status.Conditions, detail)
		if cond == nil || cond.Status == metav1.ConditionTrue {
			continue
		}
		setCondition(c, ConditionReady, metav1.ConditionFalse, cond.Reason, cond.Message)
		setCondition(c, ConditionReconciling, metav1.ConditionTrue, ReasonProgressing, cond.Message)
		return
	}
	setCondition(c, ConditionReady, metav1.ConditionTrue, ReasonSucceeded, "The endpoint is served by the current configuration.")
	setCondition(c, ConditionReconciling, metav1.ConditionFalse, ReasonSucceeded, "Settled.")
}
