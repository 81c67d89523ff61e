package sdk

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

func TestEncode(t *testing.T) {
	big := strings.Repeat("é", 5000) // 10000 bytes, two per rune
	replicas := json.RawMessage(`{"replicas":3}`)
	tests := []struct {
		name          string
		in            v1alpha1.ActionResult
		wantOutputEnd string
		wantErrorPart string
		wantData      bool
	}{
		{name: "fits", in: v1alpha1.ActionResult{Success: ptrTo(true), Output: "ok", Data: replicas}, wantOutputEnd: "ok", wantData: true},
		{name: "output truncated with marker", in: v1alpha1.ActionResult{Success: ptrTo(true), Output: big, Data: replicas}, wantOutputEnd: v1alpha1.TruncationMarker, wantData: true},
		{name: "huge data dropped", in: v1alpha1.ActionResult{Success: ptrTo(false), Output: "x", Data: json.RawMessage(`{"blob":"` + strings.Repeat("a", 9000) + `"}`)}, wantOutputEnd: "x"},
		{name: "invalid data dropped", in: v1alpha1.ActionResult{Success: ptrTo(false), Data: json.RawMessage(`{"blob":`)}, wantErrorPart: "data could not be encoded"},
		{name: "huge error cut", in: v1alpha1.ActionResult{Success: ptrTo(false), Output: big, Error: big}, wantErrorPart: v1alpha1.TruncationMarker},
		{name: "usage kept when the output is cut", in: v1alpha1.ActionResult{Success: ptrTo(true), Output: big, ResourceUsage: maxUsage}, wantOutputEnd: v1alpha1.TruncationMarker},
		{name: "usage kept when everything else is cut", in: v1alpha1.ActionResult{Success: ptrTo(false), Output: big, Error: big, ResourceUsage: maxUsage}, wantErrorPart: v1alpha1.TruncationMarker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Encode(tt.in)
			if len(b) > v1alpha1.MaxResultBytes {
				t.Fatalf("encoded %d bytes, limit %d", len(b), v1alpha1.MaxResultBytes)
			}
			got, ok := v1alpha1.ParseActionResult(string(b))
			if !ok {
				t.Fatalf("not a result: %s", b)
			}
			if *got.Success != *tt.in.Success {
				t.Fatalf("success = %v", *got.Success)
			}
			if !utf8.ValidString(got.Output) || !strings.HasSuffix(got.Output, tt.wantOutputEnd) {
				t.Fatalf("output ends %q, want suffix %q", got.Output[max(0, len(got.Output)-40):], tt.wantOutputEnd)
			}
			if !strings.Contains(got.Error, tt.wantErrorPart) {
				t.Fatalf("error %q does not contain %q", got.Error, tt.wantErrorPart)
			}
			if has := got.Data != nil; has != tt.wantData {
				t.Fatalf("data present = %v, want %v", has, tt.wantData)
			}
			if !sameUsage(got.ResourceUsage, tt.in.ResourceUsage) {
				t.Fatalf("resource usage %+v, want %+v", got.ResourceUsage, tt.in.ResourceUsage)
			}
		})
	}
}

// maxUsage is the longest resourceUsage there is.
var maxUsage = &v1alpha1.ResourceUsage{CPUMillis: 1<<63 - 1, PeakMemoryBytes: 1<<63 - 1}

func sameUsage(a, b *v1alpha1.ResourceUsage) bool {
	return (a == nil) == (b == nil) && (a == nil || *a == *b)
}

// TestWriteMeasuresUsage checks that the result an action writes carries its CPU time and peak
// memory, as positive figures the executor reads back.
func TestWriteMeasuresUsage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("resource usage is measured on Linux only")
	}
	// Use at least a millisecond of CPU, so the figure cannot round down to zero.
	for end := time.Now().Add(time.Second); time.Now().Before(end); {
		if u := Usage(); u != nil && u.CPUMillis > 0 {
			break
		}
	}
	path := filepath.Join(t.TempDir(), "termination-log")
	t.Setenv("TERMINATION_MESSAGE_PATH", path)
	if err := WriteResult(v1alpha1.ActionResult{Success: ptrTo(true), Output: "done"}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := v1alpha1.ParseActionResult(string(b))
	if !ok || got.Output != "done" {
		t.Fatalf("not the result written: %s", b)
	}
	u := got.ResourceUsage
	if u == nil || u.CPUMillis <= 0 || u.PeakMemoryBytes <= 0 {
		t.Fatalf("resource usage %+v in %s, want positive figures", u, b)
	}
	// A Go test binary's resident set is megabytes, never a few KiB: the unit is bytes.
	if u.PeakMemoryBytes < 1<<20 {
		t.Fatalf("peak memory %d bytes: not converted from KiB?", u.PeakMemoryBytes)
	}
	t.Logf("measured %s", b)
}

func TestWithData(t *testing.T) {
	r := withData(v1alpha1.ActionResult{Success: ptrTo(true)}, map[string]int{"replicas": 3})
	if string(r.Data) != `{"replicas":3}` || r.Error != "" {
		t.Fatalf("data %s, error %q", r.Data, r.Error)
	}
	if r := withData(v1alpha1.ActionResult{Error: "boom"}, nil); r.Data != nil || r.Error != "boom" {
		t.Fatalf("no data: data %s, error %q", r.Data, r.Error)
	}
	r = withData(v1alpha1.ActionResult{Error: "boom"}, func() {})
	if r.Data != nil || !strings.HasPrefix(r.Error, "boom; data could not be encoded: ") {
		t.Fatalf("unencodable data: data %s, error %q", r.Data, r.Error)
	}
}

// FuzzEncode checks that whatever an action reports, the executor reads it back: the encoded
// result fits the termination message and v1alpha1.ParseActionResult, the executor's parser,
// returns it, with the output and error whole, cut and marked, or dropped, the data whole or
// dropped, the resource usage (when both figures are non-negative) whole, and a result that
// fits unchanged.
func FuzzEncode(f *testing.F) {
	f.Add("output", "error", strings.Repeat("z", 5000), int64(-1), int64(0))
	f.Add("\xff\xfe", "", "", int64(0), int64(0))
	f.Add(strings.Repeat("€", 1400), strings.Repeat("<&>", 300), `{"replicas":3}`, int64(1<<63-1), int64(1<<63-1))
	f.Add(strings.Repeat("\x00", 5000), strings.Repeat("\"", 5000), `{"replicas":3}`, int64(123), int64(31457280))
	f.Fuzz(func(t *testing.T, output, errText, data string, cpuMillis, peakMemoryBytes int64) {
		raw := json.RawMessage(data)
		if !json.Valid(raw) {
			raw, _ = json.Marshal(data)
		}
		in := v1alpha1.ActionResult{Success: ptrTo(len(output)%2 == 0), Output: output, Error: errText, Data: raw}
		if cpuMillis >= 0 && peakMemoryBytes >= 0 {
			in.ResourceUsage = &v1alpha1.ResourceUsage{CPUMillis: cpuMillis, PeakMemoryBytes: peakMemoryBytes}
		}
		b := Encode(in)
		if len(b) > v1alpha1.MaxResultBytes || !json.Valid(b) {
			t.Fatalf("invalid or oversized: %d bytes", len(b))
		}
		got, ok := v1alpha1.ParseActionResult(string(b))
		if !ok {
			t.Fatalf("the executor does not read it as a result: %s", b)
		}
		if got.Success == nil || *got.Success != *in.Success {
			t.Fatalf("success %v, want %v", got.Success, *in.Success)
		}
		if !utf8.ValidString(got.Output) || !utf8.ValidString(got.Error) {
			t.Fatalf("invalid UTF-8: %q, %q", got.Output, got.Error)
		}
		if utf8.ValidString(output) && !wholeCutOrDropped(got.Output, output) {
			t.Fatalf("output %q is not the action's", got.Output)
		}
		if utf8.ValidString(errText) && got.Error != "result too large" && !wholeCutOrDropped(got.Error, errText) {
			t.Fatalf("error %q is not the action's", got.Error)
		}
		if !sameUsage(got.ResourceUsage, in.ResourceUsage) {
			t.Fatalf("resource usage %+v, want %+v", got.ResourceUsage, in.ResourceUsage)
		}
		// The data is kept whole or dropped, never cut (null is none).
		wantData := raw
		if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
			wantData = nil
		}
		if got.Data != nil && !sameJSON(got.Data, wantData) {
			t.Fatalf("data %s, want %s or none", got.Data, raw)
		}
		// A result that fits is written as it is: nothing cut, nothing dropped.
		if whole, err := json.Marshal(in); err == nil && len(whole) <= v1alpha1.MaxResultBytes && utf8.ValidString(output) && utf8.ValidString(errText) {
			if got.Output != output || got.Error != errText || !sameJSON(got.Data, wantData) {
				t.Fatalf("a result of %d bytes was changed: %+v", len(whole), got)
			}
		}
	})
}

// sameJSON reports whether a and b hold the same JSON value.
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(bytes.TrimSpace(a), bytes.TrimSpace(b))
	}
	return reflect.DeepEqual(x, y)
}

// wholeCutOrDropped reports whether got is want, want cut and marked, or empty.
func wholeCutOrDropped(got, want string) bool {
	if got == want || got == "" {
		return true
	}
	body, cut := strings.CutSuffix(got, v1alpha1.TruncationMarker)
	return cut && strings.HasPrefix(want, body)
}
