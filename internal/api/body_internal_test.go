package api

import (
	"encoding/json"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/midonet/midonet/internal/topology"
)

// TestDecodeJSON checks the mapping of bodies onto the model: what is
// refused with a plain 400, what is a violation at which path, and what is
// taken.
func TestDecodeJSON(t *testing.T) {
	type sample struct {
		Name     *string                     `json:"name"`
		Up       bool                        `json:"adminStateUp"`
		Filter   *topology.ID                `json:"inboundFilterId"`
		Mirrors  []topology.ID               `json:"inboundMirrorIds"`
		VLAN     uint16                      `json:"vlanId"`
		Length   int                         `json:"networkLength"`
		Limit    int64                       `json:"limit"`
		Targets  []topology.NatTarget        `json:"natTargets"`
		Cond     *topology.MirrorCondition   `json:"condition"`
		Members  []topology.TunnelZoneMember `json:"_members"`
		Opts     map[string]int              `json:"opts"`
		Weight   float64                     `json:"weight"`
		Untagged string
	}
	tests := []struct {
		name string
		body string
		// plain is a fragment of the message of a plain 400; violations
		// lists "property: message fragment" of a violation list.
		plain      string
		violations []string
		check      func(s *sample) string
	}{
		{name: "null", body: "null", plain: "must be a JSON object, not null"},
		{name: "array", body: `[{"name":"x"}]`, plain: "not an array"},
		{name: "string", body: `"x"`, plain: "not a string"},
		{name: "number", body: `4`, plain: "not a number"},
		{name: "boolean", body: `false`, plain: "not a boolean"},
		{name: "empty", body: ``, plain: "empty"},
		{name: "blank", body: "  \n", plain: "empty"},
		{name: "syntax error", body: `{"name": }`, plain: "malformed JSON"},
		{name: "truncated", body: `{"name": "x"`, plain: "malformed JSON"},
		{name: "trailing value", body: `{} []`, plain: "more than one JSON value"},
		{name: "trailing garbage", body: `{} x`, plain: "more than one JSON value"},
		{name: "too deep", body: strings.Repeat("[", 20000), plain: "malformed JSON"},
		{name: "empty object", body: `{}`, check: func(s *sample) string {
			if !s.Up || s.Name != nil {
				return "defaults lost"
			}
			return ""
		}},
		{name: "wrong scalar types", body: `{"name": 5, "adminStateUp": "true", "networkLength": "x", "vlanId": [1]}`,
			violations: []string{"adminStateUp: must be a boolean, not a string", "name: must be a string, not a number",
				"networkLength: must be an integer, not a string", "vlanId: must be an integer, not an array"}},
		{name: "malformed ids", body: `{"inboundFilterId": "nope", "inboundMirrorIds": ["5b4cb2f1-0000-4000-8000-0000000000ff", 3, "x"]}`,
			violations: []string{"inboundFilterId: is not a valid UUID", "inboundMirrorIds[1]: must be a string, not a number",
				"inboundMirrorIds[2]: is not a valid UUID"}},
		{name: "out of the field's range", body: `{"vlanId": 65536, "networkLength": 9223372036854775808, "limit": -9223372036854775809}`,
			violations: []string{"limit: must be between -9223372036854775808 and 9223372036854775807",
				"networkLength: must be between", "vlanId: must be between 0 and 65535"}},
		{name: "negative into unsigned", body: `{"vlanId": -1}`, violations: []string{"vlanId: must be between 0 and 65535"}},
		{name: "fraction into an integer", body: `{"networkLength": 2.5}`, violations: []string{"networkLength: must be an integer"}},
		{name: "integral floats and numeric strings", body: `{"networkLength": "24", "vlanId": 1e2, "limit": " 7 ", "weight": "0.5"}`,
			check: func(s *sample) string {
				if s.Length != 24 || s.VLAN != 100 || s.Limit != 7 || s.Weight != 0.5 {
					return "numbers not taken"
				}
				return ""
			}},
		{name: "nested paths", body: `{"natTargets": [{"addressFrom": "1.1.1.1"}, {"portFrom": "eighty", "addressTo": 1}], "condition": {"tpSrc": {"start": true}, "inPorts": "x"}}`,
			violations: []string{"condition.inPorts: must be an array, not a string", "condition.tpSrc.start: must be an integer, not a boolean",
				"natTargets[1].addressTo: must be a string, not a number", "natTargets[1].portFrom: must be an integer, not a string"}},
		{name: "object where a list goes", body: `{"natTargets": {"addressFrom": "1.1.1.1"}}`, violations: []string{"natTargets: must be an array, not an object"}},
		{name: "map values", body: `{"opts": {"a": 1, "b": "x"}}`, violations: []string{"opts.b: must be an integer, not a string"}},
		{name: "unknown, other-case and hidden keys are ignored", body: `{"NAME": "x", "Name": "y", "color": {"deep": [1, {"x": null}]}, "_members": [{"hostId": "5b4cb2f1-0000-4000-8000-0000000000ff"}], "Untagged": "u"}`,
			check: func(s *sample) string {
				if s.Name != nil || s.Members != nil || s.Untagged != "u" {
					return "an ignored key was taken"
				}
				return ""
			}},
		{name: "null keeps value fields and clears references", body: `{"adminStateUp": null, "name": null, "inboundMirrorIds": null, "condition": null}`,
			check: func(s *sample) string {
				if !s.Up || s.Name != nil || s.Mirrors != nil || s.Cond != nil {
					return "null mishandled"
				}
				return ""
			}},
		{name: "embedded condition fields", body: `{"condition": {"nwProto": 6, "uri": "u", "fragmentPolicy": "any"}}`,
			check: func(s *sample) string {
				if s.Cond == nil || s.Cond.NwProto == nil || *s.Cond.NwProto != 6 || s.Cond.URI == nil || *s.Cond.FragmentPolicy != "any" {
					return "condition not taken"
				}
				return ""
			}},
		{name: "last duplicate key wins", body: `{"name": "a", "name": "b"}`, check: func(s *sample) string {
			if s.Name == nil || *s.Name != "b" {
				return "duplicate key"
			}
			return ""
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &sample{Up: true}
			err := decodeJSON([]byte(tc.body), s)
			var he *httpError
			var ve *topology.ValidationError
			switch {
			case tc.plain != "":
				if !errors.As(err, &he) || he.status != 400 || !strings.Contains(he.msg, tc.plain) {
					t.Fatalf("got %v, want a plain 400 saying %q", err, tc.plain)
				}
			case tc.violations != nil:
				if !errors.As(err, &ve) {
					t.Fatalf("got %v, want violations %v", err, tc.violations)
				}
				if len(ve.Violations) != len(tc.violations) {
					t.Fatalf("violations %v, want %v", ve.Violations, tc.violations)
				}
				for i, want := range tc.violations {
					prop, msg, _ := strings.Cut(want, ": ")
					if got := ve.Violations[i]; got.Property != prop || !strings.Contains(got.Message, msg) {
						t.Errorf("violation %d: %s: %s, want %s", i, got.Property, got.Message, want)
					}
				}
			default:
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if bad := tc.check(s); bad != "" {
					t.Fatalf("%s: %+v", bad, s)
				}
			}
		})
	}
}

// TestDecodeCostIsBounded decodes the worst bodies of the default size
// limit: many small values (over the value limit, and just under it), deep
// nesting, a value per violation. Each must cost at most 16 bytes of
// memory per byte of body plus 256 per value of the limit, and list at
// most maxViolations violations.
func TestDecodeCostIsBounded(t *testing.T) {
	const size = DefaultMaxBodyBytes
	fill := func(prefix, item, suffix string) []byte {
		n := (size - len(prefix) - len(suffix)) / (len(item) + 1)
		return []byte(prefix + strings.TrimSuffix(strings.Repeat(item+",", n), ",") + suffix)
	}
	bodies := map[string][]byte{
		"small numbers under an unknown key": fill(`{"x": [`, "1", `]}`),
		"empty objects under an unknown key": fill(`{"x": [`, "{}", `]}`),
		"numbers in a list of ids":           fill(`{"inboundMirrorIds": [`, "1", `]}`),
		"bad ids":                            fill(`{"inboundMirrorIds": [`, `"x"`, `]}`),
		"good ids":                           fill(`{"inboundMirrorIds": [`, `"5b4cb2f1-0000-4000-8000-0000000000ff"`, `]}`),
		"deep nesting":                       []byte(strings.Repeat(`{"x":`, size/5-1) + "1"),
		"long string":                        []byte(`{"name": "` + strings.Repeat("x", size-12) + `"}`),
		"numbers under the value limit":      []byte(`{"inboundMirrorIds": [` + strings.Repeat("1,", maxJSONValues-4) + `1]}`),
		"objects under the value limit":      []byte(`{"x": [` + strings.Repeat("{},", maxJSONValues/2-4) + `{}]}`),
		"bad ids under the value limit":      []byte(`{"inboundMirrorIds": [` + strings.Repeat(`"x",`, maxJSONValues-4) + `"x"]}`),
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := decodeJSON(body, &topology.Bridge{})
			runtime.ReadMemStats(&after)
			allocated := after.TotalAlloc - before.TotalAlloc
			t.Logf("%d bytes of body: %d bytes allocated (%.1fx), %v", len(body), allocated, float64(allocated)/float64(len(body)), errSummary(err))
			if limit := uint64(16*len(body) + 256*maxJSONValues); allocated > limit {
				t.Errorf("allocated %d bytes for a body of %d, over %d", allocated, len(body), limit)
			}
			var ve *topology.ValidationError
			if errors.As(err, &ve) && len(ve.Violations) > maxViolations {
				t.Errorf("%d violations listed, over %d", len(ve.Violations), maxViolations)
			}
		})
	}
}

func errSummary(err error) string {
	var ve *topology.ValidationError
	if errors.As(err, &ve) {
		return strconv.Itoa(len(ve.Violations)) + " violations"
	}
	if err == nil {
		return "taken"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// BenchmarkDecode compares the body decoder with encoding/json's Unmarshal
// into the same object, side by side, on a bridge and on a NAT rule with a
// condition: what the decoder's checks cost per create.
func BenchmarkDecode(b *testing.B) {
	bodies := []struct {
		name string
		body string
		obj  func() any
	}{
		{"bridge", `{"name": "tenant-net", "tenantId": "demo", "adminStateUp": true}`, func() any { return &topology.Bridge{AdminStateUp: true} }},
		{"snat rule", `{"type": "snat", "flowAction": "accept", "nwSrcAddress": "10.0.0.0", "nwSrcLength": 24,
			"inPorts": ["5b4cb2f1-0000-4000-8000-0000000000ff"], "tpDst": {"start": 80, "end": 80},
			"natTargets": [{"addressFrom": "203.0.113.1", "addressTo": "203.0.113.1", "portFrom": 1024, "portTo": 65535}],
			"position": 1, "condInvert": false, "fragmentPolicy": null}`, func() any { return &topology.Rule{} }},
	}
	for _, tc := range bodies {
		body := []byte(tc.body)
		b.Run(tc.name+"/decodeJSON", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := decodeJSON(body, tc.obj()); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(tc.name+"/encoding-json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := json.Unmarshal(body, tc.obj()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
