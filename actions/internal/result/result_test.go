package result

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestEncode(t *testing.T) {
	big := strings.Repeat("é", 5000) // 10000 bytes, two per rune
	tests := []struct {
		name          string
		in            Result
		wantOutputEnd string
		wantData      bool
	}{
		{name: "fits", in: Result{Success: true, Output: "ok", Data: map[string]int{"replicas": 3}}, wantOutputEnd: "ok", wantData: true},
		{name: "output truncated with marker", in: Result{Success: true, Output: big, Data: map[string]int{"replicas": 3}}, wantOutputEnd: TruncatedMarker, wantData: true},
		{name: "huge data dropped", in: Result{Success: false, Output: "x", Data: map[string]string{"blob": strings.Repeat("a", 9000)}}, wantOutputEnd: "x"},
		{name: "unencodable data dropped", in: Result{Success: false, Data: func() {}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := Encode(tt.in)
			if len(b) > MaxMessageBytes {
				t.Fatalf("encoded %d bytes, limit %d", len(b), MaxMessageBytes)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("invalid JSON: %v", err)
			}
			if got["success"] != tt.in.Success {
				t.Fatalf("success = %v", got["success"])
			}
			out, _ := got["output"].(string)
			if !utf8.ValidString(out) || !strings.HasSuffix(out, tt.wantOutputEnd) {
				t.Fatalf("output ends %q, want suffix %q", out[max(0, len(out)-40):], tt.wantOutputEnd)
			}
			if _, has := got["data"]; has != tt.wantData {
				t.Fatalf("data present = %v, want %v", has, tt.wantData)
			}
		})
	}
}

func FuzzEncode(f *testing.F) {
	f.Add("output", "error", strings.Repeat("z", 5000))
	f.Add("\xff\xfe", "", "")
	f.Fuzz(func(t *testing.T, output, errText, data string) {
		b := Encode(Result{Output: output, Error: errText, Data: data})
		if len(b) > MaxMessageBytes || !json.Valid(b) {
			t.Fatalf("invalid or oversized: %d bytes", len(b))
		}
	})
}
