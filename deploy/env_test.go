package deploy

import (
	"os"
	"testing"
)

// unsetEnv removes key for the rest of the test (t.Setenv first, so that
// the testing package restores it).
func unsetEnv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "")
	os.Unsetenv(key)
}
