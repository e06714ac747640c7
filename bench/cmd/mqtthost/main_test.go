package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"
)

// -gogc's default is $GOGC when set, else warren serve's.
func TestDefaultGOGC(t *testing.T) {
	for _, c := range []struct {
		env  string
		want int
	}{{"", serveGOGC}, {"off", -1}, {"50", 50}, {"100", 100}, {"junk", serveGOGC}} {
		t.Setenv("GOGC", c.env)
		if got := defaultGOGC(); got != c.want {
			t.Errorf("GOGC=%q: default %d, want %d", c.env, got, c.want)
		}
	}
}

// serveGOGC is warren serve's default (cmd/warren's DefaultServeGOGC, in
// a main package this one cannot import): read from its source.
func TestServeGOGCIsWarrenServes(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../../../cmd/warren/serve.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	o := f.Scope.Lookup("DefaultServeGOGC")
	if o == nil {
		t.Fatal("cmd/warren/serve.go declares no DefaultServeGOGC")
	}
	lit, ok := o.Decl.(*ast.ValueSpec).Values[0].(*ast.BasicLit)
	if !ok {
		t.Fatal("DefaultServeGOGC is not a literal")
	}
	if n, _ := strconv.Atoi(lit.Value); n != serveGOGC {
		t.Fatalf("warren serve's DefaultServeGOGC is %s, mqtthost's serveGOGC %d", lit.Value, serveGOGC)
	}
}

// The listening line keeps the address as its second word (the bench
// scripts' awk '/^listening / {print $2}') and names the target in effect.
func TestListeningLine(t *testing.T) {
	for _, g := range []int{25, 100, -1} {
		f := strings.Fields(listeningLine("127.0.0.1:1883", g))
		if len(f) != 3 || f[0] != "listening" || f[1] != "127.0.0.1:1883" || f[2] != fmt.Sprintf("gogc=%d", g) {
			t.Errorf("gogc %d: listening line %q", g, f)
		}
	}
}
