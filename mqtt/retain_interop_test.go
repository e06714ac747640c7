package mqtt

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestMosquittoRetainedQuota: mosquitto_pub, publishing a retained
// message past its client's bound at QoS 1 in 5.0, is told quota
// exceeded (it prints the PUBACK's reason); mosquitto_sub, subscribed
// already, does not get the refused message; a later mosquitto_sub gets
// only the message that was kept. In 3.1.1 the same publish succeeds for
// the client (no code), is delivered as a plain message and is counted.
func TestMosquittoRetainedQuota(t *testing.T) {
	sub := needTool(t, "mosquitto_sub")
	pub := needTool(t, "mosquitto_pub")
	b := startBroker(t, Config{MaxRetainedBytesPerClient: 400})
	host, port := hostPort(t, b.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var live bytes.Buffer
	s := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-t", "rq/#", "-C", "2", "-v", "-i", "live")
	s.Stdout, s.Stderr = &live, &live
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	b.waitStats(t, "subscribed", func(Stats) bool { return subscribed(b, "live") })
	body := strings.Repeat("k", 250) // 96 + 4 + 250 = 350 bytes: one fits in 400, two don't
	o, err := exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-r", "-i", "dev",
		"-t", "rq/a", "-m", body).CombinedOutput()
	if err != nil || len(o) != 0 {
		t.Fatalf("first retained publish: %v %q", err, o)
	}
	o, _ = exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-r", "-i", "dev",
		"-t", "rq/b", "-m", body).CombinedOutput()
	if !strings.Contains(strings.ToLower(string(o)), "quota exceeded") {
		t.Fatalf("mosquitto_pub past the client's bound said %q, want quota exceeded", o)
	}
	o, err = exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv5", "-q", "1", "-i", "dev",
		"-t", "rq/z", "-m", "next").CombinedOutput()
	if err != nil || len(o) != 0 {
		t.Fatalf("plain publish: %v %q", err, o)
	}
	if err := s.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v %s", err, live.String())
	}
	if want := "rq/a " + body + "\nrq/z next\n"; live.String() != want {
		t.Fatalf("the live subscriber got %q", live.String())
	}
	o, err = exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", "mqttv5", "-t", "rq/#", "-v", "-W", "1").CombinedOutput()
	if strings.TrimSuffix(string(o), "Timed out\n") != "rq/a "+body+"\n" { // -W ends it
		t.Fatalf("a later subscriber got %q (%v), want only rq/a", o, err)
	}
	o, err = exec.CommandContext(ctx, pub, "-h", host, "-p", port, "-V", "mqttv311", "-q", "1", "-r", "-i", "dev",
		"-t", "rq/c", "-m", body).CombinedOutput()
	if err != nil || len(o) != 0 {
		t.Fatalf("3.1.1 retained publish past the bound: %v %q", err, o)
	}
	if d := b.Stats().Dropped[DropRetainedClientFull]; d != 2 {
		t.Fatalf("retained_client_full = %d, want 2", d)
	}
}

// TestMosquittoWillQuota: mosquitto_pub with a will larger than what
// MaxWillBytes leaves is refused at CONNECT — quota exceeded in 5.0,
// broker unavailable in 3.1.1 — and one with a small will connects.
func TestMosquittoWillQuota(t *testing.T) {
	pub := needTool(t, "mosquitto_pub")
	b := startBroker(t, Config{MaxWillBytes: 200})
	host, port := hostPort(t, b.addr)
	big := strings.Repeat("w", 300)
	for _, c := range []struct{ v, want string }{{"mqttv5", "quota exceeded"}, {"mqttv311", "unavailable"}} {
		o, err := exec.Command(pub, "-h", host, "-p", port, "-V", c.v, "-q", "1", "-t", "x", "-m", "m",
			"--will-topic", "gone", "--will-payload", big).CombinedOutput()
		if err == nil || !strings.Contains(strings.ToLower(string(o)), c.want) {
			t.Fatalf("%s with a large will: %v %q, want a refusal saying %q", c.v, err, o, c.want)
		}
		o, err = exec.Command(pub, "-h", host, "-p", port, "-V", c.v, "-q", "1", "-t", "x", "-m", "m",
			"--will-topic", "gone", "--will-payload", "small").CombinedOutput()
		if err != nil {
			t.Fatalf("%s with a small will: %v %q", c.v, err, o)
		}
	}
	if st := b.Stats(); st.WillsRefused != 2 {
		t.Fatalf("wills refused = %d, want 2", st.WillsRefused)
	}
	b.waitStats(t, "no will held", func(s Stats) bool { return s.Wills == 0 && s.WillBytes == 0 })
}
