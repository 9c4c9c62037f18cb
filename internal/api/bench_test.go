package api_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"
)

// BenchmarkAPICreateBridge measures bridges created per second through the
// REST API against the embedded store, with as many concurrent clients as
// GOMAXPROCS*4 (the API is meant to be driven concurrently). The shared
// test store runs without fsync; see bench/api for the figure with fsync.
func BenchmarkAPICreateBridge(b *testing.B) {
	body := []byte(`{"name":"bench","tenantId":"bench"}`)
	url := srv.URL + "/midonet-api/bridges"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	b.ReportAllocs()
	postParallel(b, client, url, "application/vnd.org.midonet.Bridge-v4+json", body)
}

// BenchmarkAPICreateRouterPort creates router ports: each is a transaction
// of the port, its Local route and the tunnel-key sequence.
func BenchmarkAPICreateRouterPort(b *testing.B) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	resp, err := client.Post(srv.URL+"/midonet-api/routers", "application/json", bytes.NewReader([]byte(`{"name":"bench"}`)))
	if err != nil || resp.StatusCode != 201 {
		b.Fatal(err, resp)
	}
	url := resp.Header.Get("Location") + "/ports"
	body := []byte(`{"type":"Router","portAddress":"10.0.0.1","networkLength":24}`)
	postParallel(b, client, url, "application/json", body)
}

// postParallel POSTs body to url from 4*GOMAXPROCS goroutines, each
// create expecting 201, and reports the rate as creates/s.
func postParallel(b *testing.B, client *http.Client, url, contentType string, body []byte) {
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(url, contentType, bytes.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}
