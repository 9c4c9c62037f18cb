package main

import (
	"slices"
	"testing"
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
