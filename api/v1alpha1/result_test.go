package v1alpha1

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncateUTF8(t *testing.T) {
	marker := len(TruncationMarker)
	tests := []struct {
		name string
		in   string
		max  int
		want string
	}{
		{"fits", "héllo", 6, "héllo"},
		{"fits exactly", strings.Repeat("é", 10), 20, strings.Repeat("é", 10)},
		{"empty", "", 0, ""},
		{"ASCII cut", strings.Repeat("a", 100), marker + 10, strings.Repeat("a", 10) + TruncationMarker},
		{"two-byte rune at the cut", strings.Repeat("é", 100), marker + 5, "éé" + TruncationMarker},
		{"three-byte rune at the cut", strings.Repeat("€", 100), marker + 5, "€" + TruncationMarker},
		{"four-byte rune at the cut", strings.Repeat("😀", 100), marker + 7, "😀" + TruncationMarker},
		{"four-byte rune does not fit at all", strings.Repeat("😀", 100), marker + 3, TruncationMarker},
		{"no room for the marker", strings.Repeat("a", 100), 5, "…[t"},
		{"no room at all", "abc", 0, ""},
		{"invalid bytes replaced", "a\xffb", 10, "a\uFFFDb"},
		{"invalid bytes replaced, then cut", "\xff\xfe" + strings.Repeat("b", 100), marker + 4, "\uFFFDb" + TruncationMarker},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TruncateUTF8(tt.in, tt.max); got != tt.want {
				t.Fatalf("TruncateUTF8(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
			}
		})
	}
}

func FuzzTruncateUTF8(f *testing.F) {
	f.Add("héllo wörld", 8)
	f.Add(strings.Repeat("😀", 40), 30)
	f.Add("\xff\xfe\xfd"+strings.Repeat("€", 20), 20)
	f.Add("", 0)
	f.Fuzz(func(t *testing.T, s string, maxBytes int) {
		maxBytes %= 2 * (len(s) + len(TruncationMarker) + 1)
		if maxBytes < 0 {
			maxBytes = -maxBytes
		}
		got := TruncateUTF8(s, maxBytes)
		if !utf8.ValidString(got) {
			t.Fatalf("invalid UTF-8: %q", got)
		}
		if len(got) > maxBytes {
			t.Fatalf("%d bytes, more than %d", len(got), maxBytes)
		}
		fits := utf8.ValidString(s) && len(s) <= maxBytes
		if fits && got != s {
			t.Fatalf("a string that fits was changed: %q to %q", s, got)
		}
		valid := strings.ToValidUTF8(s, string(utf8.RuneError))
		switch {
		case fits || got == valid:
		case maxBytes < len(TruncationMarker):
			if !strings.HasPrefix(TruncationMarker, got) {
				t.Fatalf("no room for the marker, yet %q is not its prefix", got)
			}
		case !strings.HasSuffix(got, TruncationMarker):
			t.Fatalf("cut without the marker: %q", got)
		case !strings.HasPrefix(valid, strings.TrimSuffix(got, TruncationMarker)):
			t.Fatalf("%q is not a prefix of the input", got)
		}
		// Nothing is cut that fits: at most the bytes of one partial rune go unused.
		if got != valid && len(got) <= maxBytes-utf8.UTFMax {
			t.Fatalf("cut to %d bytes of %d allowed: %q", len(got), maxBytes, got)
		}
	})
}

func TestParseActionResult(t *testing.T) {
	tests := []struct {
		name     string
		message  string
		wantOK   bool
		wantData string
	}{
		{"result", `{"success":true,"output":"ok","data":{"replicas":3}}`, true, `{"replicas":3}`},
		{"one field is enough", `  {"output":"fine"}` + "\n", true, ""},
		{"null data is none", `{"success":true,"data":null}`, true, ""},
		{"JSON log line", `{"level":"info"}`, false, ""},
		{"invalid JSON", `{"success":tru`, false, ""},
		{"wrong type", `{"success":"yes"}`, false, ""},
		{"plain text", "panic: boom", false, ""},
		{"empty", "", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseActionResult(tt.message)
			if ok != tt.wantOK || string(got.Data) != tt.wantData {
				t.Fatalf("got %+v, %v; want ok %v, data %q", got, ok, tt.wantOK, tt.wantData)
			}
		})
	}
}

// TestParseActionResultUsage: a resourceUsage of two non-negative integers is read; any other is
// dropped and the rest of the result stands, since the status would refuse it.
func TestParseActionResultUsage(t *testing.T) {
	tests := []struct {
		name      string
		message   string
		wantOK    bool
		wantUsage *ResourceUsage
	}{
		{"usage", `{"success":true,"resourceUsage":{"cpuMillis":120,"peakMemoryBytes":31457280}}`, true, &ResourceUsage{CPUMillis: 120, PeakMemoryBytes: 31457280}},
		{"zero usage", `{"success":true,"resourceUsage":{"cpuMillis":0,"peakMemoryBytes":0}}`, true, &ResourceUsage{}},
		{"usage alone is a result", `{"resourceUsage":{"cpuMillis":1,"peakMemoryBytes":2}}`, true, &ResourceUsage{CPUMillis: 1, PeakMemoryBytes: 2}},
		{"no usage", `{"success":true}`, true, nil},
		{"null usage", `{"success":true,"resourceUsage":null}`, true, nil},
		{"a figure missing", `{"success":true,"resourceUsage":{"cpuMillis":120}}`, true, nil},
		{"negative", `{"success":true,"resourceUsage":{"cpuMillis":-1,"peakMemoryBytes":2}}`, true, nil},
		{"fractional", `{"success":true,"resourceUsage":{"cpuMillis":0.5,"peakMemoryBytes":2}}`, true, nil},
		{"not an object", `{"success":true,"resourceUsage":"lots"}`, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseActionResult(tt.message)
			if ok != tt.wantOK {
				t.Fatalf("ok %v, want %v", ok, tt.wantOK)
			}
			if u := got.ResourceUsage; (u == nil) != (tt.wantUsage == nil) || (u != nil && *u != *tt.wantUsage) {
				t.Fatalf("resource usage %+v, want %+v", u, tt.wantUsage)
			}
			if strings.Contains(tt.message, `"success":true`) && (got.Success == nil || !*got.Success) {
				t.Fatalf("success %v: the rest of the result was lost", got.Success)
			}
		})
	}
}
