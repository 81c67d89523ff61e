package nodeagent

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
)

// PodNetwork gives pods addresses a kube-apiserver can dial (loopback addresses are refused as
// endpoints): a network namespace joined to the host by a veth pair, the host side holding the
// subnet's first address, each pod one more address on the namespace side. A pod's processes
// run inside the namespace, so a Service's endpoints (webhooks) really are the pod's address.
type PodNetwork struct {
	// Namespace is the network namespace's name.
	Namespace string
	// HostIP is the host side's address; the API server listens on it, so pods reach it.
	HostIP string

	hostLink, podLink string
	prefix            string
	mu                sync.Mutex
	used              map[string]bool
}

// NewPodNetwork creates the namespace and veth pair for subnet 10.250.<n>.0/24.
func NewPodNetwork(n int) (*PodNetwork, error) {
	p := &PodNetwork{
		Namespace: fmt.Sprintf("kubernaut-pods-%d", n),
		hostLink:  fmt.Sprintf("kxh%d", n), podLink: fmt.Sprintf("kxp%d", n),
		prefix: fmt.Sprintf("10.250.%d.", n), used: map[string]bool{},
	}
	p.HostIP = p.prefix + "1"
	steps := [][]string{
		{"netns", "add", p.Namespace},
		{"link", "add", p.hostLink, "type", "veth", "peer", "name", p.podLink},
		{"link", "set", p.podLink, "netns", p.Namespace},
		{"addr", "add", p.HostIP + "/24", "dev", p.hostLink},
		{"link", "set", p.hostLink, "up"},
		{"-n", p.Namespace, "link", "set", p.podLink, "up"},
		{"-n", p.Namespace, "link", "set", "lo", "up"},
		// Every other address of the host is reachable from the pods too, through its side of
		// the pair, as a node's pods reach other clusters: another local cluster's API server
		// listens on its own network's host-side address.
		{"-n", p.Namespace, "route", "add", "default", "via", p.HostIP, "dev", p.podLink, "onlink"},
	}
	for i, s := range steps {
		if err := ip(s...); err != nil {
			// A namespace that could not be added is someone else's: leave it alone.
			if i > 0 {
				p.Close()
			}
			return nil, err
		}
	}
	return p, nil
}

// Allocate gives a pod the next free address.
func (p *PodNetwork) Allocate() (string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := 2; i < 255; i++ {
		addr := p.prefix + fmt.Sprint(i)
		if p.used[addr] {
			continue
		}
		if err := ip("-n", p.Namespace, "addr", "add", addr+"/24", "dev", p.podLink); err != nil {
			return "", err
		}
		p.used[addr] = true
		return addr, nil
	}
	return "", fmt.Errorf("pod network %s is full", p.Namespace)
}

// Release returns a pod's address.
func (p *PodNetwork) Release(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.used[addr] {
		_ = ip("-n", p.Namespace, "addr", "del", addr+"/24", "dev", p.podLink)
		delete(p.used, addr)
	}
}

// Command wraps argv to run inside the namespace.
func (p *PodNetwork) Command(binary string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", p.Namespace, binary}, args...)...)
}

// Close removes the namespace (and with it the veth pair).
func (p *PodNetwork) Close() {
	_ = ip("netns", "del", p.Namespace)
	_ = ip("link", "del", p.hostLink)
}

// FreeSubnet picks a subnet number whose host address is not in use on this machine.
func FreeSubnet(seed int) (int, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return 0, err
	}
	taken := map[string]bool{}
	for _, a := range addrs {
		taken[strings.Split(a.String(), "/")[0]] = true
	}
	for i := 0; i < 250; i++ {
		n := (seed+i)%250 + 1
		if !taken[fmt.Sprintf("10.250.%d.1", n)] {
			return n, nil
		}
	}
	return 0, fmt.Errorf("no free 10.250.x.0/24 subnet")
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
