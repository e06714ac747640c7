package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/upstream"
)

// parseClusterFlags parses args with clusterPolicyFlags into a cluster
// with hosts and finishes it.
func parseClusterFlags(hosts int, args ...string) (upstream.ClusterConfig, proxy.Config, error) {
	var cc upstream.ClusterConfig
	var pc proxy.Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := clusterPolicyFlags(fs, &cc)
	if err := fs.Parse(args); err != nil {
		return cc, pc, err
	}
	for range hosts {
		cc.Hosts = append(cc.Hosts, "127.0.0.1:1")
	}
	err := f.finish(&cc, &pc)
	return cc, pc, err
}

// TestClusterPolicyFlags: the flags reach their ClusterConfig (and
// proxy.Config) fields, and combinations that cannot work are refused.
func TestClusterPolicyFlags(t *testing.T) {
	cc, pc, err := parseClusterFlags(3, "-balancer", "round_robin", "-weights", "3, 1,2",
		"-outlier-failure-percent", "60", "-outlier-failure-volume", "20", "-outlier-failure-min-hosts", "3",
		"-outlier-interval", "5s", "-hc-jitter", "-1ns", "-hc-host", "health.internal", "-backoff-max", "2s",
		"-breaker-5xx", "-retry-statuses", "429,409")
	if err != nil {
		t.Fatal(err)
	}
	o := cc.Outlier
	if cc.Balancer != upstream.BalanceRoundRobin || !reflect.DeepEqual(cc.Weights, []int{3, 1, 2}) ||
		o.FailurePercentageThreshold != 60 || o.FailurePercentageRequestVolume != 20 || o.FailurePercentageMinimumHosts != 3 ||
		o.Interval != 5*time.Second || cc.Health.Jitter != -1 || cc.Health.Host != "health.internal" ||
		cc.BackoffMax != 2*time.Second || !cc.BreakerOn5xx || !reflect.DeepEqual(cc.Retry.Statuses, []int{429, 409}) || pc.HashClient {
		t.Fatalf("parsed into %+v", cc)
	}
	cc, pc, err = parseClusterFlags(2, "-balancer", "maglev", "-hash-header", "X-Device-Id")
	if err != nil || !pc.HashClient || pc.HashHeader != "X-Device-Id" || cc.Weights != nil {
		t.Fatalf("maglev with -hash-header: %v %+v", err, pc)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-weights", "1,2"}, "-weights needs -balancer round_robin"},
		{[]string{"-balancer", "round_robin", "-weights", "1,2"}, "2 weights for 3 hosts"},
		{[]string{"-balancer", "round_robin", "-weights", "1,0,1"}, `bad weight "0"`},
		{[]string{"-balancer", "round_robin", "-weights", "1,x,1"}, `bad weight "x"`},
		{[]string{"-hash-header", "X-Device-Id"}, "-hash-header needs -balancer ring_hash or maglev"},
		{[]string{"-balancer", "random"}, "random"},
		{[]string{"-balancer", "maglev", "-hash-header", "X Device"}, "not a header field name"},
		{[]string{"-balancer", "maglev", "-hash-header", "X-Device:"}, "not a header field name"},
		{[]string{"-retry-on", "sometimes"}, "-retry-on"},
		{[]string{"-pipeline-batch"}, "-pipeline-batch needs -pipeline"},
	} {
		if _, _, err := parseClusterFlags(3, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}

// TestConfigFileNumbers: a -config (or -upstream-config) file's numbers
// reach their flags as written: a whole number of a million or more is
// not refused as "1e+06", a fraction stays a fraction.
func TestConfigFileNumbers(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.json")
	os.WriteFile(p, []byte(`{"cb-max-requests": 1000000, "breaker-ratio": 0.25, "retry-statuses": [429, 409], "breaker-5xx": true}`), 0o600)
	var cc upstream.ClusterConfig
	var pc proxy.Config
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f := clusterPolicyFlags(fs, &cc)
	if err := applyConfigFile(fs, p); err != nil {
		t.Fatal(err)
	}
	if err := f.finish(&cc, &pc); err != nil {
		t.Fatal(err)
	}
	if cc.Thresholds.MaxRequests != 1_000_000 || cc.Breaker.FailureRatio != 0.25 || !cc.BreakerOn5xx ||
		!reflect.DeepEqual(cc.Retry.Statuses, []int{429, 409}) {
		t.Fatalf("parsed %+v", cc)
	}
}
