package speaker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"

	"github.com/midonet/midonet/internal/services/bgp"
)

// Main is the body of a speaker process: it reads configurations from in,
// applies each, and writes events to out, until in ends (the agent closed
// it, or died) or ctx is done. A configuration the running speaker cannot
// take (a new router id or AS) ends it with ErrRestart, and one it cannot
// start with (its address cannot be listened on) with that error, for the
// agent to start another.
func Main(ctx context.Context, in io.Reader, out io.Writer, log *slog.Logger) error {
	var mu sync.Mutex
	enc := bgp.NewEncoder(out)
	var werr error
	emit := func(e bgp.Event) {
		mu.Lock()
		defer mu.Unlock()
		if werr == nil {
			werr = enc.Encode(e)
		}
	}
	s := New(log, emit)
	defer s.Close()

	cfgs := make(chan bgp.SpeakerConfig)
	readErr := make(chan error, 1)
	go func() {
		dec := bgp.NewDecoder(in)
		for {
			var c bgp.SpeakerConfig
			if err := dec.Decode(&c); err != nil {
				readErr <- err
				return
			}
			select {
			case cfgs <- c:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-readErr:
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		case c := <-cfgs:
			err := s.Apply(ctx, c)
			if errors.Is(err, ErrRestart) || (err != nil && !s.Started()) {
				// A speaker that cannot start (its address cannot be
				// listened on) ends, for its agent to say why and retry.
				return err
			}
			ev := bgp.Event{Ready: true}
			if err != nil {
				log.Warn("bgp configuration partly applied", "err", err)
				ev.Error = err.Error()
			}
			emit(ev)
		}
		mu.Lock()
		err := werr
		mu.Unlock()
		if err != nil {
			return err
		}
	}
}
