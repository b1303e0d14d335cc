package supervisor

import (
	"slices"
	"testing"
)

func TestPluginEnvKeepsOnlyTheMinimalSet(t *testing.T) {
	environ := []string{
		"IPA_DATABASE_URL=postgres://ipa:secret@db/ipa",
		"AWS_SECRET_ACCESS_KEY=secret",
		"PATH=/usr/bin:/bin",
		"HOME=/var/lib/ipa",
		"LANG=C.UTF-8",
		"LC_TIME=de_DE.UTF-8",
		"TZ=UTC",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318",
		"IPA_PLUGIN_ORPHAN_GRACE=5s",
		"IPA_PLUGIN_DIR=/opt/plugins", // a server flag, not for plugins
		"ANTHROPIC_API_KEY=named",
		"GOMAXPROCS=2",
		"malformed",
		"=nameless",
	}
	got := PluginEnv(environ, []string{"ANTHROPIC_API_KEY"})
	want := []string{
		"PATH=/usr/bin:/bin", "HOME=/var/lib/ipa", "LANG=C.UTF-8", "LC_TIME=de_DE.UTF-8", "TZ=UTC",
		"OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318", "IPA_PLUGIN_ORPHAN_GRACE=5s",
		"ANTHROPIC_API_KEY=named", "GOMAXPROCS=2",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("PluginEnv = %q\nwant       %q", got, want)
	}
	if got := PluginEnv(environ, nil); slices.Contains(got, "ANTHROPIC_API_KEY=named") {
		t.Fatal("a variable not named in --plugin-env reached the plugin")
	}
}

func TestCheckPluginEnvNames(t *testing.T) {
	if err := CheckPluginEnvNames([]string{"A", "B_2"}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "A=B", "A\x00"} {
		if err := CheckPluginEnvNames([]string{bad}); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
}
