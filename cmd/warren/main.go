// Command warren runs warren's servers and tools.
//
//	warren echo  -addr HOST:PORT [flags]   benchmark echo server
//	warren load  -url URL [flags]          load generator
//	warren serve ...                       device gateway (coming)
//
// Every subcommand lists its flags, with defaults, under -h.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "echo":
		return runEcho(args[1:], stdout, stderr)
	case "load":
		return runLoad(args[1:], stdout, stderr)
	case "token":
		return runToken(args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		usage(stdout)
		return 0
	default:
		fmt.Fprintf(stderr, "warren: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: warren <command> [flags]

commands:
  echo    benchmark echo server (TCP echo; HTTP and WebSocket as they land)
  load    load generator: HTTP/WebSocket connections, hold, open/closed-loop traffic, report

Run 'warren <command> -h' for a command's flags and their defaults.
`)
}
