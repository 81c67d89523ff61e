package e2eutil

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Forwarder passes TCP connections, TLS and all, from where it listens to one of its backends,
// taking them in turn, as kube-proxy spreads a Service's connections over its endpoints: a
// backend that is down refuses the connection at once, and the next one gets it. Tests put one
// where a Service would be (the webhook in front of several manager replicas), or between a
// client and an API server, to cut the network between them (Close) and restore it (start
// another on the same address).
type Forwarder struct {
	l        net.Listener
	backends []string
	next     atomic.Uint32
	// Refused counts the connections no backend accepted.
	Refused atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// StartForwarder listens on addr and forwards to backends.
func StartForwarder(addr string, backends []string) (*Forwarder, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", addr, err)
	}
	f := &Forwarder{l: l, backends: backends, conns: map[net.Conn]struct{}{}}
	f.wg.Go(f.serve)
	return f, nil
}

func (f *Forwarder) serve() {
	for {
		in, err := f.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		f.wg.Go(func() { f.handle(in) })
	}
}

// handle passes one connection to the first backend, from the next in turn, that accepts it.
func (f *Forwarder) handle(in net.Conn) {
	first := int(f.next.Add(1))
	var out net.Conn
	for i := range f.backends {
		conn, err := net.DialTimeout("tcp", f.backends[(first+i)%len(f.backends)], time.Second)
		if err == nil {
			out = conn
			break
		}
	}
	if out == nil {
		f.Refused.Add(1)
		_ = in.Close()
		return
	}
	if !f.track(in, out) {
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	// Either side closing ends both, as a connection through a proxy does.
	<-done
	f.untrack(in, out)
	<-done
}

// track records a connection pair so that close can end it; it closes them instead when the
// forwarder is closed already.
func (f *Forwarder) track(conns ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		for _, c := range conns {
			_ = c.Close()
		}
		return false
	}
	for _, c := range conns {
		f.conns[c] = struct{}{}
	}
	return true
}

// untrack closes a connection pair and forgets it.
func (f *Forwarder) untrack(conns ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
		delete(f.conns, c)
	}
}

// Addr is where the forwarder listens.
func (f *Forwarder) Addr() string { return f.l.Addr().String() }

// Close stops listening, so that another listener may take the address, and ends every
// connection.
func (f *Forwarder) Close() {
	_ = f.l.Close()
	f.mu.Lock()
	f.closed = true
	for c := range f.conns {
		_ = c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
}
