package websocket

import (
	"fmt"
	"testing"

	"github.com/warrenhq/warren/internal/testutil"
)

// TestCloseDetailOfPeerCodes: the engine's close details (a metric series
// each) keep standard codes and the server's own, while the codes a peer
// picks from 3000–4999 count by range.
func TestCloseDetailOfPeerCodes(t *testing.T) {
	rec := newRecorder(false)
	srv := startServer(t, Config{}, rec)
	for _, code := range []uint16{4321, 4999, 3005, 1001} {
		c := dialRaw(t, srv.addr)
		rec.next(t, "open")
		c.send(OpClose, true, AppendClosePayload(nil, code, ""))
		c.expectClose()
		c.expectEOF()
		if ev := rec.next(t, "close"); ev.code != code {
			t.Fatalf("OnClose got code %d, want the peer's exact %d", ev.code, code)
		}
	}
	c := dialRaw(t, srv.addr)
	rec.next(t, "open").conn.Close(4001, "")
	c.expectClose()
	c.send(OpClose, true, AppendClosePayload(nil, 4001, ""))
	c.expectEOF()
	rec.next(t, "close")
	want := map[string]uint64{"peer_closed/4xxx": 2, "peer_closed/3xxx": 1, "peer_closed/1001": 1, "local/4001": 1}
	testutil.Eventually(t, 0, "the close details", func() bool {
		got := map[string]uint64{}
		for _, d := range srv.http.Engine().Stats().Details {
			if d.Protocol == "websocket" {
				got[d.Reason.String()+"/"+d.Detail] += d.Count
			}
		}
		return fmt.Sprint(got) == fmt.Sprint(want)
	})
}
