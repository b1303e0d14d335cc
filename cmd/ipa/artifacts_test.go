package main

// Artifacts through the real binary: a sandboxed exec command leaves files
// in $IPA_ARTIFACTS; they are recorded (artifact_saved), listed, and
// downloaded with a viewer token (ranges and ETag included), refused
// without one, refused for names that try to leave the task's directory,
// and a link pointing at the server's store is not followed.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ipa-dev/ipa/cmd/ipa/ipacli"
)

func (s *server) get(t *testing.T, token, path string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestArtifactsSavedListedDownloaded(t *testing.T) {
	t.Parallel()
	h, dir := outsideHome(t, nil, "--artifact-max-bytes", "4096")
	s := h.start()
	report := strings.Repeat("line of the report\n", 20)
	db := filepath.Join(dir, "ipa.db")
	out, _ := execRun(t, h, s, `
		printf '%s' "$REPORT" > "$IPA_ARTIFACTS/report.txt"
		echo '{"ok":true}' > "$IPA_ARTIFACTS/result.json"
		head -c 10000 /dev/zero > "$IPA_ARTIFACTS/too-big.bin"
		ln -s `+db+` "$IPA_ARTIFACTS/store.db"
		echo x > "$IPA_ARTIFACTS/.hidden"
		echo "artifacts: $IPA_ARTIFACTS"`, map[string]any{"env": map[string]string{tagVar: h.tag, "REPORT": report}})
	if len(out) == 0 || !strings.Contains(out[len(out)-1], "artifacts: ") {
		t.Fatalf("output %q", out)
	}
	var list struct {
		Tasks struct {
			Edges []struct {
				Node struct {
					ID        string
					Artifacts []struct {
						Name      string
						SizeBytes int
						Sha256    string
						URL       string
					}
				}
			}
		}
	}
	// The artifacts are collected when the command's end is reported,
	// after its runtime.exec.exited is committed and before the plugin
	// exits: wait for the pod to stop.
	eventually(t, 60*time.Second, func() string {
		var v struct {
			Tasks struct {
				Edges []struct {
					Node struct{ Pod struct{ State string } }
				}
			}
		}
		s.must(t, `{ tasks(first: 1) { edges { node { pod { state } } } } }`, nil, &v)
		if st := v.Tasks.Edges[0].Node.Pod.State; st != "STOPPED" {
			return "pod " + st
		}
		return ""
	})
	s.must(t, `{ tasks(first: 1) { edges { node { id artifacts { name sizeBytes sha256 url } } } } }`, nil, &list)
	node := list.Tasks.Edges[0].Node
	id := node.ID
	var names []string
	for _, a := range node.Artifacts {
		names = append(names, a.Name)
	}
	if strings.Join(names, ",") != "report.txt,result.json" {
		t.Fatalf("artifacts %v, want report.txt and result.json only (too big, link and hidden refused)", names)
	}
	sum := sha256.Sum256([]byte(report))
	rep := node.Artifacts[0]
	if rep.SizeBytes != len(report) || rep.Sha256 != hex.EncodeToString(sum[:]) || rep.URL != "/artifacts/"+id+"/report.txt" {
		t.Fatalf("report.txt listed as %+v", rep)
	}
	saved := s.events(t, id, "artifact_saved")
	refused := s.events(t, id, "artifact_refused")
	if len(saved) != 2 || len(refused) != 3 {
		t.Fatalf("%d artifact_saved and %d artifact_refused events, want 2 and 3", len(saved), len(refused))
	}
	if _, err := os.Stat(filepath.Join(h.dataDir, "tasks", id, ".ipa-artifacts", "report.txt")); !os.IsNotExist(err) {
		t.Fatalf("a collected file stayed in the staging directory: %v", err)
	}

	// Tokens: once one exists the anonymous door closes.
	var admin, viewer struct {
		CreateToken struct{ Secret string }
	}
	s.must(t, `mutation { createToken(actorId: "root", role: ADMIN) { secret } }`, nil, &admin)
	s.mustAs(t, admin.CreateToken.Secret, `mutation { createToken(actorId: "vic", role: VIEWER) { secret } }`, &viewer)
	tok := viewer.CreateToken.Secret

	resp, body := s.get(t, tok, rep.URL, nil)
	if resp.StatusCode != http.StatusOK || body != report {
		t.Fatalf("download with a viewer token: %d %q", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	if cd := resp.Header.Get("Content-Disposition"); cd != `attachment; filename=report.txt` {
		t.Errorf("Content-Disposition %q", cd)
	}
	etag := resp.Header.Get("ETag")
	if etag != `"`+rep.Sha256+`"` {
		t.Errorf("ETag %q, want the sha256", etag)
	}
	if resp, _ := s.get(t, tok, rep.URL, map[string]string{"If-None-Match": etag}); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
	if resp, body := s.get(t, tok, rep.URL, map[string]string{"Range": "bytes=5-11"}); resp.StatusCode != http.StatusPartialContent || body != report[5:12] {
		t.Errorf("Range: %d %q, want 206 %q", resp.StatusCode, body, report[5:12])
	}
	if resp, body := s.get(t, "", rep.URL, nil); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "UNAUTHENTICATED") {
		t.Errorf("download without a token: %d %s", resp.StatusCode, body)
	}
	if resp, _ := s.get(t, "not-a-token", rep.URL, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("download with a bad token: %d", resp.StatusCode)
	}
	for _, p := range []string{
		"/artifacts/" + id + "/..%2F..%2Fipa.db",
		"/artifacts/" + id + "/.hidden",
		"/artifacts/" + id + "/%2Fetc%2Fpasswd",
	} {
		resp, body := s.get(t, tok, p, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "BAD_USER_INPUT") || strings.Contains(body, h.dataDir) {
			t.Errorf("GET %s: %d %s, want 400 BAD_USER_INPUT", p, resp.StatusCode, body)
		}
	}
	// Dot segments are refused as such, not cleaned by the router and
	// redirected elsewhere; without a token too.
	for _, p := range []string{"/artifacts/" + id + "/../../ipa.db", "/artifacts/" + id + "/..", "/artifacts/../graphql", "/artifacts/" + id + "/./report.txt"} {
		for _, bearer := range []string{tok, ""} {
			resp, body := s.get(t, bearer, p, nil)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "BAD_USER_INPUT") || strings.Contains(body, "SQLite") {
				t.Errorf("GET %s: %d %s, want 400 BAD_USER_INPUT", p, resp.StatusCode, body)
			}
		}
	}
	for _, p := range []string{"/artifacts/" + id + "/missing.txt", "/artifacts/no-such-task/report.txt", "/artifacts/" + id + "/too-big.bin"} {
		if resp, _ := s.get(t, tok, p, nil); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, resp.StatusCode)
		}
	}

	// The CLI lists and downloads with the token.
	r := s.on(t, tok, 0, "artifacts", id)
	if !strings.Contains(r.stdout, "report.txt") || !strings.Contains(r.stdout, "result.json") {
		t.Fatalf("ipa task artifacts: %s", r.stdout)
	}
	r = s.on(t, tok, 0, "download", id, "result.json", "--to", "-")
	if r.stdout != "{\"ok\":true}\n" {
		t.Fatalf("ipa task download: %q", r.stdout)
	}
	s.on(t, "", ipacli.ExitAuth, "download", id, "result.json", "--to", "-")
}

// mustAs runs an operation with token that must succeed, and decodes its
// data into out.
func (s *server) mustAs(t *testing.T, token, query string, out any) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query})
	req, err := http.NewRequest(http.MethodPost, s.url+"/graphql", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var res struct {
		Data   json.RawMessage
		Errors []gqlError
	}
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil || len(res.Errors) > 0 {
		t.Fatalf("%s: %d %v %v", query, resp.StatusCode, err, res.Errors)
	}
	if err := json.Unmarshal(res.Data, out); err != nil {
		t.Fatal(err)
	}
}
