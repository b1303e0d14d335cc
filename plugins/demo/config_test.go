package demo

import (
	"testing"

	"github.com/ipa-dev/ipa/internal/ipa"
)

func TestValidateConfig(t *testing.T) {
	for _, ok := range []string{``, `null`, `{}`, `{"stepMs": 10}`, `{"stepMs": 3600000}`} {
		if err := ValidateConfig([]byte(ok)); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	for _, bad := range []string{`{"stepMs": 9}`, `{"stepMs": 3600001}`, `{"stepMs": 1.5}`, `{"stepMs": "x"}`, `{"steps": 1}`, `[]`, `{`} {
		if err := ValidateConfig([]byte(bad)); ipa.ErrorCode(err) != ipa.EINVALID {
			t.Errorf("%s: want EINVALID, got %v", bad, err)
		}
	}
	if c, _ := ParseConfig(nil); c.StepMs != DefaultStepMs {
		t.Errorf("default stepMs %d", c.StepMs)
	}
}
