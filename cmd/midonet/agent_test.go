package main

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
		ok   bool
	}{
		{"", nil, true},
		{"1", []int{1}, true},
		{"0,2-4", []int{0, 2, 3, 4}, true},
		{" 3 , 5", []int{3, 5}, true},
		{"4-2", nil, false},
		{"x", nil, false},
		{"-1", nil, false},
		{"1,", nil, false},
	} {
		got, err := parseCPUList(tc.in)
		if (err == nil) != tc.ok || !slices.Equal(got, tc.want) {
			t.Errorf("parseCPUList(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

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
