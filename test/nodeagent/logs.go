package nodeagent

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"sync"
	"time"
)

// logWriter writes a container's output in the CRI log format a kubelet reads:
// "<RFC3339Nano time> <stream> F <line>", one line per output line.
type logWriter struct {
	mu   sync.Mutex
	f    *os.File
	part map[string][]byte
}

func newLogWriter(path string) (*logWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &logWriter{f: f, part: map[string][]byte{}}, nil
}

type streamWriter struct {
	w    *logWriter
	name string
}

func (l *logWriter) stream(name string) *streamWriter { return &streamWriter{w: l, name: name} }

func (s *streamWriter) Write(b []byte) (int, error) {
	l := s.w
	l.mu.Lock()
	defer l.mu.Unlock()
	buf := append(l.part[s.name], b...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		l.line(s.name, buf[:i])
		buf = buf[i+1:]
	}
	l.part[s.name] = append([]byte(nil), buf...)
	return len(b), nil
}

func (l *logWriter) line(stream string, b []byte) {
	_, _ = l.f.WriteString(time.Now().UTC().Format(time.RFC3339Nano) + " " + stream + " F " + string(b) + "\n")
}

// Close flushes unterminated lines and closes the file.
func (l *logWriter) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for stream, b := range l.part {
		if len(b) > 0 {
			l.line(stream, b)
		}
	}
	_ = l.f.Close()
}

// logLine is one parsed line of a CRI log.
type logLine struct {
	Time    time.Time
	Stream  string
	Content string
}

// readLog parses a CRI log file.
func readLog(path string) ([]logLine, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []logLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 4 {
			continue
		}
		t, _ := time.Parse(time.RFC3339Nano, parts[0])
		out = append(out, logLine{Time: t, Stream: parts[1], Content: parts[3]})
	}
	return out, sc.Err()
}

// tailLog returns the content of the last lines of a log, at most maxBytes, as a kubelet does
// for FallbackToLogsOnError.
func tailLog(path string, lines, maxBytes int) string {
	all, _ := readLog(path)
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	var b strings.Builder
	for _, l := range all {
		b.WriteString(l.Content)
		b.WriteByte('\n')
	}
	s := b.String()
	if len(s) > maxBytes {
		s = s[len(s)-maxBytes:]
	}
	return s
}
