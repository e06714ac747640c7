package admin

import (
	"fmt"
	"html"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"time"
)

// PprofRoutes adds runtime profiles under /debug/pprof/ to mux, in the
// formats net/http/pprof uses, so `go tool pprof
// http://ADDR/debug/pprof/heap` and `go tool trace` work. The admin Server
// serves them; a program with an admin endpoint of its own (the prefork
// parent's) adds them with this, behind Guard. They are written here
// rather than imported because importing net/http/pprof registers the
// profiles on http.DefaultServeMux, which would expose them on any server
// of the program that uses it.
func PprofRoutes(mux *http.ServeMux) { pprofRoutes(mux) }

func pprofRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /debug/pprof/{$}", pprofIndex)
	mux.HandleFunc("GET /debug/pprof/cmdline", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, strings.Join(os.Args, "\x00"))
	})
	mux.HandleFunc("GET /debug/pprof/profile", pprofCPU)
	mux.HandleFunc("GET /debug/pprof/trace", pprofTrace)
	mux.HandleFunc("GET /debug/pprof/{name}", pprofNamed)
}

func pprofIndex(w http.ResponseWriter, r *http.Request) {
	var b strings.Builder
	b.WriteString("<!doctype html><title>/debug/pprof/</title><h1>/debug/pprof/</h1><table>")
	for _, p := range pprof.Profiles() {
		n := html.EscapeString(p.Name())
		fmt.Fprintf(&b, "<tr><td align=right>%d</td><td><a href=\"%s?debug=1\">%s</a></td></tr>", p.Count(), n, n)
	}
	b.WriteString(`</table><p><a href="profile?seconds=30">profile</a> (CPU, ?seconds=N) · ` +
		`<a href="trace?seconds=1">trace</a> (execution trace, ?seconds=N) · <a href="cmdline">cmdline</a>` +
		`<p>Use <code>go tool pprof http://HOST/debug/pprof/heap</code>; ?debug=1 or 2 gives text, ?gc=1 collects garbage before a heap profile.`)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(b.String()))
}

// seconds reads ?seconds=, default def, and checks it fits the request.
func seconds(w http.ResponseWriter, r *http.Request, def float64) (time.Duration, bool) {
	sec := def
	if v := r.FormValue("seconds"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 || f > 3600 {
			writeError(w, http.StatusBadRequest, "admin: seconds: %q is not in (0, 3600]", v)
			return 0, false
		}
		sec = f
	}
	return time.Duration(sec * float64(time.Second)), true
}

func attachment(w http.ResponseWriter, name string) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
}

func pprofCPU(w http.ResponseWriter, r *http.Request) {
	d, ok := seconds(w, r, 30)
	if !ok {
		return
	}
	attachment(w, "profile")
	if err := pprof.StartCPUProfile(w); err != nil {
		w.Header().Del("Content-Disposition")
		writeError(w, http.StatusInternalServerError, "admin: cpu profile: %v", err)
		return
	}
	sleep(r, d)
	pprof.StopCPUProfile()
}

func pprofTrace(w http.ResponseWriter, r *http.Request) {
	d, ok := seconds(w, r, 1)
	if !ok {
		return
	}
	attachment(w, "trace")
	if err := trace.Start(w); err != nil {
		w.Header().Del("Content-Disposition")
		writeError(w, http.StatusInternalServerError, "admin: trace: %v", err)
		return
	}
	sleep(r, d)
	trace.Stop()
}

func sleep(r *http.Request, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

func pprofNamed(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	p := pprof.Lookup(name)
	if p == nil {
		writeError(w, http.StatusNotFound, "admin: unknown profile %q", name)
		return
	}
	debug, _ := strconv.Atoi(r.FormValue("debug"))
	if name == "heap" && r.FormValue("gc") != "" {
		runtime.GC()
	}
	if debug > 0 {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
	} else {
		attachment(w, name)
	}
	_ = p.WriteTo(w, debug)
}
