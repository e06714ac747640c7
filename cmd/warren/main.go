// Command warren runs warren's servers and tools.
//
//	warren serve [flags]                  the device gateway
//	warren token -device ID [flags]       a device token signed with the gateway's secret
//	warren proxy -listen HOST:PORT -upstream URL,...   reverse proxy
//	warren echo -addr HOST:PORT [flags]   benchmark echo server
//	warren load -url URL [flags]          load generator
//
// warren serve holds device connections (WebSocket at GET /v1/connect),
// publishes their telemetry and presence on NATS (an embedded server, or a
// cluster with -nats), and delivers commands from its management API with
// the devices' acknowledgements.
//
// warren echo serves HTTP/1.1 by default: GET / (on the event loop),
// GET /delay?ms=N (on the worker pool), POST /upload (a streamed body of
// any size, answered with its length and SHA-256) and GET /ws (a WebSocket
// echo), all on one engine; -proto tcp makes it a raw TCP echo instead.
// It runs with the admin listener (metrics, /debug/conns, pprof), drains
// on SIGTERM or SIGINT, and with -procs N runs N worker processes sharing
// the port under a supervising parent.
//
// Every subcommand lists its flags, with defaults, under -h.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	if len(os.Args) > 1 && holdsSIGHUP(os.Args[1]) {
		holdSIGHUP()
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "serve":
		return runServe(args[1:], stdout, stderr)
	case "echo":
		return runEcho(args[1:], stdout, stderr)
	case "proxy":
		return runProxy(args[1:], stdout, stderr)
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
  serve   the device gateway: devices over WebSocket, telemetry and presence on NATS, commands with acks
  token   print a device token signed with the gateway's secret (-device ID [-ttl 24h] [-role device|service])
  proxy   reverse proxy: -listen HOST:PORT -upstream http://h1:p,http://h2:p (pools, health, breakers, retries)
  echo    benchmark echo server: HTTP/1.1 and WebSocket (GET /ws), or raw TCP with -proto tcp
  load    load generator: HTTP/WebSocket connections, hold, open/closed-loop traffic, report; -scenario devices for serve

Run 'warren <command> -h' for a command's flags and their defaults.
`)
}
