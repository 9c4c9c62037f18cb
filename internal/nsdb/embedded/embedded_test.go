package embedded

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		mention string
	}{
		{"no data dir", Config{ClientURL: "http://127.0.0.1:0"}, "data directory"},
		{"client URL without port", Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1"}, "has no port"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := Start(tc.cfg)
			if err == nil {
				srv.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("error %q does not mention %q", err, tc.mention)
			}
		})
	}
}

// roundTrip writes key=value (unless value is empty) through a fresh
// client and reads key back.
func roundTrip(t *testing.T, url, key, value string) string {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{url}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if value != "" {
		if _, err := cli.Put(ctx, key, value); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := cli.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func TestRestartKeepsData(t *testing.T) {
	for _, stop := range []struct {
		name string
		fn   func(*Server)
	}{
		{"close", (*Server).Close},
		{"kill", (*Server).Kill},
	} {
		t.Run(stop.name, func(t *testing.T) {
			cfg := Config{DataDir: t.TempDir(), ClientURL: "http://127.0.0.1:0", Fast: true}
			srv, err := Start(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(srv.ClientURL, ":0") || strings.HasSuffix(srv.PeerURL, ":0") {
				t.Errorf("port 0 not replaced: %s %s", srv.ClientURL, srv.PeerURL)
			}
			if got := roundTrip(t, srv.ClientURL, "k", "v1"); got != "v1" {
				t.Fatalf("read %q after writing v1", got)
			}
			stop.fn(srv)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if !srv.Stopped(ctx) {
				t.Fatal("member not stopped")
			}
			srv, err = Start(cfg)
			if err != nil {
				t.Fatalf("restart: %v", err)
			}
			defer srv.Close()
			if got := roundTrip(t, srv.ClientURL, "k", ""); got != "v1" {
				t.Errorf("after restart k = %q, want v1", got)
			}
		})
	}
}
