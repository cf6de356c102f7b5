//go:build !linux

package testkit

import "os/exec"

// dieWithParent needs Linux's parent-death signal; elsewhere the test's
// cleanup is what stops the process.
func dieWithParent(*exec.Cmd) {}
