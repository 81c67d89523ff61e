package localcluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// process is a control plane binary running in the background until Stop kills it.
type process struct {
	cmd *exec.Cmd
	// log is the file that receives the process's output.
	log string
	// done is closed once the process has exited.
	done chan struct{}
}

// startProcess runs bin with args, its output written to logPath and env added to this
// process's environment.
func startProcess(logPath string, env []string, bin string, args ...string) (*process, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", filepath.Base(bin), err)
	}
	p := &process{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		// Only kill ends the process: Wait's error says just that.
		_ = cmd.Wait()
		_ = logFile.Close()
	}()
	return p, nil
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill kills the process and waits for it to end; a nil process is left alone.
func (p *process) kill() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}
