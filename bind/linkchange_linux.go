package bind

// OnChange makes Run call fn for each NIC that appears, goes away or turns
// up or down (IFF_UP and IFF_RUNNING, as Link.Up), once Link answers the
// new state; changes of other attributes are not reported. fn runs on Run's
// goroutine, so it must not block. Call OnChange before Run.
func (w *LinkWatcher) OnChange(fn func(LinkChange)) { w.onChange = fn }

// report tells onChange about a notification that changed what matters.
func (w *LinkWatcher) report(before Link, existed bool, after Link, exists bool) {
	if w.onChange == nil || existed && exists && before.Up == after.Up && before.Name == after.Name {
		return
	}
	name := after.Name
	if !exists {
		name = before.Name
	}
	w.onChange(LinkChange{Name: name, Before: before, After: after, Existed: existed, Exists: exists})
}
