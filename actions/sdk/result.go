package sdk

import (
	"encoding/json"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// DefaultPath is where Kubernetes reads the termination message from; TERMINATION_MESSAGE_PATH
// overrides it (the local node agent gives each pod its own file).
const DefaultPath = "/dev/termination-log"

// withData returns r with v, encoded as JSON, as its data. When v cannot be encoded, r has no
// data and its error says why.
func withData(r v1alpha1.ActionResult, v any) v1alpha1.ActionResult {
	if v == nil {
		return r
	}
	b, err := json.Marshal(v)
	if err != nil {
		r.Data = nil
		r.Error = joinErr(r.Error, "data could not be encoded: "+err.Error())
		return r
	}
	r.Data = b
	return r
}

// Encode returns r as JSON of at most v1alpha1.MaxResultBytes. When it does not fit, the output
// is cut with v1alpha1.TruncateUTF8; if the rest alone is too large, the data is dropped first;
// as a last resort the output is dropped and the error is cut too. The resourceUsage, a few
// dozen bytes, is always kept and counts towards the limit. Data that is not valid JSON is
// dropped, and the error says so. The result is always valid JSON that
// v1alpha1.ParseActionResult reads.
func Encode(r v1alpha1.ActionResult) []byte {
	b, err := json.Marshal(r)
	if err == nil && len(b) <= v1alpha1.MaxResultBytes {
		return b
	}
	if err != nil {
		r.Data = nil
		r.Error = joinErr(r.Error, "data could not be encoded: "+err.Error())
	}
	if b, ok := fit(&r, &r.Output); ok {
		return b
	}
	r.Data = nil
	if b, ok := fit(&r, &r.Output); ok {
		return b
	}
	r.Output = ""
	if b, ok := fit(&r, &r.Error); ok {
		return b
	}
	b, _ = json.Marshal(v1alpha1.ActionResult{Success: r.Success, Error: "result too large", ResourceUsage: r.ResourceUsage})
	return b
}

// fit cuts the text at field, one of r's, to the longest length with which r encodes within the
// limit (a binary search: escaping makes a byte of text cost one to six bytes of JSON); false,
// with the text left whole, if even an empty text does not fit.
func fit(r *v1alpha1.ActionResult, field *string) ([]byte, bool) {
	text := strings.ToValidUTF8(*field, string(utf8.RuneError))
	encode := func(n int) ([]byte, bool) {
		*field = v1alpha1.TruncateUTF8(text, n)
		b, err := json.Marshal(r)
		return b, err == nil && len(b) <= v1alpha1.MaxResultBytes
	}
	if b, ok := encode(len(text)); ok {
		return b, true
	}
	if _, ok := encode(0); !ok {
		*field = text
		return nil, false
	}
	lo, hi := 0, min(len(text), v1alpha1.MaxResultBytes)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if _, ok := encode(mid); ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	b, _ := encode(lo)
	return b, true
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// WriteResult writes r, encoded by Encode, to the termination message path, with its
// resourceUsage measured by Usage just before (absent when nothing could be measured).
func WriteResult(r v1alpha1.ActionResult) error {
	path := os.Getenv("TERMINATION_MESSAGE_PATH")
	if path == "" {
		path = DefaultPath
	}
	r.ResourceUsage = Usage()
	return os.WriteFile(path, Encode(r), 0o600) //nolint:gosec // G703: the path is set by the pod's runner (see DefaultPath), not by the action's input.
}
