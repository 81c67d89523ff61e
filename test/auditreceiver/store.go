package auditreceiver

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// maxEventBytes bounds one stored event, as a request body and as a line of the data file.
const maxEventBytes = 1 << 20

// record is one stored event.
type record struct {
	// key is the event's id, which deduplicates it.
	key string
	// executionName is the execution the event is about, for filtering.
	executionName string
	// raw is the event as received, compacted to one line.
	raw json.RawMessage
}

// eventFields are the parts of an event the receiver reads: the kubernaut format's eventId
// and executionName, or a structured CloudEvent's specversion, id and data.
type eventFields struct {
	EventID       string          `json:"eventId"`
	ExecutionName string          `json:"executionName"`
	SpecVersion   string          `json:"specversion"`
	ID            string          `json:"id"`
	Data          json.RawMessage `json:"data"`
}

// parseEvent reads the id and execution name of an event: eventId and executionName in the
// kubernaut format, id and data.executionName in a structured CloudEvent.
func parseEvent(body []byte) (key, executionName string, err error) {
	var f eventFields
	if err := json.Unmarshal(body, &f); err != nil {
		return "", "", fmt.Errorf("the body is not a JSON object: %w", err)
	}
	if f.SpecVersion == "" {
		return f.EventID, f.ExecutionName, nil
	}
	var data struct {
		ExecutionName string `json:"executionName"`
	}
	if len(f.Data) > 0 && f.Data[0] == '{' {
		_ = json.Unmarshal(f.Data, &data)
	}
	return f.ID, data.ExecutionName, nil
}

// openStore opens (or creates) the data file and reads the events it holds. A last line cut
// short by a crash is dropped, so the next event starts on a line of its own.
func openStore(path string) (*os.File, []record, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("opening data file: %w", err)
	}
	records, good, err := readRecords(f)
	if err == nil {
		err = truncateTo(f, good)
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		_ = f.Close()
		return nil, nil, fmt.Errorf("reading data file %s: %w", path, err)
	}
	return f, records, nil
}

// readRecords reads the complete lines of f and returns their events and the length of the
// file up to the end of the last complete line.
func readRecords(f *os.File) ([]record, int64, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, 0, err
	}
	var records []record
	var good int64
	r := bufio.NewReaderSize(f, 64*1024)
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return records, good, nil // a line without its newline was cut short
		}
		if err != nil {
			return nil, 0, err
		}
		good += int64(len(line))
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		key, name, err := parseEvent(line)
		if err != nil || key == "" {
			return nil, 0, fmt.Errorf("line %d is not an event with an id", n)
		}
		records = append(records, record{key: key, executionName: name, raw: json.RawMessage(line)})
	}
}

// truncateTo cuts f to size when it is longer, and positions f at its end.
func truncateTo(f *os.File, size int64) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() > size {
		if err := f.Truncate(size); err != nil {
			return err
		}
		if err := f.Sync(); err != nil {
			return err
		}
	}
	_, err = f.Seek(size, io.SeekStart)
	return err
}

// appendRecord writes raw as one line at the end of f and waits until it is on disk.
func appendRecord(f *os.File, raw []byte) error {
	line := make([]byte, 0, len(raw)+1)
	line = append(append(line, raw...), '\n')
	if _, err := f.Write(line); err != nil {
		return err
	}
	return f.Sync()
}

// syncDir makes the data file's directory entry durable, so a new file survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}
