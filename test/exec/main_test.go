package exectest

import (
	"os"
	"testing"

	"nicproxy/test/e2e"
)

// nicproxyBinary is the nicproxy command built once for this package's
// tests, which run it as users do (e2e.Main).
var nicproxyBinary string

func TestMain(m *testing.M) { os.Exit(e2e.Main(m, &nicproxyBinary)) }
