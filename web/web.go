// Package web holds the browser UI that the gateway serves. It is a Go
// package only so that go:embed can put the files into the gateway binary.
package web

import "embed"

// Files holds everything under static/.
//
//go:embed static
var Files embed.FS
