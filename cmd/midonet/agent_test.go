package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetricsMuxServesProfilesOnlyWhenAsked(t *testing.T) {
	for _, profiling := range []bool{false, true} {
		srv := httptest.NewServer(metricsMux(prometheus.NewRegistry(), profiling))
		for path, want := range map[string]int{"/metrics": 200, "/debug/pprof/": 404, "/debug/pprof/heap?debug=1": 404} {
			if profiling && path != "/metrics" {
				want = 200
			}
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("profiling=%v: GET %s: %d, want %d", profiling, path, resp.StatusCode, want)
			}
		}
		srv.Close()
	}
}
