// Command hello is a child process for the kit's own tests: it prints a
// line and waits for SIGTERM, then exits 0.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	fmt.Println("hello", os.Getenv("HELLO_NAME"))
	<-sig
	fmt.Println("bye")
}
