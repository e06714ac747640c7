package engine

import (
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
)

// TestReasonForNet maps errors as Go's net package wraps them.
func TestReasonForNet(t *testing.T) {
	op := func(errno syscall.Errno) error {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", errno)}
	}
	for _, tc := range []struct {
		err  error
		want CloseReason
	}{
		{io.EOF, ReasonPeerClosed},
		{fmt.Errorf("wrapped: %w", io.EOF), ReasonPeerClosed},
		{op(syscall.ECONNRESET), ReasonPeerReset},
		{op(syscall.EPIPE), ReasonPeerReset},
		{&net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}, ReasonIOError},
		{op(syscall.EINVAL), ReasonIOError},
		{net.ErrClosed, ReasonIOError},
	} {
		if got := reasonForNet(tc.err); got != tc.want {
			t.Errorf("reasonForNet(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// TestReasonForNetReset resets a real connection on the platform's stack:
// the reader sees the peer reset, whatever code the platform uses.
func TestReasonForNetReset(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	client.(*net.TCPConn).SetLinger(0) // close with RST
	client.Close()
	_, err = server.Read(make([]byte, 1))
	if got := reasonForNet(err); got != ReasonPeerReset {
		t.Fatalf("reasonForNet(%v) = %v, want %v", err, got, ReasonPeerReset)
	}
}
