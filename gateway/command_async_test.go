package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// TestCommandsHoldNoWorker: commands waiting for acks hold no worker. With
// two workers and twenty commands waiting, the API still answers: had each
// command kept a worker until its ack, the GET below would wait for their
// timeouts (30 s), and the commands would no longer all be pending.
func TestCommandsHoldNoWorker(t *testing.T) {
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog(), Workers: 2})
	g, err := New(e, Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: "n1", Logger: quietLog(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	d := connect(t, g, "dev-w")
	const n = 20
	client := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: n}}
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Post("http://"+g.APIAddr()+"/v1/devices/dev-w/commands", "application/json",
				strings.NewReader(`{"name":"slow","timeout":"30s"}`))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	testutil.Eventually(t, 0, "every command waiting for its ack", func() bool { return g.Hub().Pending() == n })
	resp, err := client.Get("http://" + g.APIAddr() + "/v1/devices/dev-w")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET while commands wait: %d", resp.StatusCode)
	}
	if p := g.Hub().Pending(); p != n {
		t.Fatalf("the GET was answered once %d of %d commands had ended: the commands held the workers", n-p, n)
	}
	for range n {
		d.answer("ok", `{}`)
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("command answered %d after its ack", c)
		}
	}
}

// TestCommandClientGone: a client that leaves while its command waits ends
// the wait; the API's request is finished and nothing stays detached.
func TestCommandClientGone(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	d := connect(t, g, "dev-g")
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+g.APIAddr()+"/v1/devices/dev-g/commands",
		strings.NewReader(`{"name":"x","timeout":"30s"}`))
	errc := make(chan error, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	d.read() // the command reached the device
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
	testutil.Eventually(t, 0, "the API's request finished", func() bool {
		return g.apiSrv.Stats().Detached == 0
	})
}

// TestRequester: answers, no responders, timeouts, the bound, cancel and
// close of the hub's reply subscription.
func TestRequester(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	nc := natsConn(t, g)
	nc.Subscribe("svc.echo", func(m *nats.Msg) { m.Respond(append([]byte("re:"), m.Data...)) })
	nc.Flush()
	r, err := newRequester(g.Bus().Conn(), 2)
	if err != nil {
		t.Fatal(err)
	}
	type res struct {
		m   *nats.Msg
		err error
	}
	ask := func(subj string, timeout time.Duration) (chan res, func(), error) {
		ch := make(chan res, 1)
		cancel, err := r.request(subj, []byte("hi"), timeout, func(m *nats.Msg, err error) { ch <- res{m, err} })
		return ch, cancel, err
	}
	ch, _, err := ask("svc.echo", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-ch; got.err != nil || string(got.m.Data) != "re:hi" {
		t.Fatalf("answer %v", got)
	}
	ch, _, _ = ask("svc.nobody", 10*time.Second)
	if got := <-ch; !errors.Is(got.err, nats.ErrNoResponders) {
		t.Fatalf("no responders: %v", got.err)
	}
	nc.Subscribe("svc.silent", func(*nats.Msg) {})
	nc.Flush()
	ch, _, _ = ask("svc.silent", 50*time.Millisecond)
	if got := <-ch; !errors.Is(got.err, nats.ErrTimeout) {
		t.Fatalf("timeout: %v", got.err)
	}
	// Two waiting fill the bound; cancel frees a place.
	ch1, cancel1, _ := ask("svc.silent", time.Minute)
	ch2, _, _ := ask("svc.silent", time.Minute)
	if _, _, err := ask("svc.silent", time.Minute); !errors.Is(err, ErrTooManyPending) {
		t.Fatalf("over the bound: %v", err)
	}
	cancel1()
	ch3, _, err := ask("svc.silent", time.Minute)
	if err != nil {
		t.Fatalf("after cancel: %v", err)
	}
	r.close()
	for i, ch := range []chan res{ch2, ch3} {
		if got := <-ch; !errors.Is(got.err, nats.ErrConnectionClosed) {
			t.Fatalf("waiting %d at close: %v", i, got.err)
		}
	}
	select {
	case got := <-ch1:
		t.Fatalf("a cancelled request was answered: %v", got)
	default:
	}
	if _, _, err := ask("svc.echo", time.Second); err == nil {
		t.Fatal("a request after close was sent")
	}
}
