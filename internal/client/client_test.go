package client

import "testing"

func TestEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"http://127.0.0.1:8080":         "http://127.0.0.1:8080/graphql",
		"127.0.0.1:8080":                "http://127.0.0.1:8080/graphql",
		"https://ipa.example/":          "https://ipa.example/graphql",
		"https://ipa.example/graphql":   "https://ipa.example/graphql",
		"http://proxy/ipa?x=1":          "http://proxy/ipa/graphql",
		" http://localhost:9/graphql  ": "http://localhost:9/graphql",
	} {
		got, err := Endpoint(in)
		if err != nil || got != want {
			t.Errorf("Endpoint(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "ftp://host", "http://", "http://[::1"} {
		if got, err := Endpoint(bad); err == nil {
			t.Errorf("Endpoint(%q) = %q, want an error", bad, got)
		}
	}
}

func TestErrorText(t *testing.T) {
	e := &Error{Code: "CONFLICT", Reason: "NOT_RUNNING", Message: "No pod is running for this task."}
	if got := e.Error(); got != "No pod is running for this task. (CONFLICT/NOT_RUNNING)" {
		t.Errorf("Error() = %q", got)
	}
	if ErrorCode(e) != "CONFLICT" || ErrorCode(nil) != "" {
		t.Error("ErrorCode")
	}
}
