//go:build !linux

package bind

// OnChange does nothing here: without link notifications, no change is
// seen as it happens.
func (w *LinkWatcher) OnChange(func(LinkChange)) {}
