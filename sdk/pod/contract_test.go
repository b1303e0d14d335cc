package pod

import (
	"testing"

	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/podapi"
)

// The public contract spells its values out; they are the engine's.
func TestValuesAreTheEngines(t *testing.T) {
	for _, c := range []struct{ pub, eng any }{
		{ProtocolVersion, podapi.ProtocolVersion},
		{MinProtocolVersion, podapi.MinProtocolVersion},
		{CodeInvalid, ipa.EINVALID},
		{CodeConflict, ipa.ECONFLICT},
		{CodeNotFound, ipa.ENOTFOUND},
		{CodeUnavailable, ipa.EUNAVAILABLE},
		{CodeInternal, ipa.EINTERNAL},
		{ReasonInvalidArgument, ipa.ReasonInvalidArgument},
		{ReasonInvalidTransition, ipa.ReasonInvalidTransition},
		{ReasonApprovalPending, ipa.ReasonApprovalPending},
		{ReasonRuntimeFailed, ipa.ReasonRuntimeFailed},
		{PhaseSpecClarification, string(ipa.PhaseSpecClarification)},
		{PhasePlanning, string(ipa.PhasePlanning)},
		{PhaseDevelopment, string(ipa.PhaseDevelopment)},
		{PhaseReview, string(ipa.PhaseReview)},
		{Stdout, podapi.StreamStdout},
		{Stderr, podapi.StreamStderr},
	} {
		if c.pub != c.eng {
			t.Errorf("public %v, engine %v", c.pub, c.eng)
		}
	}
}

// Errors cross the adapter both ways with code, reason and message.
func TestErrorConversion(t *testing.T) {
	e := toEngine(Errorf(CodeConflict, ReasonInvalidArgument, "already %s", "started"))
	ie, ok := e.(*ipa.Error)
	if !ok || ie.Code != ipa.ECONFLICT || ie.Reason != ipa.ReasonInvalidArgument || ie.Message != "already started" {
		t.Fatalf("toEngine: %#v", e)
	}
	p := fromEngine(ipa.Errorf(ipa.ECONFLICT, ipa.ReasonInvalidTransition, "no"))
	pe, ok := p.(*Error)
	if !ok || pe.Code != CodeConflict || pe.Reason != ReasonInvalidTransition || pe.Message != "no" {
		t.Fatalf("fromEngine: %#v", p)
	}
	if fromEngine(ErrHostUnavailable) != ErrHostUnavailable || toEngine(nil) != nil {
		t.Fatal("sentinels and nil pass unchanged")
	}
}
