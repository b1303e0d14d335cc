package ipa

import "testing"

// TestCheckPhaseTransition walks every pair of phases against the rules: one
// step forward, one step back, nothing else; final phases are final.
func TestCheckPhaseTransition(t *testing.T) {
	all := []Phase{PhaseSpecClarification, PhasePlanning, PhaseDevelopment, PhaseReview, PhaseCompleted, PhaseCancelled}
	allowed := map[[2]Phase]bool{
		{PhaseSpecClarification, PhasePlanning}: true,
		{PhasePlanning, PhaseDevelopment}:       true,
		{PhaseDevelopment, PhaseReview}:         true,
		{PhasePlanning, PhaseSpecClarification}: true,
		{PhaseDevelopment, PhasePlanning}:       true,
		{PhaseReview, PhaseDevelopment}:         true,
	}
	for _, from := range all {
		for _, to := range all {
			err := CheckPhaseTransition(from, to)
			switch {
			case allowed[[2]Phase{from, to}]:
				if err != nil {
					t.Errorf("%s -> %s: %v, want allowed", from, to, err)
				}
			case from == PhaseCompleted:
				if ErrorReason(err) != ReasonAlreadyCompleted {
					t.Errorf("%s -> %s: %v, want ALREADY_COMPLETED", from, to, err)
				}
			case from == PhaseCancelled:
				if ErrorReason(err) != ReasonAlreadyCancelled {
					t.Errorf("%s -> %s: %v, want ALREADY_CANCELLED", from, to, err)
				}
			default:
				if ErrorCode(err) != ECONFLICT || ErrorReason(err) != ReasonInvalidTransition {
					t.Errorf("%s -> %s: %v, want CONFLICT/INVALID_TRANSITION", from, to, err)
				}
			}
		}
	}
	if ErrorCode(CheckPhaseTransition(PhasePlanning, "NOPE")) != EINVALID {
		t.Error("an unknown phase must be bad input")
	}
}
