package main

import (
	"os"
	"os/signal"
	"syscall"
)

// holdSIGHUP keeps a SIGHUP from ending a server before it watches for
// one. The servers reload their TLS certificate on SIGHUP
// (tlsx.Server.Watch), and a prefork parent passes its SIGHUPs on to
// workers that may still be starting; without this, a SIGHUP that arrives
// between the process's start and Watch ends the process (the Go runtime's
// default). Until Watch runs, such a SIGHUP is received here and dropped;
// after, Watch receives it as well. A server without TLS ignores SIGHUP.
func holdSIGHUP() { signal.Notify(make(chan os.Signal, 1), syscall.SIGHUP) }

// holdsSIGHUP reports whether subcommand cmd is a server that holds
// SIGHUP from its start.
func holdsSIGHUP(cmd string) bool { return cmd == "serve" || cmd == "echo" || cmd == "proxy" }
