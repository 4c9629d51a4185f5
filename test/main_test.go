package test

import (
	"os"
	"testing"

	"nicproxy/test/e2e"
)

// nicproxyBinary is the nicproxy command built once for the end-to-end tests, which
// run it as users do: as a process, inside the lab's host namespace.
var nicproxyBinary string

func TestMain(m *testing.M) { os.Exit(e2e.Main(m, &nicproxyBinary)) }
