//go:build leak_cgo

// Built in with `-tags leak_cgo`: a call into C makes the Go toolchain link
// the program with the C linker, so it has an .eh_frame for its C code and
// none for its Go code, as Go programs that use cgo have.
package main

// #include <unistd.h>
import "C"

func init() { _ = C.getpid() }
