package mqtt

import (
	"encoding/binary"
	"strings"
	"unicode/utf8"
)

// ValidTopicName reports whether name is a valid topic name, the topic of a
// PUBLISH: 1 to 65535 bytes of UTF-8 without U+0000 and without the
// wildcards + and #.
func ValidTopicName(name string) bool {
	return name != "" && len(name) <= 0xffff && validTopicName(name)
}

// validTopicName is ValidTopicName that allows the empty name.
func validTopicName[T string | []byte](name T) bool {
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case c == 0, c == '+', c == '#':
			return false
		case c >= utf8.RuneSelf:
			s := string(name[i:]) // no allocation for the comparison below
			return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 &&
				strings.IndexAny(s, "+#") < 0
		}
	}
	return true
}

const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// hasZeroByte reports whether one of the bytes of x is zero.
func hasZeroByte(x uint64) bool { return (x-lo8)&^x&hi8 != 0 }

// topicSpecial marks the bytes a topic name scan stops at: U+0000, the
// wildcards, and the start of multi-byte UTF-8.
var topicSpecial = func() (t [256]bool) {
	t[0], t['+'], t['#'] = true, true, true
	for c := utf8.RuneSelf; c < 256; c++ {
		t[c] = true
	}
	return t
}()

// checkTopicName checks a decoded topic name (possibly empty, for a topic
// alias).
func checkTopicName(name []byte) *Error {
	// Skip eight plain bytes at a time.
	i := 0
	for ; len(name)-i >= 8; i += 8 {
		x := binary.LittleEndian.Uint64(name[i:])
		if x&hi8 != 0 || hasZeroByte(x) || hasZeroByte(x^(lo8*'+')) || hasZeroByte(x^(lo8*'#')) {
			break
		}
	}
	for ; i < len(name); i++ {
		c := name[i]
		if !topicSpecial[c] {
			continue
		}
		if c == '+' || c == '#' {
			return errTopicName
		}
		if e := checkUTF8(name[i:]); e != nil {
			return e
		}
		if !validTopicName(name[i:]) {
			return errTopicName
		}
		return nil
	}
	return nil
}

// ValidTopicFilter reports whether filter is a valid topic filter, the
// subject of a subscription: 1 to 65535 bytes of UTF-8 without U+0000, where
// + stands alone in its level and # stands alone in the last level. A filter
// starting with "$share/" must be a valid shared subscription (see
// ParseShared).
func ValidTopicFilter(filter string) bool {
	if filter == "" || len(filter) > 0xffff || !utf8.ValidString(filter) ||
		strings.IndexByte(filter, 0) >= 0 {
		return false
	}
	if IsShared(filter) {
		_, _, ok := ParseShared(filter)
		return ok
	}
	return validFilterLevels(filter)
}

// validFilterLevels checks the placement of wildcards in a filter.
func validFilterLevels(filter string) bool {
	for {
		level, rest, more := strings.Cut(filter, "/")
		switch {
		case level == "#":
			return !more
		case level == "+":
		case strings.ContainsAny(level, "+#"):
			return false
		}
		if !more {
			return true
		}
		filter = rest
	}
}

const sharePrefix = "$share/"

// IsShared reports whether filter names a shared subscription, that is
// starts with "$share/".
func IsShared(filter string) bool { return strings.HasPrefix(filter, sharePrefix) }

// ParseShared splits a shared subscription "$share/<group>/<filter>" into
// its share group and topic filter. ok is false when filter does not start
// with "$share/" or is not well formed: the group must be non-empty and
// without + and #, and the filter a valid topic filter. Subscribers sharing
// a group and a filter receive each matching message once between them.
func ParseShared(filter string) (group, topicFilter string, ok bool) {
	rest, found := strings.CutPrefix(filter, sharePrefix)
	if !found {
		return "", "", false
	}
	group, topicFilter, found = strings.Cut(rest, "/")
	if !found || group == "" || strings.ContainsAny(group, "+#") ||
		topicFilter == "" || !validFilterLevels(topicFilter) {
		return "", "", false
	}
	return group, topicFilter, true
}

// Match reports whether the topic filter matches the topic name. + matches
// one level, # any number of levels including the parent's (sport/# matches
// sport), and a filter starting with a wildcard does not match a topic
// starting with $ (such as $SYS/...). filter is a plain filter: take a
// shared subscription's filter from ParseShared. Match does not check its
// arguments.
func Match(filter, topic string) bool {
	if topic != "" && topic[0] == '$' && filter != "" && (filter[0] == '+' || filter[0] == '#') {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		if !fmore {
			return !tmore
		}
		if !tmore {
			return frest == "#"
		}
		filter, topic = frest, trest
	}
}
