//go:build !linux

package main

import "os"

// isTerminal reports whether f looks like a terminal. Off Linux we settle
// for "a character device", which /dev/null also is; NO_COLOR covers that.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
