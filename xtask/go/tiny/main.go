// Command tiny is the one static binary behind the node's two small images. Its behaviour follows
// the name it is started as (or its first argument):
//
//   - pause: the pod sandbox. Holds the pod's namespaces, reaps zombies and exits on SIGINT/SIGTERM.
//   - printenv: the user's-guide application. Prints its environment (sorted, one KEY=value a line)
//     to stdout, then sleeps until SIGINT/SIGTERM, so `kubectl logs` shows what the pod was given.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
)

func main() {
	mode := filepath.Base(os.Args[0])
	if len(os.Args) > 1 && (os.Args[1] == "pause" || os.Args[1] == "printenv") {
		mode = os.Args[1]
	}
	switch mode {
	case "printenv":
		env := os.Environ()
		sort.Strings(env)
		for _, kv := range env {
			fmt.Println(kv)
		}
		wait()
	case "pause":
		wait()
	default:
		fmt.Fprintf(os.Stderr, "tiny: unknown mode %q (pause, printenv)\n", mode)
		os.Exit(2)
	}
}

// wait blocks until SIGINT or SIGTERM, reaping children (as PID 1 of a sandbox must).
func wait() {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s == syscall.SIGCHLD {
			for {
				var ws syscall.WaitStatus
				pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
			continue
		}
		os.Exit(0)
	}
}
