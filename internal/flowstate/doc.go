// Package flowstate holds the connection-tracking and NAT state that the
// simulation reads and writes, and the binary message that replicates it to
// the agents that may see a connection's return traffic.
//
// State is kept in per-worker shards: a worker writes only its own shard and
// reads its own first, falling back to the others, because a NATed
// connection's return traffic may hash to another worker. Entries are
// reference-counted by the flows that created or used them; an entry whose
// count drops to zero lives for its idle TTL and is then expired. Keys
// imported from peers are inserted with a count of zero ("touched"), so they
// idle out unless refreshed. Time is always an argument: the package never
// reads the clock.
//
// SNATLeases (snat.go) holds the SNAT port blocks a host leased from the
// store, which the simulation allocates translated source ports from, and
// counts the reverse SNAT keys of each block so that the agent knows when
// to lease the next and when to give one back; the leasing itself is the
// agent's.
package flowstate
