package store_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/ipa-dev/ipa/internal/app/apptest"
	"github.com/ipa-dev/ipa/internal/auth"
	"github.com/ipa-dev/ipa/internal/dbtest"
	"github.com/ipa-dev/ipa/internal/ipa"
	"github.com/ipa-dev/ipa/internal/store"
)

// BenchmarkCreateTask creates tasks four ways in one run, on each dialect,
// sequentially and from 16 goroutines:
//
//	raw      the floor: the same three inserts (stream, event, task row) in
//	         one database/sql transaction
//	store    store.CreateTask (GORM, position counter, fold)
//	service  TaskService.CreateTask (validation, authorization, live-feed publish)
//	http     createTask as a GraphQL mutation over HTTP on a real socket
func BenchmarkCreateTask(b *testing.B) {
	for _, backend := range dbtest.Backends {
		b.Run(backend, func(b *testing.B) {
			a := apptest.New(b, dbtest.URL(b, backend), auth.ModeAuto, nil)
			s, tasks := a.Store, a.Services.TaskService
			ctx := ipa.WithActor(context.Background(), ipa.Actor{ID: "bench", Role: ipa.RoleAdmin})
			srv := httptest.NewServer(a.Handler)
			defer srv.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
			body := []byte(`{"query":"mutation { createTask(input: {title: \"bench\"}) { task { id version } } }"}`)

			var pos atomic.Int64
			pos.Store(1 << 40) // raw rows stay clear of the store's counter
			paths := []struct {
				name string
				fn   func() error
			}{
				{"raw", func() error { return store.RawCreate(ctx, s, pos.Add(1)) }},
				{"store", func() error { _, err := s.CreateTask(ctx, store.NewCreateRequest()); return err }},
				{"service", func() error { _, err := tasks.CreateTask(ctx, ipa.CreateTaskInput{Title: "bench"}); return err }},
				{"http", func() error { return post(client, srv.URL+"/graphql", body) }},
			}
			for _, mode := range []struct {
				name string
				par  int
			}{{"seq", 1}, {"par16", 16}} {
				for _, p := range paths {
					b.Run(p.name+"/"+mode.name, func(b *testing.B) { store.RunBench(b, mode.par, p.fn) })
				}
			}
		})
	}
}

func post(c *http.Client, url string, body []byte) error {
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(out, []byte(`"errors"`)) {
		return fmt.Errorf("createTask: %d %s", resp.StatusCode, out)
	}
	return nil
}
