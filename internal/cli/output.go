package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// column is one column of a human table.
type column struct {
	header string
	value  func(Object) string
}

// col shows one field of the object.
func col(header, key string) column {
	return column{header, func(o Object) string { return format(o[key]) }}
}

// prefixCol shows an address field and its length field as one CIDR.
func prefixCol(header, addrKey, lenKey string) column {
	return column{header, func(o Object) string { return prefix(o, addrKey, lenKey) }}
}

func prefix(o Object, addrKey, lenKey string) string {
	a := o.Str(addrKey)
	if a == "" {
		return "-"
	}
	return a + "/" + format(o[lenKey])
}

// format renders a JSON value for a table cell: "-" for null or empty.
func format(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case string:
		if v == "" {
			return "-"
		}
		return v
	case json.Number:
		return v.String()
	case bool:
		if v {
			return "true"
		}
		return "false"
	case []any:
		if len(v) == 0 {
			return "-"
		}
		parts := make([]string, len(v))
		for i, e := range v {
			parts[i] = format(e)
		}
		return strings.Join(parts, ",")
	default:
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Sprint(v)
		}
		return string(data)
	}
}

// writeJSON writes v indented, as the API's fields.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writeTable writes one aligned row per object.
func writeTable(w io.Writer, cols []column, list []Object) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for i, c := range cols {
		if i > 0 {
			fmt.Fprint(tw, "\t")
		}
		fmt.Fprint(tw, c.header)
	}
	fmt.Fprintln(tw)
	for _, o := range list {
		for i, c := range cols {
			if i > 0 {
				fmt.Fprint(tw, "\t")
			}
			fmt.Fprint(tw, c.value(o))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

// isLink reports whether o's key k holds a link rather than data: a URI of
// the API, or an unset link beside its id field (inboundFilter beside
// inboundFilterId).
func isLink(o Object, k string, v any, linkPrefix string) bool {
	switch v := v.(type) {
	case string:
		return k == "uri" || linkPrefix != "" && strings.HasPrefix(v, linkPrefix)
	case nil:
		_, hasID := o[k+"Id"]
		return hasID
	}
	return false
}

// writeFields writes one object as aligned "field value" lines: id first,
// then every other field that is not a link, by name.
func writeFields(w io.Writer, o Object, linkPrefix string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	keys := make([]string, 0, len(o))
	for k, v := range o {
		if isLink(o, k, v, linkPrefix) {
			continue
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		switch {
		case a == b:
			return 0
		case a == "id":
			return -1
		case b == "id":
			return 1
		}
		return strings.Compare(a, b)
	})
	for _, k := range keys {
		fmt.Fprintf(tw, "%s\t%s\n", k, format(o[k]))
	}
	return tw.Flush()
}
