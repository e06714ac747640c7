//go:build !windows

package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// apiAs sends one request to a management API with a bearer token (none
// when empty) and returns the status and JSON answer; err is the
// transport's error.
func apiAs(method, url, token, body string) (int, map[string]any, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := apiClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m, nil
}

// TestServePreforkAPI: `warren serve -procs 2 -api-token T` serves the
// management API in the prefork parent, from the machine's directory:
// commands reach devices on either worker, an offline device is 404, a
// request without the token 401; lookups, the paged list and a broadcast
// are answered there; the parent's /metrics carries the API's command
// metrics (worker="parent"); on SIGTERM a command in flight still gets
// its answer.
func TestServePreforkAPI(t *testing.T) {
	const tok = "api-s3cret"
	data := t.TempDir()
	n := startServe(t, "pa", data, "-procs", "2", "-api-token", tok, "-command-timeout", "2s", "-drain-timeout", "3s")
	n.waitOutput(t, 5*time.Second, "management API in the prefork parent")
	waitWorkers(t, n)
	api := "http://" + n.api
	do := func(method, path, body string) (int, map[string]any) {
		t.Helper()
		code, m, err := apiAs(method, api+path, tok, body)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return code, m
	}

	// Devices until each worker holds at least one.
	perNode := map[string][]string{}
	var ids []string
	for i := 0; i < 32 && len(perNode) < 2; i++ {
		id := fmt.Sprintf("pa-%02d", i)
		dialDevice(t, n.addr, id, deviceToken(t, data, id)).answer()
		var node string
		eventually(t, 10*time.Second, id+" in the directory", func() bool {
			code, m := do("GET", "/v1/devices/"+id, "")
			node, _ = m["node"].(string)
			return code == 200 && node != "" && m["state"] == "online"
		})
		perNode[node] = append(perNode[node], id)
		ids = append(ids, id)
	}
	if len(perNode["pa-0"]) == 0 || len(perNode["pa-1"]) == 0 {
		t.Fatalf("devices per worker: %v, want some on pa-0 and pa-1", perNode)
	}

	// Commands to a device on either worker.
	for node, devs := range perNode {
		id := devs[0]
		if code, m := do("POST", "/v1/devices/"+id+"/commands", `{"name":"blink"}`); code != 200 || m["status"] != "ok" ||
			fmt.Sprint(m["result"]) != "map[device:"+id+" name:blink]" {
			t.Fatalf("command to %s on %s: %d %v", id, node, code, m)
		}
	}
	if code, m := do("POST", "/v1/devices/nobody/commands", `{"name":"blink"}`); code != 404 || m["error"] != "offline" {
		t.Fatalf("command to an offline device: %d %v", code, m)
	}
	if code, m := do("POST", "/v1/devices/"+ids[0]+"/commands", `not json`); code != 400 {
		t.Fatalf("command with a bad body: %d %v", code, m)
	}
	for _, r := range []struct{ method, path, body string }{
		{"POST", "/v1/devices/" + ids[0] + "/commands", `{"name":"blink"}`},
		{"GET", "/v1/devices/" + ids[0], ""}, {"GET", "/v1/devices", ""}, {"POST", "/v1/broadcast", `{"name":"x","prefix":"pa-"}`},
	} {
		if code, m, err := apiAs(r.method, api+r.path, "", r.body); err != nil || code != 401 || m["error"] != "unauthorized" {
			t.Fatalf("%s %s without the token: %d %v %v", r.method, r.path, code, m, err)
		}
	}

	// Lookups and the list, cluster-wide, from the parent's directory.
	if code, m := do("GET", "/v1/devices/nobody", ""); code != 404 {
		t.Fatalf("GET an unknown device: %d %v", code, m)
	}
	var listed []string
	cursor := ""
	for range len(ids) + 1 {
		code, m := do("GET", "/v1/devices?state=online&prefix=pa-&limit=2&cursor="+cursor, "")
		if code != 200 {
			t.Fatalf("list: %d %v", code, m)
		}
		for _, d := range m["devices"].([]any) {
			listed = append(listed, d.(map[string]any)["device"].(string))
		}
		if cursor, _ = m["next_cursor"].(string); cursor == "" {
			break
		}
	}
	if strings.Join(listed, " ") != strings.Join(ids, " ") {
		t.Fatalf("list: %v, want %v", listed, ids)
	}

	// A broadcast by prefix: every device, on both workers.
	if code, m := do("POST", "/v1/broadcast", `{"name":"fw","prefix":"pa-"}`); code != 202 || m["sent"] != float64(len(ids)) {
		t.Fatalf("broadcast: %d %v, want %d sent", code, m, len(ids))
	}

	// The API's metrics are the parent's own, in the merged scrape.
	eventually(t, 10*time.Second, "the parent's command metrics", func() bool {
		ok := parentSample(t, n.admin, `warren_gateway_commands_total{outcome="ok",worker="parent"}`)
		off := parentSample(t, n.admin, `warren_gateway_commands_total{outcome="offline",worker="parent"}`)
		rtt := parentSample(t, n.admin, `warren_gateway_command_duration_seconds_count{worker="parent"}`)
		sent := parentSample(t, n.admin, `warren_gateway_broadcast_total{result="sent",worker="parent"}`)
		return ok == 2 && off == 1 && rtt == 2 && sent == float64(len(ids))
	})

	// A device that acks late: its command is in flight when SIGTERM
	// arrives, and still gets an HTTP answer (the ack, or 504 if the
	// worker's drain closed the device first), not a reset connection.
	slow := "pa-slow"
	sd := dialDevice(t, n.addr, slow, deviceToken(t, data, slow))
	delivered := make(chan struct{})
	go func() {
		_, b, err := sd.c.ReadMessage()
		if err != nil {
			return
		}
		close(delivered)
		var f struct{ ID string }
		json.Unmarshal(b, &f)
		time.Sleep(300 * time.Millisecond)
		sd.c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"ack","id":"`+f.ID+`","status":"ok","result":"late"}`))
		for {
			if _, _, err := sd.c.ReadMessage(); err != nil {
				return
			}
		}
	}()
	eventually(t, 10*time.Second, slow+" in the directory", func() bool {
		code, _ := do("GET", "/v1/devices/"+slow, "")
		return code == 200
	})
	type answer struct {
		code int
		body map[string]any
		err  error
	}
	inFlight := make(chan answer, 1)
	go func() {
		code, m, err := apiAs("POST", api+"/v1/devices/"+slow+"/commands", tok, `{"name":"slow"}`)
		inFlight <- answer{code, m, err}
	}()
	// SIGTERM once the device has the command, so that it is in flight
	// however long a loaded machine takes to pass it on (a fixed sleep
	// could signal before the API had the request).
	select {
	case <-delivered:
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not reach " + slow + " in 10 s")
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case a := <-inFlight:
		if a.err != nil || (a.code != 200 && a.code != 504) {
			t.Errorf("command in flight during the drain: %d %v %v, want 200 or 504", a.code, a.body, a.err)
		}
		t.Logf("command in flight during the drain: %d %v", a.code, a.body)
	case <-time.After(10 * time.Second):
		t.Error("command in flight during the drain: no answer in 10 s")
	}
	if err := n.wait(t, 15*time.Second); err != nil {
		t.Errorf("serve -procs 2 exit: %v", err)
	}
}

// parentSample returns the value of the sample named exactly series
// (labels included) in a prefork parent's merged /metrics, or -1.
func parentSample(t *testing.T, admin, series string) float64 {
	t.Helper()
	resp, err := apiClient.Get("http://" + admin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 32<<10)
	for {
		k, err := resp.Body.Read(buf)
		b.Write(buf[:k])
		if err != nil {
			break
		}
	}
	for _, line := range strings.Split(b.String(), "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v
			}
		}
	}
	return -1
}

// TestServePreforkExternalNATS: a `warren serve -procs 2` machine and a
// plain node on a standalone nats-server (-nats): the prefork parent's
// directory is a client of that NATS and follows the whole cluster, so
// its API sends a command to a device on the other machine, and the other
// node's API reaches a device on one of the prefork workers.
func TestServePreforkExternalNATS(t *testing.T) {
	url := startNATSServer(t)
	secret := []byte("external-nats-prefork-secret-0123456789")
	pf := startServe(t, "pfx", t.TempDir(), "-procs", "2", "-nats", url, "-jwt-secret", string(secret))
	solo := startServe(t, "solo", t.TempDir(), "-nats", url, "-jwt-secret", string(secret))
	pf.waitOutput(t, 5*time.Second, "management API in the prefork parent")
	waitMesh(t, []string{url}, "pfx", "pfx-0", "pfx-1", "solo")
	t.Cleanup(func() {
		// The workers die with the parent (PR_SET_PDEATHSIG on Linux);
		// make sure, killing only a pid that still runs our binary.
		resp, err := apiClient.Get("http://" + pf.admin + "/workers")
		if err != nil {
			return
		}
		defer resp.Body.Close()
		var ws []struct {
			PID int `json:"pid"`
		}
		json.NewDecoder(resp.Body).Decode(&ws)
		for _, w := range ws {
			if workerRunning(t, w.PID) {
				syscall.Kill(w.PID, syscall.SIGKILL)
			}
		}
	})

	far := dialDevice(t, solo.addr, "far", secretToken(t, secret, "far"))
	far.answer()
	near := dialDevice(t, pf.addr, "near", secretToken(t, secret, "near"))
	near.answer()
	pf.waitDevice(t, 10*time.Second, "far", "solo")
	eventually(t, 10*time.Second, "near on a prefork worker, seen from solo", func() bool {
		code, m := solo.device(t, "near")
		node, _ := m["node"].(string)
		return code == 200 && strings.HasPrefix(node, "pfx-")
	})
	if code, m := pf.command(t, "far", `{"name":"ping"}`); code != 200 || fmt.Sprint(m["result"]) != "map[device:far name:ping]" {
		t.Errorf("command from the prefork parent's API to a device on another machine: %d %v", code, m)
	}
	if code, m := solo.command(t, "near", `{"name":"ping"}`); code != 200 || fmt.Sprint(m["result"]) != "map[device:near name:ping]" {
		t.Errorf("command from another machine to a device on a prefork worker: %d %v", code, m)
	}
	if code, m := pf.command(t, "nobody", `{"name":"ping"}`); code != 404 {
		t.Errorf("command to an offline device through the prefork parent: %d %v", code, m)
	}
}

// TestServePreforkDebugConns: the prefork parent's admin answers
// /debug/conns (before, 404) from its workers': devices found by prefix=
// and device= whichever worker holds them, each with its worker, paged
// with offset and limit across the workers, one worker's list with
// worker=N and its cursor; a bad query is the workers' 400.
func TestServePreforkDebugConns(t *testing.T) {
	data := t.TempDir()
	n := startServe(t, "pc", data, "-procs", "2")
	waitWorkers(t, n)
	const devices = 8
	for i := range devices {
		id := fmt.Sprintf("pc-%02d", i)
		dialDevice(t, n.addr, id, deviceToken(t, data, id)).answer()
	}
	type conn struct {
		Worker   int    `json:"worker"`
		ID       uint64 `json:"id"`
		Label    string `json:"label"`
		Protocol string `json:"protocol"`
	}
	type list struct {
		Total      int    `json:"total"`
		NextCursor string `json:"next_cursor"`
		Conns      []conn `json:"conns"`
	}
	get := func(q string) (int, list) {
		t.Helper()
		resp, err := apiClient.Get("http://" + n.admin + "/debug/conns?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l list
		json.NewDecoder(resp.Body).Decode(&l)
		return resp.StatusCode, l
	}
	var all list
	eventually(t, 10*time.Second, "every device listed", func() bool {
		code, l := get("prefix=pc-&limit=100")
		all = l
		return code == 200 && l.Total == devices
	})
	seen, workers := map[string]bool{}, map[int]int{}
	for _, c := range all.Conns {
		if c.Protocol != "websocket" || seen[c.Label] {
			t.Fatalf("listed %+v", all.Conns)
		}
		seen[c.Label] = true
		workers[c.Worker]++
	}
	if code, l := get("device=pc-03"); code != 200 || l.Total != 1 || l.Conns[0].Label != "pc-03" {
		t.Fatalf("device=pc-03: %d %+v", code, l)
	}
	if code, l := get("prefix=pc-&offset=2&limit=3"); code != 200 || l.Total != devices || len(l.Conns) != 3 ||
		l.Conns[0] != all.Conns[2] || l.Conns[2] != all.Conns[4] {
		t.Fatalf("a page across the workers: %d %+v, want 3 from the 3rd of %+v", code, l, all.Conns)
	}
	for w, held := range workers {
		code, l := get(fmt.Sprintf("prefix=pc-&worker=%d&limit=1", w))
		if code != 200 || l.Total != held || len(l.Conns) != 1 || l.Conns[0].Worker != w || (held > 1) != (l.NextCursor != "") {
			t.Fatalf("worker=%d (%d devices): %d %+v", w, held, code, l)
		}
		if held > 1 {
			if code, l2 := get(fmt.Sprintf("prefix=pc-&worker=%d&limit=1&cursor=%s", w, l.NextCursor)); code != 200 ||
				l2.Total != held-1 || l2.Conns[0].ID <= l.Conns[0].ID {
				t.Fatalf("worker=%d cursor %s: %d %+v", w, l.NextCursor, code, l2)
			}
		}
	}
	for _, q := range []string{"state=bogus", "cursor=5", "worker=9", "offset=9999&limit=2"} {
		if code, _ := get(q); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
}
