package ipacli

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ipa-dev/ipa/internal/client"
)

func newTaskArtifactsCommand(o *taskOptions) *cobra.Command {
	return &cobra.Command{
		Use:               "artifacts ID",
		Short:             "List a task's artifacts",
		Args:              usageArgs(cobra.ExactArgs(1)),
		ValidArgsFunction: taskIDCompletion(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			id, err := resolveID(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			data, err := c.Do(cmd.Context(), docTaskArtifacts, map[string]any{"id": id})
			if err != nil {
				return err
			}
			var out struct {
				Task *struct {
					Artifacts []struct {
						Name      string `json:"name"`
						SizeBytes int64  `json:"sizeBytes"`
						SHA256    string `json:"sha256"`
						SavedAt   string `json:"savedAt"`
					} `json:"artifacts"`
				} `json:"task"`
			}
			if err := json.Unmarshal(data, &out); err != nil {
				return err
			}
			if out.Task == nil {
				return notFound(args[0])
			}
			if o.json() {
				return writeJSONDocument(cmd.OutOrStdout(), data)
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "NAME\tBYTES\tSAVED\tSHA256")
			for _, a := range out.Task.Artifacts {
				fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", a.Name, a.SizeBytes, localTime(a.SavedAt), a.SHA256)
			}
			return w.Flush()
		},
	}
}

func newTaskDownloadCommand(o *taskOptions) *cobra.Command {
	var to string
	cmd := &cobra.Command{
		Use:               "download ID NAME",
		Short:             "Download one of a task's artifacts (to NAME in the current directory, --to FILE, or --to - for stdout)",
		Args:              usageArgs(cobra.ExactArgs(2)),
		ValidArgsFunction: taskIDCompletion(o),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			id, err := resolveID(cmd.Context(), c, args[0])
			if err != nil {
				return err
			}
			endpoint, err := url.Parse(c.Endpoint())
			if err != nil {
				return err
			}
			endpoint.Path = strings.TrimSuffix(endpoint.Path, "/graphql") + "/artifacts/" + url.PathEscape(id) + "/" + url.PathEscape(args[1])
			endpoint.RawPath = ""
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodGet, endpoint.String(), nil)
			if err != nil {
				return err
			}
			if o.token != "" {
				req.Header.Set("Authorization", "Bearer "+o.token)
			}
			resp, err := (&http.Client{Timeout: o.timeout}).Do(req)
			if err != nil {
				return &client.Error{Code: client.CodeUnavailable, Message: "cannot reach the server", Err: err}
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return downloadError(resp)
			}
			dest := to
			if dest == "" {
				dest = filepath.Base(args[1])
			}
			if dest == "-" {
				_, err = io.Copy(cmd.OutOrStdout(), resp.Body)
				return err
			}
			f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, resp.Body); err != nil {
				_ = f.Close()
				_ = os.Remove(dest)
				return err
			}
			return f.Close()
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "file to write (must not exist), or - for stdout")
	return cmd
}

// downloadError reads the coded JSON error of a refused download.
func downloadError(resp *http.Response) error {
	var body struct {
		Errors []struct {
			Message    string `json:"message"`
			Extensions struct {
				Code   string `json:"code"`
				Reason string `json:"reason"`
			} `json:"extensions"`
		} `json:"errors"`
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &body) == nil && len(body.Errors) > 0 {
		e := body.Errors[0]
		return &client.Error{Code: e.Extensions.Code, Reason: e.Extensions.Reason, Message: e.Message}
	}
	return &client.Error{Code: client.CodeInternal, Message: fmt.Sprintf("the server answered HTTP %d", resp.StatusCode)}
}
