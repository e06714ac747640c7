package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestFlagsDocumented: every flag each command lists in -h is named in the
// README or a docs/ page (an operator looks there first), except those
// marked internal.
func TestFlagsDocumented(t *testing.T) {
	var docs strings.Builder
	pages, _ := filepath.Glob("../../docs/*.md")
	for _, p := range append(pages, "../../README.md") {
		if filepath.Base(p) == "benchmarks.md" {
			continue // figures, not reference
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs.Write(b)
	}
	text := docs.String()
	flagLine := regexp.MustCompile(`(?m)^  (-[a-z0-9-]+)\b.*\n\s+(.*)$`)
	for name, run := range map[string]func([]string, *bytes.Buffer, *bytes.Buffer) int{
		"serve": func(a []string, o, e *bytes.Buffer) int { return runServe(a, o, e) },
		"echo":  func(a []string, o, e *bytes.Buffer) int { return runEcho(a, o, e) },
		"proxy": func(a []string, o, e *bytes.Buffer) int { return runProxy(a, o, e) },
		"load":  func(a []string, o, e *bytes.Buffer) int { return runLoad(a, o, e) },
		"token": func(a []string, o, e *bytes.Buffer) int { return runToken(a, o, e) },
	} {
		var out, errOut bytes.Buffer
		run([]string{"-h"}, &out, &errOut)
		usage := out.String() + errOut.String()
		flags := flagLine.FindAllStringSubmatch(usage, -1)
		if len(flags) < 3 {
			t.Fatalf("warren %s -h lists %d flags:\n%s", name, len(flags), usage)
		}
		for _, f := range flags {
			if strings.Contains(f[2], "(internal)") {
				continue
			}
			if !regexp.MustCompile("(^|[^a-z0-9-])" + regexp.QuoteMeta(f[1]) + "([^a-z0-9-]|$)").MatchString(text) {
				t.Errorf("warren %s %s is not named in README.md or docs/*.md", name, f[1])
			}
		}
	}
}
