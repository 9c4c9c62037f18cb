package flowstate

// Range calls fn for each entry until fn returns false, holding the read
// lock: fn must not call back into the table. The agent uses it to save the
// state it keeps across restarts.
func (t *Table[K, V]) Range(fn func(K, V) bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for k, e := range t.m {
		if !fn(k, e.value) {
			return
		}
	}
}
