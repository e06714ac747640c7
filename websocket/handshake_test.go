package websocket

import "testing"

func TestAcceptKey(t *testing.T) {
	// RFC 6455 §1.3.
	const key, want = "dGhlIHNhbXBsZSBub25jZQ==", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
	if got := AcceptKey(key); got != want {
		t.Fatalf("AcceptKey = %q, want %q", got, want)
	}
	if got := string(AppendAcceptKey([]byte("A: "), []byte(key))); got != "A: "+want {
		t.Fatalf("AppendAcceptKey = %q", got)
	}
	long := string(make([]byte, 100))
	if AcceptKey(long) == AcceptKey(long[:64]) || len(AcceptKey(long)) != 28 {
		t.Fatal("long keys")
	}
	if n := testing.AllocsPerRun(100, func() { AppendAcceptKey(make([]byte, 0, 64), []byte(key)) }); n > 1 {
		t.Errorf("AppendAcceptKey allocates %v times", n)
	}
}

func TestValidKey(t *testing.T) {
	for key, want := range map[string]bool{
		"dGhlIHNhbXBsZSBub25jZQ==":  true,
		"AAAAAAAAAAAAAAAAAAAAAA==":  true,
		"dGhlIHNhbXBsZSBub25jZQ=":   false,
		"dGhlIHNhbXBsZSBub25jZQ===": false,
		"dGhlIHNhbXBsZSBub25jZQ":    false,
		"dGhlIHNhbXBsZSBub25jZSE=":  false, // 17 bytes
		"dGhlIHNhbXBsZSBub25j!Q==":  false,
		"dGhlIHNhbXBs\nSBub25jZQ==": false,
		"":                          false,
	} {
		if got := ValidKey([]byte(key)); got != want {
			t.Errorf("ValidKey(%q) = %v", key, got)
		}
	}
	for range 10 {
		if k := NewKey(); !ValidKey([]byte(k)) {
			t.Fatalf("NewKey() = %q is not valid", k)
		}
	}
	if NewKey() == NewKey() {
		t.Fatal("NewKey repeats")
	}
}

func TestHeaderContainsToken(t *testing.T) {
	for _, tc := range []struct {
		value, token string
		want         bool
	}{
		{"Upgrade", "upgrade", true},
		{"keep-alive, Upgrade", "upgrade", true},
		{"keep-alive,upgrade ", "Upgrade", true},
		{" \tUPGRADE\t", "upgrade", true},
		{"keep-alive", "upgrade", false},
		{"upgrade2", "upgrade", false},
		{"websocket/13", "websocket", false},
		{",,", "upgrade", false},
		{"", "upgrade", false},
		{"a, , websocket", "websocket", true},
	} {
		if got := HeaderContainsToken([]byte(tc.value), tc.token); got != tc.want {
			t.Errorf("HeaderContainsToken(%q, %q) = %v", tc.value, tc.token, got)
		}
	}
}

func TestSelectSubprotocol(t *testing.T) {
	for _, tc := range []struct {
		offered   string
		supported []string
		want      string
	}{
		{"chat, superchat", []string{"superchat", "chat"}, "superchat"},
		{"chat, superchat", []string{"chat", "superchat"}, "chat"},
		{"chat,superchat", []string{"other", "superchat"}, "superchat"},
		{"Chat", []string{"chat"}, ""},
		{"", []string{"chat"}, ""},
		{"chat", nil, ""},
		{" , ", []string{""}, ""},
	} {
		if got := SelectSubprotocol([]byte(tc.offered), tc.supported); got != tc.want {
			t.Errorf("SelectSubprotocol(%q, %q) = %q, want %q", tc.offered, tc.supported, got, tc.want)
		}
	}
}
