package health

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// probe runs one check of t through p within the monitor's timeout: a TCP
// connection that opens, or for an HTTP monitor a GET whose status is one
// of codes.
func probe(ctx context.Context, p Prober, t target, codes map[int]bool) error {
	ctx, cancel := context.WithTimeout(ctx, t.spec.timeout)
	defer cancel()
	if !t.spec.http {
		c, err := p.DialContext(ctx, "tcp", t.addr.String())
		if err != nil {
			return err
		}
		return c.Close()
	}
	client := &http.Client{Transport: &http.Transport{DialContext: p.DialContext, DisableKeepAlives: true}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.addr.String()+t.spec.path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "midonet-health-monitor")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if !codes[resp.StatusCode] {
		return fmt.Errorf("HTTP status %d, expected %s", resp.StatusCode, t.spec.codes)
	}
	return nil
}
