package mqtt

import (
	"encoding/hex"
	"fmt"
	"reflect"
	"strings"
)

// bin builds bytes from a spec-style listing: hex bytes separated by spaces,
// and 'quoted' text for string contents.
func bin(s string) []byte {
	var out []byte
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		if s[0] == '\'' {
			end := strings.IndexByte(s[1:], '\'')
			if end < 0 {
				panic("unterminated quote in " + s)
			}
			out = append(out, s[1:1+end]...)
			s = s[2+end:]
			continue
		}
		tok, rest, _ := strings.Cut(s, " ")
		b, err := hex.DecodeString(tok)
		if err != nil {
			panic(fmt.Sprintf("bad hex %q", tok))
		}
		out = append(out, b...)
		s = rest
	}
	return out
}

// same compares two values like reflect.DeepEqual, except that a nil slice
// equals an empty one: decoded views of empty fields are empty, not nil.
func same(a, b any) bool { return sameValue(reflect.ValueOf(a), reflect.ValueOf(b)) }

func sameValue(a, b reflect.Value) bool {
	if a.IsValid() != b.IsValid() {
		return false
	}
	if !a.IsValid() {
		return true
	}
	if a.Type() != b.Type() {
		return false
	}
	switch a.Kind() {
	case reflect.Slice:
		if a.Len() != b.Len() {
			return false
		}
		for i := 0; i < a.Len(); i++ {
			if !sameValue(a.Index(i), b.Index(i)) {
				return false
			}
		}
		return true
	case reflect.Pointer, reflect.Interface:
		if a.IsNil() || b.IsNil() {
			return a.IsNil() == b.IsNil()
		}
		return sameValue(a.Elem(), b.Elem())
	case reflect.Struct:
		for i := 0; i < a.NumField(); i++ {
			if !sameValue(a.Field(i), b.Field(i)) {
				return false
			}
		}
		return true
	}
	return a.Equal(b)
}

// show formats a packet for a failure message.
func show(p any) string {
	if p == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%+v", reflect.Indirect(reflect.ValueOf(p)).Interface())
}

// decodeOne decodes exactly one packet of in with a fresh decoder at
// version v (0: expects CONNECT).
func decodeOne(v Version, in []byte, lim *Limits) (Packet, error) {
	d := Decoder{Version: v}
	n, p, err := d.Decode(in, lim)
	if err != nil {
		return nil, err
	}
	if n != len(in) {
		return p, fmt.Errorf("consumed %d of %d bytes", n, len(in))
	}
	return p, nil
}
