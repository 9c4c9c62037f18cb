package bgp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// SpeakerCommandName is the hidden subcommand of the midonet binary that
// runs a speaker process (speaker.Main).
const SpeakerCommandName = "bgp-speaker"

// DefaultSpeakerCommand runs this executable's speaker subcommand.
func DefaultSpeakerCommand() ([]string, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bgp: find this executable to run speakers: %w", err)
	}
	return []string{exe, SpeakerCommandName}, nil
}

// Process is a speaker process running in a port's namespace.
type Process struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	enc    *Encoder
	events chan Event
	done   chan struct{} // closed when the process has exited
	err    error         // why it exited; valid once done is closed

	stopping chan struct{} // closed by Stop: events are dropped from then on
	stopOnce sync.Once
}

// StartProcess starts command inside ns. The process ends when its input
// is closed (Stop, or the agent's death), and is killed if the thread that
// started it exits.
func StartProcess(ns *Namespace, command []string, log *slog.Logger) (*Process, error) {
	if len(command) == 0 {
		return nil, errors.New("bgp: no speaker command")
	}
	cmd := exec.Command(command[0], command[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stderr = &logWriter{log: log}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := ns.Start(cmd); err != nil {
		stdin.Close()
		stdout.Close()
		return nil, fmt.Errorf("bgp: start speaker %q: %w", command, err)
	}
	p := &Process{cmd: cmd, stdin: stdin, enc: NewEncoder(stdin), events: make(chan Event, 64), done: make(chan struct{}),
		stopping: make(chan struct{})}
	go func() {
		dec := NewDecoder(stdout)
		var derr error
		for {
			var e Event
			if derr = dec.Decode(&e); derr != nil {
				break
			}
			select {
			case p.events <- e:
			case <-p.stopping:
			}
		}
		close(p.events)
		err := cmd.Wait()
		if err == nil && !errors.Is(derr, io.EOF) {
			err = derr
		}
		p.err = err
		close(p.done)
	}()
	return p, nil
}

// Pid is the process's id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Send sends the speaker its whole configuration.
func (p *Process) Send(cfg SpeakerConfig) error {
	if err := p.enc.Encode(cfg); err != nil {
		return fmt.Errorf("bgp: configure speaker %d: %w", p.Pid(), err)
	}
	return nil
}

// Events delivers what the speaker reports, and is closed when it exits.
func (p *Process) Events() <-chan Event { return p.events }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err says why the process exited, once Done is closed.
func (p *Process) Err() error { return p.err }

// stopTimeout bounds how long a speaker may take to close its sessions.
const stopTimeout = 3 * time.Second

// Stop asks the speaker to end (closing its sessions with a notification),
// kills it if it does not within a few seconds, and waits for it.
func (p *Process) Stop() {
	p.stopOnce.Do(func() {
		close(p.stopping)
		p.stdin.Close()
		t := time.NewTimer(stopTimeout)
		defer t.Stop()
		select {
		case <-p.done:
		case <-t.C:
			p.cmd.Process.Kill()
			<-p.done
		}
	})
}

// logWriter logs a speaker's standard error, line by line.
type logWriter struct {
	log *slog.Logger
	mu  sync.Mutex
	buf []byte
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.log.Info("speaker: " + string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 {
		w.log.Info("speaker: " + string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(b), nil
}
