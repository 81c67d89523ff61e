package audit

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/kubernaut/kubernaut-executor/api/v1alpha1"
)

// secret is the sensitive value the redaction tests hide; it must appear nowhere in an event.
const secret = "s3cr3t-Pa55w0rd-7f9c"

func TestRedactedValuesNeverReachTheEvent(t *testing.T) {
	tests := []struct {
		name   string
		schema string
		params string
		// want is the redacted parameters.
		want string
		// hidden is the value that must appear nowhere; secret when empty.
		hidden string
	}{{
		name:   "x-kubernaut-sensitive property",
		schema: `{"type":"object","properties":{"password":{"type":"string","x-kubernaut-sensitive":true},"user":{"type":"string"}}}`,
		params: `{"user":"admin","password":"` + secret + `"}`,
		want:   `{"password":"<redacted>","user":"admin"}`,
	}, {
		name:   "writeOnly property",
		schema: `{"type":"object","properties":{"token":{"type":"string","writeOnly":true}}}`,
		params: `{"token":"` + secret + `"}`,
		want:   `{"token":"<redacted>"}`,
	}, {
		name: "nested object property",
		schema: `{"type":"object","properties":{"db":{"type":"object","properties":{
			"host":{"type":"string"},
			"credentials":{"type":"object","properties":{"password":{"type":"string","x-kubernaut-sensitive":true}}}}}}}`,
		params: `{"db":{"host":"db.internal","credentials":{"password":"` + secret + `"}}}`,
		want:   `{"db":{"credentials":{"password":"<redacted>"},"host":"db.internal"}}`,
	}, {
		name:   "a sensitive object hides everything inside it",
		schema: `{"type":"object","properties":{"auth":{"type":"object","x-kubernaut-sensitive":true}}}`,
		params: `{"auth":{"user":"u","keys":["` + secret + `",42]}}`,
		want:   `{"auth":"<redacted>"}`,
	}, {
		name:   "array items",
		schema: `{"type":"object","properties":{"headers":{"type":"array","items":{"type":"object","properties":{"name":{"type":"string"},"value":{"type":"string","writeOnly":true}}}}}}`,
		params: `{"headers":[{"name":"X-Api-Key","value":"` + secret + `"},{"name":"X-Other","value":"also hidden"}]}`,
		want:   `{"headers":[{"name":"X-Api-Key","value":"<redacted>"},{"name":"X-Other","value":"<redacted>"}]}`,
	}, {
		name:   "tuple items",
		schema: `{"type":"object","properties":{"pair":{"type":"array","items":[{"type":"string"},{"type":"string","x-kubernaut-sensitive":true}]}}}`,
		params: `{"pair":["user","` + secret + `"]}`,
		want:   `{"pair":["user","<redacted>"]}`,
	}, {
		name:   "local $ref to definitions",
		schema: `{"type":"object","definitions":{"secret":{"type":"string","x-kubernaut-sensitive":true}},"properties":{"apiKey":{"$ref":"#/definitions/secret"}}}`,
		params: `{"apiKey":"` + secret + `"}`,
		want:   `{"apiKey":"<redacted>"}`,
	}, {
		name:   "additionalProperties",
		schema: `{"type":"object","properties":{"name":{"type":"string"}},"additionalProperties":{"type":"string","x-kubernaut-sensitive":true}}`,
		params: `{"name":"web","DB_PASSWORD":"` + secret + `"}`,
		want:   `{"DB_PASSWORD":"<redacted>","name":"web"}`,
	}, {
		name:   "patternProperties",
		schema: `{"type":"object","patternProperties":{"^secret_":{"type":"string","writeOnly":true}}}`,
		params: `{"secret_a":"` + secret + `","plain":"visible"}`,
		want:   `{"plain":"visible","secret_a":"<redacted>"}`,
	}, {
		name:   "a mark in any allOf branch counts",
		schema: `{"type":"object","properties":{"key":{"allOf":[{"type":"string"},{"x-kubernaut-sensitive":true}]}}}`,
		params: `{"key":"` + secret + `"}`,
		want:   `{"key":"<redacted>"}`,
	}, {
		name:   "a number is hidden too",
		schema: `{"type":"object","properties":{"pin":{"type":"integer","writeOnly":true}}}`,
		params: `{"pin":123456789}`,
		want:   `{"pin":"<redacted>"}`,
		hidden: "123456789",
	}, {
		name:   "a reference that does not resolve fails closed",
		schema: `{"type":"object","properties":{"apiKey":{"$ref":"#/definitions/missing"},"name":{"type":"string"}}}`,
		params: `{"apiKey":"` + secret + `","name":"web"}`,
		want:   `{"apiKey":"<redacted>","name":"web"}`,
	}, {
		name:   "a schema that is not JSON fails closed",
		schema: `{"type":`,
		params: `{"apiKey":"` + secret + `","name":"web"}`,
		want:   `{"apiKey":"<redacted>","name":"<redacted>"}`,
	}, {
		name:   "recursive schema",
		schema: `{"$ref":"#/definitions/node","definitions":{"node":{"type":"object","properties":{"key":{"type":"string","x-kubernaut-sensitive":true},"child":{"$ref":"#/definitions/node"}}}}}`,
		params: `{"key":"a-key-1","child":{"key":"` + secret + `","child":{"child":{}}}}`,
		want:   `{"child":{"child":{"child":{}},"key":"<redacted>"},"key":"<redacted>"}`,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hidden := tt.hidden
			if hidden == "" {
				hidden = secret
			}
			obj := execution(func(obj *v1alpha1.KubernetesExecution) {
				obj.Spec.Action.Parameters = &apiextensionsv1.JSON{Raw: []byte(tt.params)}
				// The action echoes its input: the secret must not leak through its output or error.
				obj.Status.Result.Output = "connected with " + tt.params
				obj.Status.Result.Error = "warning: " + hidden + " expires soon"
			})
			in := inputs()
			in.Template = template(tt.schema)
			ev, err := Build(obj, in)
			if err != nil {
				t.Fatal(err)
			}
			expect(t, "parameters", string(ev.Parameters), tt.want)
			for _, encode := range []func() ([]byte, error){
				ev.Encode,
				func() ([]byte, error) { return json.Marshal(ev) },
				func() ([]byte, error) {
					ce, err := CloudEvent(ev, DefaultSource)
					if err != nil {
						return nil, err
					}
					return json.Marshal(ce)
				},
			} {
				b, err := encode()
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(b, []byte(hidden)) {
					t.Errorf("the sensitive value %s appears in the event: %s", hidden, b)
				}
			}
		})
	}
}

func TestRedact(t *testing.T) {
	tests := []struct {
		name        string
		params      string
		schema      string
		all         bool
		want        string
		wantSecrets []string
	}{
		{name: "no parameters", want: `{}`},
		{name: "null parameters", params: `null`, want: `{}`},
		{name: "no schema marks nothing", params: `{"a":"x","b":1}`, want: `{"a":"x","b":1}`},
		{name: "unknown schema hides every value", params: `{"a":"xyz1","b":{"c":2}}`, all: true,
			want: `{"a":"<redacted>","b":"<redacted>"}`, wantSecrets: []string{"2", "xyz1"}},
		{name: "large numbers keep their digits", params: `{"n":12345678901234567890}`, schema: `{"type":"object"}`,
			want: `{"n":12345678901234567890}`},
		{name: "a sensitive root hides every value", params: `{"a":"xyz1"}`, schema: `{"type":"object","writeOnly":true}`,
			want: `{"a":"<redacted>"}`, wantSecrets: []string{"xyz1"}},
		{name: "a $ref cycle ends", params: `{"a":"xyz1"}`, schema: `{"$ref":"#/definitions/a","definitions":{"a":{"$ref":"#/definitions/b"},"b":{"$ref":"#/definitions/a"}}}`,
			want: `{"a":"xyz1"}`},
		{name: "plain-name fragment", params: `{"a":"xyz1"}`,
			schema: `{"properties":{"a":{"$ref":"#tok"}},"definitions":{"t":{"$id":"#tok","writeOnly":true}}}`,
			want:   `{"a":"<redacted>"}`, wantSecrets: []string{"xyz1"}},
		{name: "a pattern that does not compile fails closed", params: `{"a":"xyz1"}`,
			schema: `{"patternProperties":{"(":{}}}`,
			want:   `{"a":"<redacted>"}`, wantSecrets: []string{"xyz1"}},
		{name: "false-valued marks mark nothing", params: `{"a":"xyz1"}`,
			schema: `{"properties":{"a":{"writeOnly":false,"x-kubernaut-sensitive":false}}}`,
			want:   `{"a":"xyz1"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, secrets, err := Redact([]byte(tt.params), []byte(tt.schema), tt.all)
			if err != nil {
				t.Fatal(err)
			}
			expect(t, "parameters", string(got), tt.want)
			slices.Sort(secrets)
			if !slices.Equal(secrets, tt.wantSecrets) {
				t.Errorf("secrets = %q, want %q", secrets, tt.wantSecrets)
			}
		})
	}
	if _, _, err := Redact([]byte(`[1]`), nil, false); err == nil {
		t.Error("Redact accepted parameters that are not an object")
	}
}

func TestScrub(t *testing.T) {
	tests := []struct {
		in      string
		secrets []string
		want    string
	}{
		{"token abcdef used", []string{"abcdef"}, "token <redacted> used"},
		{"short a b", []string{"a"}, "short a b"},
		{"key abcdefgh", []string{"abcd", "abcdefgh"}, "key <redacted>"},
		{"", []string{"abcd"}, ""},
	}
	for _, tt := range tests {
		expect(t, "scrub("+tt.in+")", scrub(tt.in, tt.secrets), tt.want)
	}
}
