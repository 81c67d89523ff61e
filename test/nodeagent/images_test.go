package nodeagent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadImage checks that a loaded image runs its own copy of the binary, for any tag of its
// repository, and that an image nobody loaded fails like a pull.
func TestLoadImage(t *testing.T) {
	dir := t.TempDir()
	a := New(Config{Images: map[string]string{"kubernaut-actions": "/bin/true"}, LoadedImages: filepath.Join(dir, "images")})
	if _, err := a.binaryFor("registry.example.com/sre/label-deployment:1.0.0"); err == nil || !strings.Contains(err.Error(), "failed to pull image") {
		t.Fatalf("an image not loaded: %v", err)
	}
	binary := filepath.Join(dir, "label-deployment")
	if err := os.WriteFile(binary, []byte("#!/bin/sh\necho v1\n"), 0o700); err != nil { //nolint:gosec // G306: a test program.
		t.Fatal(err)
	}
	if err := LoadImage(filepath.Join(dir, "images"), "registry.example.com/sre/label-deployment:1.0.0", binary); err != nil {
		t.Fatal(err)
	}
	for _, image := range []string{"registry.example.com/sre/label-deployment:1.0.0", "registry.example.com/sre/label-deployment:2", "registry.example.com/sre/label-deployment@sha256:00"} {
		got, err := a.binaryFor(image)
		if err != nil {
			t.Fatalf("%s: %v", image, err)
		}
		if b, _ := os.ReadFile(got); string(b) != "#!/bin/sh\necho v1\n" {
			t.Fatalf("%s runs %s, holding %q", image, got, b)
		}
		if info, _ := os.Stat(got); info.Mode()&0o100 == 0 {
			t.Fatalf("%s is not executable", got)
		}
	}
	// A copy: rebuilding the binary changes nothing until it is loaded again.
	if err := os.WriteFile(binary, []byte("#!/bin/sh\necho v2\n"), 0o700); err != nil { //nolint:gosec // G306: a test program.
		t.Fatal(err)
	}
	got, _ := a.binaryFor("registry.example.com/sre/label-deployment:1.0.0")
	if b, _ := os.ReadFile(got); !strings.Contains(string(b), "v1") {
		t.Fatalf("the loaded binary changed with its source: %q", b)
	}
	if _, err := a.binaryFor("registry.example.com/sre/other:1"); err == nil {
		t.Fatal("another repository of the same registry runs the loaded binary")
	}
}
