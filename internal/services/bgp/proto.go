package bgp

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"time"

	"github.com/midonet/midonet/internal/topology"
)

// The agent and a port's speaker process talk over the speaker's standard
// input and output, one JSON document a line: the agent sends the whole
// SpeakerConfig whenever it changes and the speaker applies the difference;
// the speaker sends Events. A pipe crosses network namespaces, and its end
// tells the speaker that its agent is gone.

// SpeakerConfig is everything one port's speaker is to do.
type SpeakerConfig struct {
	// RouterID is the BGP identifier: the port's address, which is also
	// the address the speaker listens on and connects from.
	RouterID netip.Addr `json:"routerId"`
	// LocalAS is the router's AS number.
	LocalAS uint32 `json:"localAs"`
	// Peers are the router's BGP peers reachable through the port.
	Peers []PeerConfig `json:"peers"`
	// Networks are the prefixes the router announces.
	Networks []netip.Prefix `json:"networks"`
}

// PeerConfig is one BGP neighbour.
type PeerConfig struct {
	ID           topology.ID   `json:"id"`
	Address      netip.Addr    `json:"address"`
	AS           uint32        `json:"as"`
	KeepAlive    time.Duration `json:"keepAlive"`
	HoldTime     time.Duration `json:"holdTime"`
	ConnectRetry time.Duration `json:"connectRetry"`
	Password     string        `json:"password,omitempty"`
}

// MidoNet's defaults for peers that leave their timers unset.
const (
	DefaultKeepAlive    = 60 * time.Second
	DefaultHoldTime     = 180 * time.Second
	DefaultConnectRetry = 120 * time.Second
)

// Equal reports whether two configurations are the same.
func (c SpeakerConfig) Equal(o SpeakerConfig) bool {
	return c.RouterID == o.RouterID && c.LocalAS == o.LocalAS &&
		slices.Equal(c.Peers, o.Peers) && slices.Equal(c.Networks, o.Networks)
}

// SessionState is a BGP session's state (RFC 4271 §8.2.2).
type SessionState string

// Session states.
const (
	StateIdle        SessionState = "Idle"
	StateConnect     SessionState = "Connect"
	StateActive      SessionState = "Active"
	StateOpenSent    SessionState = "OpenSent"
	StateOpenConfirm SessionState = "OpenConfirm"
	StateEstablished SessionState = "Established"
)

// PeerStatus is what a speaker reports of one session.
type PeerStatus struct {
	Address netip.Addr   `json:"address"`
	AS      uint32       `json:"as"`
	State   SessionState `json:"state"`
	// Since is when the session entered State.
	Since time.Time `json:"since"`
	// Reason says why an established session went down, when it did.
	Reason string `json:"reason,omitempty"`
}

// Path is a change of the best paths to a prefix: a path learned from Peer
// (the BGP speaker the route came from) to Prefix via NextHop, or its
// withdrawal.
type Path struct {
	Prefix   netip.Prefix `json:"p"`
	Peer     netip.Addr   `json:"f"`
	NextHop  netip.Addr   `json:"n,omitzero"`
	Withdraw bool         `json:"w,omitempty"`
	// Internal marks a path learned over iBGP (the peer is in the
	// router's AS): it ranks below eBGP paths, as Quagga's distances did.
	Internal bool `json:"i,omitempty"`
}

// Event is one message from a speaker.
type Event struct {
	// Ready: the speaker applied the configuration it was last sent, or
	// (Error set) refused it.
	Ready bool `json:"ready,omitempty"`
	// Error says what the speaker could not do.
	Error string `json:"error,omitempty"`
	// Peer is a session's new state.
	Peer *PeerStatus `json:"peer,omitempty"`
	// Paths are best-path changes, in order.
	Paths []Path `json:"paths,omitempty"`
}

// maxLine bounds one message: a batch of paths is split well below it.
const maxLine = 16 << 20

// Encoder writes messages, one a line.
type Encoder struct{ enc *json.Encoder }

// NewEncoder writes messages to w.
func NewEncoder(w io.Writer) *Encoder { return &Encoder{enc: json.NewEncoder(w)} }

// Encode writes one message.
func (e *Encoder) Encode(v any) error { return e.enc.Encode(v) }

// Decoder reads messages, one a line.
type Decoder struct{ sc *bufio.Scanner }

// NewDecoder reads messages from r.
func NewDecoder(r io.Reader) *Decoder {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	return &Decoder{sc: sc}
}

// Decode reads the next message into v; io.EOF at the end.
func (d *Decoder) Decode(v any) error {
	for d.sc.Scan() {
		line := d.sc.Bytes()
		if len(line) == 0 {
			continue
		}
		if err := json.Unmarshal(line, v); err != nil {
			return fmt.Errorf("bgp: bad message %.80q: %w", line, err)
		}
		return nil
	}
	if err := d.sc.Err(); err != nil {
		return err
	}
	return io.EOF
}
