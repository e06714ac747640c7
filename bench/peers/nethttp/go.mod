module github.com/warrenhq/warren/bench/peers/nethttp

go 1.25
