package classifier

import (
	"unsafe"

	"github.com/midonet/midonet/internal/packet"
)

// keyWords is FlowKey's size in 32-bit words.
const keyWords = unsafe.Sizeof(packet.FlowKey{}) / 4

// FlowKey must be a whole number of 32-bit words with 32-bit alignment for
// maskKey's word view; this fails to compile otherwise.
var (
	_ [0]struct{} = [unsafe.Sizeof(packet.FlowKey{}) % 4]struct{}{}
	_ [0]struct{} = [unsafe.Alignof(packet.FlowKey{}) % 4]struct{}{}
)

// maskKey returns k masked by m, like k.Masked(m) but a word at a time:
// the hot loop of a tuple-space search runs it once per subtable, and the
// field-by-field version is several times slower. Padding bytes come out
// as the AND of the inputs' padding; map hashing and == ignore padding.
// TODO(datapath): drop this if packet.FlowKey.Masked gets as fast.
func maskKey(k, m *packet.FlowKey) packet.FlowKey {
	var r packet.FlowKey
	kw := (*[keyWords]uint32)(unsafe.Pointer(k))
	mw := (*[keyWords]uint32)(unsafe.Pointer(m))
	rw := (*[keyWords]uint32)(unsafe.Pointer(&r))
	for i := range rw {
		rw[i] = kw[i] & mw[i]
	}
	return r
}
