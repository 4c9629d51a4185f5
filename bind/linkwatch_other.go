//go:build !linux

package bind

import "context"

// LinkWatcher answers Links by asking the kernel on every call: only Linux
// has the link notifications that let it answer from memory.
type LinkWatcher struct{ SystemLinks }

// NewLinkWatcher returns a watcher that asks the kernel each time.
func NewLinkWatcher() (*LinkWatcher, error) { return &LinkWatcher{}, nil }

// Run waits for ctx to end: there is nothing to follow.
func (w *LinkWatcher) Run(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}
