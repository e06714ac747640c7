//go:build !(linux || darwin || freebsd)

package prefork

import "io"

func reservePort(addr string) (string, io.Closer, error) { return "", nil, ErrUnsupported }
