package e2eutil

import (
	"path/filepath"
	"sort"
	"strings"
)

// PredefinedActions returns the names of the predefined actions: one ActionTemplate per file in
// templates/, named after its file, as the chart installs them. It panics when there are none.
func PredefinedActions() []string {
	files, err := filepath.Glob(filepath.Join(RepoRoot(), "templates", "*.yaml"))
	if err != nil || len(files) == 0 {
		panic("no predefined ActionTemplate in templates/")
	}
	names := make([]string, 0, len(files))
	for _, f := range files {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".yaml"))
	}
	sort.Strings(names)
	return names
}
